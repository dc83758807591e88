"use strict";
// Camera wall: one tile per camera (live video + exercise, reps, last rep, cues, state), updated by pushed events.

const tiles = new Map();

function makeTile(name) {
  const img = el("img", {alt: "live video of " + name, "data-testid": "video"});
  const placeholder = el("span", {class: "novideo", text: "waiting for video…"});
  const badge = el("span", {class: "badge state"});
  const tile = el("article", {class: "tile", "data-camera": name, "data-testid": "tile", title: "open " + name,
      onclick: () => { location.href = "/cameras/" + encodeURIComponent(name); }},
    el("div", {class: "video"}, img, placeholder, el("span", {class: "name", text: name}), badge),
    el("div", {class: "info"},
      el("div", {class: "exercise"}, el("span", {class: "ex", text: "–"}), el("span", {class: "conf"})),
      el("div", {class: "count"}, el("span", {class: "reps", "data-testid": "reps", text: "0"}), el("small", {text: "reps"})),
      el("div", {class: "last"}, el("span", {class: "label", text: "last rep"}), el("span", {class: "lastrep", text: "–"})),
      el("ul", {class: "cues"}),
      el("div", {class: "meta"})));
  liveImage(img, name, placeholder, "tile");
  tiles.set(name, tile);
  document.getElementById("wall").append(tile);
  setBadge(badge, null);
  return tile;
}

function lastRepText(rep) {
  if (!rep) return "–";
  const parts = ["#" + rep.index, tempo(rep), "ROM " + pct(rep.range_of_motion)];
  const measures = Object.entries(repMeasures(rep)).slice(0, 2).map(([k, v]) => measureText(k, v));
  const faults = repFaults(rep);
  return parts.concat(measures).join(" · ") + (faults.length ? " · ⚠ " + faults.join(", ") : "");
}

function showState(state) {
  const tile = tiles.get(state.camera) || makeTile(state.camera);
  setBadge(tile.querySelector(".badge"), state);
  tile.querySelector(".ex").textContent = (state.exercise || state.label || "–").replace(/_/g, " ");
  tile.querySelector(".conf").textContent = typeof state.confidence === "number" ? pct(state.confidence) : "";
  tile.querySelector(".reps").textContent = state.reps ?? 0;
  if (state.last_rep) {
    const last = tile.querySelector(".lastrep");
    last.textContent = lastRepText(state.last_rep);
    last.className = "lastrep" + (repFaults(state.last_rep).length ? " fault" : "");
  }
  tile.querySelector(".cues").replaceChildren(...(state.cues || []).map((c) => el("li", {text: c})));
  const meta = [num(state.fps) + " fps", (state.frames_dropped ?? 0) + " dropped"];
  if (state.error) meta.push(state.error);
  tile.querySelector(".meta").textContent = meta.join(" · ");
}

function flashRep(rep) {
  const tile = tiles.get(rep.camera);
  if (!tile) return;
  tile.classList.remove("flash");
  void tile.offsetWidth;
  tile.classList.add("flash");
}

async function main() {
  const cameras = await getJson("/api/cameras");
  if (!cameras.length) document.getElementById("wall").append(el("p", {class: "empty", text: "No cameras."}));
  for (const camera of cameras) { makeTile(camera.name); showState(camera.state); }
  connectEvents("/api/events", {
    state: showState,
    rep: flashRep,
    engine: (e) => { document.getElementById("engine").textContent = engineText(e); },
  }, document.getElementById("conn"));
}

main();
