"use strict";
// Sets by day and camera; a set's reps with their measured values, a rep timeline and CSV export.

function query() {
  const params = new URLSearchParams();
  const camera = document.getElementById("camera").value;
  const day = document.getElementById("day").value;
  if (camera) params.set("camera", camera);
  if (day) {
    const start = new Date(day + "T00:00:00");  // the browser's local day
    params.set("since", String(start.getTime() / 1000));
    params.set("until", String(start.getTime() / 1000 + 86400));
  } else {
    params.set("since", String(Date.now() / 1000 - 30 * 86400));
  }
  return params.toString();
}

async function loadSets() {
  const q = query();
  document.getElementById("csv").href = "/api/sets.csv?" + q;
  const body = document.getElementById("sets");
  let sets;
  try {
    sets = await getJson("/api/sets?" + q);
  } catch (err) {
    body.replaceChildren(el("tr", {}, el("td", {colspan: 7, class: "empty", text: "History unavailable (" + err.message + ")."})));
    return;
  }
  const rows = [];
  let day = null;
  for (const set of sets) {
    const thisDay = dayOf(set.started_at);
    if (thisDay !== day) { day = thisDay; rows.push(el("tr", {class: "day"}, el("td", {colspan: 7, text: day}))); }
    const row = el("tr", {class: "clickable", "data-set": set.id, "data-testid": "set-row", onclick: () => openSet(set, row)},
      el("td", {text: clock(set.started_at)}), el("td", {text: set.camera}),
      el("td", {text: set.exercise.replace(/_/g, " ")}), el("td", {class: "set-reps", text: set.reps}),
      el("td", {class: set.fault_reps ? "fault" : "", text: set.fault_reps}),
      el("td", {text: duration(set.duration_s)}), el("td", {text: set.status}));
    rows.push(row);
  }
  if (!sets.length) rows.push(el("tr", {}, el("td", {colspan: 7, class: "empty", text: "No sets in this period."})));
  body.replaceChildren(...rows);
}

async function openSet(set, row) {
  document.querySelectorAll("tr.selected").forEach((r) => r.classList.remove("selected"));
  row.classList.add("selected");
  const reps = await getJson("/api/sets/" + set.id + "/reps");
  const detail = document.getElementById("detail");
  detail.hidden = false;
  document.getElementById("detail-title").textContent =
    `Set ${set.id}: ${set.exercise.replace(/_/g, " ")} on ${set.camera}, ${dayOf(set.started_at)} ${clock(set.started_at)} – ${set.reps} reps`;
  document.getElementById("reps-csv").href = "/api/sets/" + set.id + "/reps.csv";
  drawTimeline(document.getElementById("plot"), reps);
  const names = [...new Set(reps.flatMap((r) => Object.keys(r.measures || {})))].sort();
  document.getElementById("reps-head").replaceChildren(el("tr", {},
    ...["#", "time", "tempo", "ROM", "view", ...names.map((n) => n.replace(/_/g, " ")), "faults"].map((h) => el("th", {text: h}))));
  document.getElementById("reps").replaceChildren(...reps.map((r) => el("tr", {},
    el("td", {text: r.n}), el("td", {text: clock(r.wall_t)}), el("td", {text: tempo(r)}),
    el("td", {text: pct(r.range_of_motion)}), el("td", {text: r.view || ""}),
    ...names.map((n) => el("td", {text: num((r.measures || {})[n], 2)})),
    el("td", {class: r.faults.length ? "fault" : "good", text: r.faults.length ? r.faults.join(", ") : "ok"}))));
  detail.scrollIntoView({behavior: "smooth", block: "start"});
}

async function main() {
  const select = document.getElementById("camera");
  try {
    for (const camera of await getJson("/api/cameras")) select.append(el("option", {value: camera.name, text: camera.name}));
  } catch (err) { /* the history still works without the live cameras */ }
  select.addEventListener("change", loadSets);
  document.getElementById("day").addEventListener("change", loadSets);
  document.getElementById("reload").addEventListener("click", loadSets);
  await loadSets();
}

main();
