"""Per-rep results to files: a CSV (one row per rep), a JSON summary and a PNG of the rep signal over time.

CSV columns (``REPS_CSV_COLUMNS``, then one column per measure name found in the reps, sorted, empty when a rep did
not measure it): exercise, index (1-based per exercise), start_frame, end_frame, bottom_frame (the turn: bottom of a
squat, lockout of a deadlift, top of a pull-up), start_t, end_t, duration_s (seconds, the analyzer's clock),
range_of_motion (1.0 = a textbook full rep), view (front/side/back/unknown), faults (";"-separated, empty = none).

The JSON summary is ``RepAnalyzer.summary()`` and must match ``SUMMARY_SCHEMA`` (JSON Schema, draft 2020-12).
Each events-log line (``RepEvent.to_json()``) matches ``REP_EVENT_SCHEMA``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from realtime.errors import RealtimeError
from realtime.files import honour_umask
from realtime.types import RepEvent

log = logging.getLogger(__name__)

REPS_CSV_COLUMNS: tuple[str, ...] = (
    "exercise", "index", "start_frame", "end_frame", "bottom_frame", "start_t", "end_t", "duration_s",
    "range_of_motion", "view", "faults",
)

_NUM = {"type": "number"}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
SUMMARY_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["strictness", "exercise_mode", "total_reps", "exercises"],
    "additionalProperties": False,
    "properties": {
        "strictness": {"enum": ["relaxed", "normal", "strict"]},
        "exercise_mode": {"enum": ["fixed", "auto"]},
        "total_reps": {"type": "integer", "minimum": 0},
        # auto mode: share of the frames with a person in which the classifier named each label
        "labels": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}},
        "exercises": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["reps", "partial_reps", "mean_range_of_motion", "mean_duration_s", "mean_measures",
                             "faults", "reps_with_faults", "views", "skipped_checks"],
                "additionalProperties": False,
                "properties": {
                    "reps": {"type": "integer", "minimum": 0},
                    "partial_reps": {"type": "integer", "minimum": 0},
                    "mean_range_of_motion": {"type": ["number", "null"]},
                    "mean_duration_s": {"type": ["number", "null"], "minimum": 0},
                    "mean_measures": {"type": "object", "additionalProperties": _NUM},
                    "faults": _COUNTS,
                    "reps_with_faults": {"type": "integer", "minimum": 0},
                    "views": _COUNTS,
                    "skipped_checks": _COUNTS,
                },
            },
        },
    },
}

REP_EVENT_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["type", "exercise", "index", "start_frame", "end_frame", "bottom_frame", "start_t", "end_t",
                 "duration_s", "range_of_motion", "view", "form"],
    "properties": {
        "type": {"const": "rep"},
        "exercise": {"type": "string"},
        "index": {"type": "integer", "minimum": 1},
        "start_frame": {"type": "integer", "minimum": 0},
        "end_frame": {"type": "integer", "minimum": 0},
        "bottom_frame": {"type": ["integer", "null"]},
        "start_t": _NUM, "end_t": _NUM, "duration_s": {"type": "number", "minimum": 0},
        "range_of_motion": _NUM,
        "view": {"enum": ["front", "side", "back", "unknown"]},
        "form": {
            "type": "object", "required": ["measures", "faults"],
            "properties": {"measures": {"type": "object", "additionalProperties": _NUM},
                           "faults": {"type": "array", "items": {"type": "string"}}},
        },
    },
}


def _atomic_write(path: str | Path, write) -> Path:
    """Write through a temporary file in the same folder, then rename (no half-written files)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            honour_umask(fd)  # mkstemp makes it 0600 whatever the umask
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
                write(fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise RealtimeError(f"cannot write {path} ({exc.strerror or exc}); choose a writable output folder") from None
    return path


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def write_reps_csv(reps: Iterable[RepEvent], path: str | Path) -> Path:
    """One row per rep; fixed columns then the measures (see the module docstring)."""
    reps = list(reps)
    measures = sorted({k for r in reps for k in r.measures})

    def write(fh) -> None:
        w = csv.writer(fh)
        w.writerow([*REPS_CSV_COLUMNS, *measures])
        for r in reps:
            w.writerow([_fmt(v) for v in (
                r.exercise, r.index, r.start_frame, r.end_frame, r.bottom_frame, float(r.start_t), float(r.end_t),
                float(r.duration_s), float(r.range_of_motion), r.view, ";".join(r.faults),
                *(r.measures.get(m) for m in measures))])

    return _atomic_write(path, write)


def _clean(obj):
    """NaN/inf -> None so the file is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_summary_json(summary: dict, path: str | Path) -> Path:
    """The session summary (``RepAnalyzer.summary()``) as indented strict JSON."""
    data = _clean(summary)
    return _atomic_write(path, lambda fh: fh.write(json.dumps(data, indent=2, allow_nan=False) + "\n"))


ANGLE_SIGNALS = frozenset({"elbow_angle", "torso_upright"})  # degrees; every other rep signal is in body units


def signal_unit(signal: str) -> str:
    """Unit of a rep signal (see realtime.reps.angles): degrees for angles, body units (~ one torso) for heights."""
    return "degrees" if signal in ANGLE_SIGNALS else "body units"


def signal_axis_label(exercises: Sequence[str], config=None) -> str:
    """Y-axis label naming the plotted signal and its unit: the signal divided by the exercise's full range of
    motion (``config``: an AnalyzerConfig, default the shipped form config)."""
    if config is None:
        from realtime.reps.form import load_config

        config = load_config()
    params = [config.reps[e] for e in dict.fromkeys(exercises) if e in config.reps]
    if not params:
        return "rep signal / full range of motion (1 = one full rep)"
    if len({(p.signal, p.full_rom) for p in params}) == 1:
        p = params[0]
        return f"{p.signal} / full ROM ({p.full_rom:g} {signal_unit(p.signal)})"
    names = ", ".join(f"{e}: {p.signal} / {p.full_rom:g} {signal_unit(p.signal)}"
                      for e, p in zip(dict.fromkeys(exercises), params, strict=False))
    return f"signal / full ROM ({names})"


def timeline_figure(timeline: Sequence[tuple[float, float, str]], reps: Iterable[RepEvent],
                    title: str = "rep signal", config=None):
    """The figure of ``write_timeline_png`` (matplotlib ``Figure``, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    reps = list(reps)
    fig = Figure(figsize=(10, 3.2))  # no pyplot: no global state, no display, safe from any thread
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ylabel = signal_axis_label([r.exercise for r in reps], config)
    if timeline:
        t, s, _ = zip(*timeline, strict=True)
        ax.plot(t, s, lw=1.2, color="tab:blue", label=ylabel)
    for r in reps:
        ax.axvspan(r.start_t, r.end_t, color="tab:red" if r.faults else "tab:green", alpha=0.18, lw=0)
        ax.axvline(r.start_t, color="grey", lw=0.6)
        ax.text(r.start_t, 1.0, f"{r.exercise[:6]} {r.index}", transform=ax.get_xaxis_transform(), fontsize=7,
                va="top")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel, fontsize=8 if len(ylabel) > 40 else None)
    ax.set_title(f"{title}: {len(reps)} reps (green = clean, red = with faults)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_timeline_png(timeline: Sequence[tuple[float, float, str]], reps: Iterable[RepEvent], path: str | Path,
                       title: str = "rep signal", config=None) -> Path:
    """The rep signal over time, divided by the exercise's full range of motion (the y axis names the signal and
    its unit), with each rep shaded (green = clean, red = with faults)."""
    fig = timeline_figure(timeline, reps, title, config)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, format="png")
    except OSError as exc:
        raise RealtimeError(f"cannot write {path} ({exc.strerror or exc}); choose a writable output folder") from None
    return path
