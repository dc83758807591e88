"""Prometheus figures of the live view, read from the hub at scrape time (nothing is done per frame)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from realtime.web.hub import STATES, LiveHub

_NAME_RE = re.compile(r"[^a-zA-Z0-9_]")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class HubCollector:
    """Per-camera fps, frames, drops, reps and state; shared-engine figures; web clients."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        fps = GaugeMetricFamily("realtime_camera_fps", "Frames processed per second", labels=["camera"])
        processed = CounterMetricFamily("realtime_camera_frames_processed", "Frames processed", labels=["camera"])
        dropped = CounterMetricFamily("realtime_camera_frames_dropped", "Frames dropped (latest-frame policy)",
                                      labels=["camera"])
        skipped = CounterMetricFamily("realtime_camera_frames_skipped",
                                      "Frames left out by the camera's analysis rate (--analysis-fps)", labels=["camera"])
        reps = CounterMetricFamily("realtime_camera_reps", "Finished reps published", labels=["camera"])
        shown = GaugeMetricFamily("realtime_camera_rep_count", "Rep count the camera shows now", labels=["camera"])
        state = GaugeMetricFamily("realtime_camera_state", "1 for the camera's current state",
                                  labels=["camera", "state"])
        encoded = CounterMetricFamily("realtime_web_frames_encoded", "JPEG frames encoded for viewers",
                                      labels=["camera"])
        viewers = GaugeMetricFamily("realtime_web_viewers", "Open video streams", labels=["camera"])
        stats = self.hub.stats()
        for name, latest, reps_total, frames_encoded in self.hub.camera_counters():
            latest = latest or {}
            for family, key in ((fps, "fps"), (processed, "frames_processed"), (dropped, "frames_dropped"),
                                (skipped, "frames_skipped"), (shown, "reps")):
                value = _number(latest.get(key))
                if value is not None:
                    family.add_metric([name], value)
            current = str(latest.get("state") or "starting")
            for known in sorted({*STATES, current}):
                state.add_metric([name, known], 1.0 if known == current else 0.0)
            reps.add_metric([name], reps_total)
            encoded.add_metric([name], frames_encoded)
            viewers.add_metric([name], stats["cameras"].get(name, {}).get("viewers", 0))
        yield from (fps, processed, dropped, skipped, reps, shown, state, encoded, viewers)
        for key, value in sorted(self.hub.engine().items()):
            number = _number(value)
            if number is not None:
                metric = "realtime_engine_" + _NAME_RE.sub("_", str(key))
                family = GaugeMetricFamily(metric, f"Shared pose engine: {key}")
                family.add_metric([], number)
                yield family
        clients = GaugeMetricFamily("realtime_web_clients", "Connected web clients", labels=["kind"])
        clients.add_metric(["events"], stats["event_clients"])
        clients.add_metric(["video"], stats["stream_clients"])
        yield clients
        cut = CounterMetricFamily("realtime_web_clients_dropped", "Clients dropped because they stopped reading")
        cut.add_metric([], stats["clients_dropped"])
        yield cut
