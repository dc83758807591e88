"use strict";
// Shared helpers of the pages (no framework, no build step).

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function num(value, digits = 1) {
  return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "–";
}

function pct(value) {
  return typeof value === "number" && isFinite(value) ? Math.round(value * 100) + "%" : "–";
}

function clock(epoch) {
  return typeof epoch === "number" ? new Date(epoch * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"}) : "–";
}

function dayOf(epoch) {
  return new Date(epoch * 1000).toLocaleDateString([], {weekday: "short", year: "numeric", month: "short", day: "numeric"});
}

function duration(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds)) return "–";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  return Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s";
}

// Time to the turn (bottom) and back, from the rep's frame numbers.
function tempo(rep) {
  if (!rep || typeof rep.duration_s !== "number") return "–";
  const {start_frame: a, bottom_frame: b, end_frame: c} = rep;
  if (typeof a === "number" && typeof b === "number" && typeof c === "number" && c > a && b >= a && b <= c) {
    const first = rep.duration_s * (b - a) / (c - a);
    return `${rep.duration_s.toFixed(1)} s (${first.toFixed(1)} / ${(rep.duration_s - first).toFixed(1)})`;
  }
  return rep.duration_s.toFixed(1) + " s";
}

function measureText(name, value) {
  return name.replace(/_/g, " ") + " " + (typeof value === "number" ? (Math.abs(value) >= 10 ? value.toFixed(0) : value.toFixed(2)) : value);
}

function repFaults(rep) {
  return (rep && rep.form && rep.form.faults) || (rep && rep.faults) || [];
}

function repMeasures(rep) {
  return (rep && rep.form && rep.form.measures) || (rep && rep.measures) || {};
}

const STATE_CLASS = {"live": "live", "reconnecting": "reconnecting", "error": "error",
  "pose server unreachable": "unreachable", "starting": "starting"};

function setBadge(node, state) {
  const name = (state && state.state) || "starting";
  node.textContent = name;
  node.className = "badge state " + (STATE_CLASS[name] || "");
}

function cameraUrl(name, suffix) {
  return "/api/cameras/" + encodeURIComponent(name) + (suffix || "");
}

// Push channel with reconnection; on 401 go to the login page.
function connectEvents(path, handlers, status) {
  let source = null;
  const open = () => {
    source = new EventSource(path);
    source.addEventListener("open", () => { if (status) { status.textContent = "live"; status.className = "conn ok"; } });
    for (const [kind, handler] of Object.entries(handlers)) {
      source.addEventListener(kind, (msg) => handler(JSON.parse(msg.data)));
    }
    source.addEventListener("error", () => {
      if (status) { status.textContent = "reconnecting…"; status.className = "conn bad"; }
      if (source.readyState === EventSource.CLOSED) {
        fetch("/api/cameras").then((r) => {
          if (r.status === 401) location.href = "/login?next=" + encodeURIComponent(location.pathname);
          else setTimeout(open, 2000);
        }).catch(() => setTimeout(open, 3000));
      }
    });
  };
  open();
}

async function getJson(path) {
  const response = await fetch(path, {headers: {"Accept": "application/json"}});
  if (response.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); throw new Error("401"); }
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.json();
}

// MJPEG <img> that stops streaming while the page is hidden (frames are encoded only while watched).
// size "tile" (the wall: smaller frames, less bandwidth per camera) or "full" (one camera large).
function liveImage(img, name, placeholder, size = "full") {
  const start = () => { img.src = cameraUrl(name, "/stream.mjpeg") + "?size=" + size + "&t=" + Date.now(); };
  img.addEventListener("load", () => { if (placeholder) placeholder.hidden = true; });
  img.addEventListener("error", () => { if (!document.hidden) setTimeout(start, 2000); });
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) img.removeAttribute("src"); else start();
  });
  start();
}

function engineText(engine) {
  const parts = [];
  if (typeof engine.batch_size === "number") parts.push("batch " + engine.batch_size.toFixed(1));
  if (typeof engine.latency_ms === "number") parts.push(engine.latency_ms.toFixed(1) + " ms");
  for (const [key, value] of Object.entries(engine)) {
    if (key !== "batch_size" && key !== "latency_ms" && (typeof value === "number" || typeof value === "string")) parts.push(key.replace(/_/g, " ") + " " + value);
  }
  return parts.length ? "pose engine: " + parts.join(" · ") : "";
}

// Rep timeline: one bar per rep at its time in the set, height = range of motion, red when it had faults.
function niceStep(span) {
  for (const step of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800]) if (span / step <= 8) return step;
  return 3600;
}

function drawTimeline(container, reps) {
  container.replaceChildren();
  if (!reps.length) return;
  const W = Math.max(320, container.clientWidth - 16 || 900), H = 220, left = 44, right = 12, top = 22, bottom = 30;
  const svg = svgEl("svg", {viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "rep timeline"});
  const ends = reps.map((r) => r.wall_t);
  const starts = reps.map((r) => r.wall_t - (typeof r.duration_s === "number" ? r.duration_s : 0));
  const t0 = Math.min(...starts), t1 = Math.max(...ends, t0 + 1);
  const roms = reps.map((r) => (typeof r.range_of_motion === "number" ? r.range_of_motion : 0));
  const ymax = Math.max(1.2, ...roms);
  const x = (t) => left + (t - t0) / (t1 - t0) * (W - left - right);
  const y = (v) => H - bottom - v / ymax * (H - top - bottom);
  svg.append(svgEl("line", {class: "axis", x1: left, y1: H - bottom, x2: W - right, y2: H - bottom}));
  svg.append(svgEl("line", {class: "axis", x1: left, y1: top, x2: left, y2: H - bottom}));
  for (const v of [0, 0.5, 1.0]) {
    svg.append(svgEl("text", {x: 4, y: y(v) + 4}, Math.round(v * 100) + "%"));
    svg.append(svgEl("line", {class: "axis", x1: left, y1: y(v), x2: W - right, y2: y(v), "stroke-dasharray": "2 4"}));
  }
  const span = t1 - t0, step = niceStep(span);
  for (let s = 0; s <= span + 1e-6; s += step) {
    svg.append(svgEl("text", {x: x(t0 + s), y: H - 10, "text-anchor": "middle"}, step >= 60 ? (s / 60) + " min" : s + " s"));
  }
  reps.forEach((rep, i) => {
    const x0 = x(starts[i]), width = Math.max(3, x(ends[i]) - x0 - 2);
    const faults = repFaults(rep);
    const bar = svgEl("rect", {class: "bar" + (faults.length ? " faulty" : ""), x: x0, y: y(roms[i]), width, height: Math.max(1, y(0) - y(roms[i])), rx: 2});
    bar.append(svgEl("title", {}, `rep ${rep.n || i + 1}: ${tempo(rep)}, ROM ${pct(rep.range_of_motion)}${faults.length ? ", " + faults.join(", ") : ""}`));
    svg.append(bar);
    svg.append(svgEl("text", {x: x0 + width / 2, y: y(roms[i]) - 4, "text-anchor": "middle"}, String(rep.n || i + 1)));
  });
  svg.append(svgEl("text", {x: W - right, y: 12, "text-anchor": "end"}, "bar = one rep (time in set) · height = range of motion · red = form fault"));
  container.append(svg);
}
