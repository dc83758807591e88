"use strict";
// One camera large, with its rep list filling in as reps happen.

const name = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const reps = [];

function showState(state) {
  setBadge(document.getElementById("badge"), state);
  document.getElementById("exercise").textContent = (state.exercise || state.label || "–").replace(/_/g, " ");
  document.getElementById("conf").textContent = typeof state.confidence === "number" ? pct(state.confidence) : "";
  document.getElementById("reps").textContent = state.reps ?? 0;
  if (state.last_rep) document.getElementById("lastrep").textContent = tempo(state.last_rep) + " · ROM " + pct(state.last_rep.range_of_motion);
  document.getElementById("cues").replaceChildren(...(state.cues || []).map((c) => el("li", {text: c})));
  const meta = [num(state.fps) + " fps", (state.frames_processed ?? 0) + " frames", (state.frames_dropped ?? 0) + " dropped"];
  if (state.error) meta.push(state.error);
  document.getElementById("meta").textContent = meta.join(" · ");
}

function addRep(rep) {
  rep.wall_t = rep.wall_t || Date.now() / 1000;
  reps.push(rep);
  const faults = repFaults(rep);
  const values = Object.entries(repMeasures(rep)).map(([k, v]) => measureText(k, v)).join(", ");
  document.getElementById("replist").prepend(el("tr", {},
    el("td", {text: rep.index ?? reps.length}), el("td", {text: clock(rep.wall_t)}),
    el("td", {text: (rep.exercise || "").replace(/_/g, " ")}), el("td", {text: tempo(rep)}),
    el("td", {text: pct(rep.range_of_motion)}), el("td", {text: rep.view || ""}), el("td", {text: values}),
    el("td", {class: faults.length ? "fault" : "good", text: faults.length ? faults.join(", ") : "ok"})));
  drawTimeline(document.getElementById("plot"), reps.slice(-40).map((r, i) => ({...r, n: r.index ?? i + 1})));
}

function showEvent(event) {
  const text = clock(event.wall_t) + " " + (event.message || event.error || event.type || "event");
  document.getElementById("events").textContent = text;
}

async function main() {
  document.title = name + " – gym cameras";
  document.getElementById("title").textContent = name;
  liveImage(document.getElementById("video"), name, document.getElementById("novideo"));
  const info = await getJson(cameraUrl(name));
  showState(info.state);
  for (const rep of info.reps) addRep(rep);
  if (info.events.length) showEvent(info.events[info.events.length - 1]);
  connectEvents("/api/events?camera=" + encodeURIComponent(name),
    {state: showState, rep: addRep, camera_event: showEvent}, document.getElementById("conn"));
}

main();
