"""Per-rep form checks with measured values, and the loader of ``form_config.toml`` (thresholds + presets).

A check measures one value on the rep's keypoints (see ``docs/reps_form.md`` for every measure), compares it with
the threshold of the chosen strictness and, when it fails, adds a fault name and a short on-screen cue that quotes
the value. Checks that the camera view cannot support are skipped and listed in ``FormResult.skipped``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realtime.errors import RealtimeError
from realtime.reps import angles as A
from realtime.types import EXERCISES

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

log = logging.getLogger(__name__)

STRICTNESS: tuple[str, ...] = ("relaxed", "normal", "strict")
DEFAULT_CONFIG = Path(__file__).with_name("form_config.toml")
SIGNALS: tuple[str, ...] = tuple(A.SIGNAL_FUNCS)
GATES: tuple[str, ...] = ("none", "horizontal", "hands_overhead")
_REP_KEYS: dict[str, type] = {
    "signal": str, "rest": str, "rest_signal": str, "full_rom": float, "min_rom": float, "enter_frac": float, "exit_frac": float,
    "turn_frac": float, "partial_frac": float, "prior_frac": float, "min_rep_s": float, "max_rep_s": float,
    "gate": str, "smooth_s": float, "median_frames": int, "scored_at": str,
}


@dataclass(frozen=True)
class RepParams:
    """Rep segmentation parameters of one exercise (``[reps.<exercise>]`` over ``[reps.default]``)."""

    signal: str
    rest: str  # "top" | "bottom": where the lifter waits between reps (names the phases)
    rest_signal: str  # "high" | "low": the signal's level at rest
    full_rom: float
    min_rom: float
    enter_frac: float
    exit_frac: float
    turn_frac: float
    partial_frac: float
    prior_frac: float
    min_rep_s: float
    max_rep_s: float
    gate: str
    smooth_s: float
    median_frames: int
    scored_at: str  # "rest" | "turn": where the rep is achieved (matters when a stream ends mid-rep)


@dataclass(frozen=True)
class AnalyzerConfig:
    """Everything the rep analyzer needs, with the strictness preset already applied."""

    strictness: str
    general: dict
    view: dict
    reps: dict[str, RepParams]
    form: dict[str, dict]
    path: str


def _resolve(value, strictness: str, where: str):
    """A ``{relaxed, normal, strict}`` table -> the preset's value; anything else unchanged."""
    if isinstance(value, dict):
        if set(value) != set(STRICTNESS):
            raise RealtimeError(f"form config: {where} must give relaxed, normal and strict values; fix the TOML")
        return value[strictness]
    return value


def load_config(config_path: str | Path | None = None, strictness: str = "normal") -> AnalyzerConfig:
    """Read and validate the TOML; raises RealtimeError (one line) for an unknown preset or a broken file."""
    if strictness not in STRICTNESS:
        raise RealtimeError(f"unknown --strictness {strictness!r}; choose one of {', '.join(STRICTNESS)}")
    path = Path(config_path) if config_path else DEFAULT_CONFIG
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise RealtimeError(f"form config {path} not found; pass an existing --form-config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RealtimeError(f"form config {path} is not valid TOML ({msg}); fix the file") from None
    except OSError as exc:
        raise RealtimeError(f"cannot read form config {path} ({exc.strerror}); check the path") from None
    try:
        return _build_config(raw, strictness, str(path))
    except RealtimeError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RealtimeError(f"form config {path} is malformed ({type(exc).__name__}: {exc}); fix the file") from None


def _build_config(raw: dict, strictness: str, path: str) -> AnalyzerConfig:
    for section in ("general", "view", "reps", "form"):
        if not isinstance(raw.get(section), dict):
            raise RealtimeError(f"form config {path} lacks the [{section}] table; restore it from the packaged file")
    general = {k: float(_resolve(v, strictness, f"general.{k}")) for k, v in raw["general"].items()}
    view = {k: float(_resolve(v, strictness, f"view.{k}")) for k, v in raw["view"].items()}
    default = raw["reps"].get("default", {})
    reps: dict[str, RepParams] = {}
    for ex in EXERCISES:
        if ex not in raw["reps"]:
            raise RealtimeError(f"form config {path} lacks [reps.{ex}]; add it (see the packaged file)")
        # scored_at is newer than some users' copies of this file: missing = the behaviour those copies had
        merged = {"smooth_s": general.get("smooth_s", 0.06), "median_frames": general.get("median_frames", 3),
                  "scored_at": "rest"}
        merged.update(default)
        merged.update(raw["reps"][ex])
        values = {}
        for key, kind in _REP_KEYS.items():
            if key not in merged:
                raise RealtimeError(f"form config {path}: [reps.{ex}] lacks {key}; add it")
            values[key] = kind(_resolve(merged[key], strictness, f"reps.{ex}.{key}"))
        p = RepParams(**values)
        if p.signal not in SIGNALS:
            raise RealtimeError(f"form config {path}: reps.{ex}.signal {p.signal!r} unknown; use one of {', '.join(SIGNALS)}")
        if p.rest not in ("top", "bottom"):
            raise RealtimeError(f"form config {path}: reps.{ex}.rest must be \"top\" or \"bottom\"")
        if p.rest_signal not in ("high", "low"):
            raise RealtimeError(f"form config {path}: reps.{ex}.rest_signal must be \"high\" or \"low\"")
        if p.scored_at not in ("rest", "turn"):
            raise RealtimeError(f"form config {path}: reps.{ex}.scored_at must be \"rest\" or \"turn\"")
        if p.gate not in GATES:
            raise RealtimeError(f"form config {path}: reps.{ex}.gate must be one of {', '.join(GATES)}")
        if not (p.full_rom > 0 and p.min_rom > 0 and 0 < p.enter_frac < 1 and 0 < p.exit_frac < 1
                and 0 < p.turn_frac < 1 and 0 <= p.partial_frac < 1 and 0 < p.min_rep_s < p.max_rep_s):
            raise RealtimeError(f"form config {path}: [reps.{ex}] has out-of-range values; fractions in (0, 1), ROMs > 0")
        reps[ex] = p
    form: dict[str, dict] = {}
    for name, table in raw["form"].items():
        if not isinstance(table, dict):
            raise RealtimeError(f"form config {path}: form.{name} must be a table")
        form[name] = {k: _resolve(v, strictness, f"form.{name}.{k}") for k, v in table.items()}
    return AnalyzerConfig(strictness, general, view, reps, form, path)


# ---------------------------------------------------------------------------------------------- rep data


@dataclass(frozen=True)
class RepSegment:
    """Keypoints of one rep plus a little context, as the rep analyzer hands it over.

    ``xy`` (T, 17, 2) cleaned + gap-filled pixels (NaN = missing), ``scale`` (T,) body scale in px. ``i_start``,
    ``i_turn``, ``i_end`` index the rep start (frames before it are context), the turn (bottom of a squat, lockout of a deadlift, top of a pull-up)
    and the end; ``tempo`` = (down_s, up_s): time spent moving down / up over the same part of the range (the rep
    counter measures both below its exit level, so a rep that is counted before the lifter is fully back up still
    gets comparable numbers).
    """

    exercise: str
    xy: np.ndarray
    t: np.ndarray
    scale: np.ndarray
    i_start: int
    i_turn: int
    i_end: int
    rest: str
    view: str
    tempo: tuple[float, float] | None = None  # (down_s, up_s) measured by the counter; None = from the frames


@dataclass(frozen=True)
class CheckResult:
    name: str
    measure: str
    value: float
    threshold: float
    op: str  # "<=" or ">=": how value must compare with threshold to pass
    passed: bool
    fault: str
    cue: str


@dataclass
class FormResult:
    measures: dict[str, float] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    cues: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)


def _cm(bu: float) -> float:
    return abs(bu) * A.BODY_UNIT_CM


class _Checker:
    """Collects measures, applies thresholds and view limits."""

    def __init__(self, cfg: dict, view: str) -> None:
        self.cfg = cfg
        self.view = view
        self.result = FormResult()

    def allowed(self, check: str, views_key: str) -> bool:
        views = self.cfg.get(views_key, ["side", "front", "back"])
        if self.view in views:
            return True
        self.result.skipped.append(f"{check} ({self.view} view)")
        return False

    def measure(self, name: str, value: float) -> None:
        if math.isfinite(value):
            self.result.measures[name] = float(value)

    def check(self, check: str, measure: str, value: float, key: str, op: str, fault: str, cue) -> None:
        """Record ``measure`` and test it against ``cfg[key]``; ``cue`` is a format string (v, thr, cm, thr_cm)
        or a callable (value, threshold) -> text."""
        if not math.isfinite(value):
            self.result.skipped.append(f"{check} (joints not visible)")
            return
        thr = float(self.cfg[key])
        self.measure(measure, value)
        ok = value <= thr if op == "<=" else value >= thr
        text = cue(value, thr) if callable(cue) else cue.format(v=value, thr=thr, cm=_cm(value), thr_cm=_cm(thr))
        self.result.checks.append(CheckResult(check, measure, float(value), thr, op, ok, fault, text))
        if not ok:
            self.result.faults.append(fault)
            self.result.cues.append(text)


def _window(seg: RepSegment, i: int, half_s: float, clip_start: bool = True) -> slice:
    """Frames within ``half_s`` of frame i, inside the rep (or also in the context before it)."""
    t = seg.t
    lo = int(np.searchsorted(t, t[i] - half_s, side="left"))
    hi = int(np.searchsorted(t, t[i] + half_s, side="right"))
    return slice(max(lo, seg.i_start if clip_start else 0), min(hi, seg.i_end + 1))


def _series(seg: RepSegment, fn) -> np.ndarray:
    return np.array([fn(xy, s) for xy, s in zip(seg.xy, seg.scale, strict=True)], dtype=np.float64)


def _nan_reduce(values: np.ndarray, how: str) -> float:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return math.nan
    return float({"min": np.min, "max": np.max, "median": np.median}[how](v))


def _mid_y(xy: np.ndarray, i: int, j: int) -> float:
    return float(A.midpoint(xy, i, j)[1])


def _facing(seg: RepSegment) -> float:
    """+1 when the lifter faces +x (image right), -1 when facing left, 0 when unknown (side views only)."""
    d = _series(seg, lambda xy, s: xy[A.NOSE, 0] - A.midpoint(xy, A.L_SHO, A.R_SHO)[0])
    m = _nan_reduce(d, "median")
    return 0.0 if not math.isfinite(m) else float(np.sign(m))


def _tempo(ck: _Checker, seg: RepSegment, form_cfg: dict) -> None:
    if seg.tempo is not None:
        down, up = seg.tempo
    else:
        t0, tt, t1 = seg.t[seg.i_start], seg.t[seg.i_turn], seg.t[seg.i_end]
        down, up = (tt - t0, t1 - tt) if seg.rest == "top" else (t1 - tt, tt - t0)
    ck.measure("down_s", down)
    ck.measure("up_s", up)
    tempo = form_cfg.get("tempo", {})
    if seg.exercise in tempo.get("exercises", []):
        ck.cfg = tempo
        ck.check("tempo", "down_s", down, "min_lowering_s", ">=", "rushed_lowering",
                 "tempo: lowered in {v:.1f} s (slow down, min {thr:.1f} s)")


def _squat(ck: _Checker, seg: RepSegment) -> None:
    w = _window(seg, seg.i_turn, 0.1)
    if ck.allowed("depth", "depth_views"):
        d = _series(seg, lambda xy, s: (_mid_y(xy, A.L_KNE, A.R_KNE) - _mid_y(xy, A.L_HIP, A.R_HIP)) / s)
        ck.check("depth", "hip_above_knee_bu", _nan_reduce(d[w], "min"), "max_hip_above_knee", "<=",
                 "shallow_depth", "depth: hip {cm:.0f} cm above knee (max {thr_cm:.0f})")
    if ck.allowed("knee_angle", "knee_angle_views"):
        k = _series(seg, lambda xy, s: A.side_mean(A.knee_angles(xy)))
        ck.check("knee_angle", "knee_angle_deg", _nan_reduce(k[w], "min"), "max_knee_angle", "<=",
                 "shallow_depth", "depth: knee angle {v:.0f}° (bend to {thr:.0f}°)")
    if ck.allowed("torso_lean", "torso_lean_views"):
        lean = _series(seg, lambda xy, s: A.tilt_from_vertical(A.midpoint(xy, A.L_SHO, A.R_SHO),
                                                               A.midpoint(xy, A.L_HIP, A.R_HIP)))
        ck.check("torso_lean", "torso_lean_deg", _nan_reduce(lean[w], "median"), "max_torso_lean", "<=",
                 "forward_lean", "chest up: torso leans {v:.0f}° (max {thr:.0f}°)")
    if ck.allowed("knee_valgus", "valgus_views"):
        def ratio(xy: np.ndarray, s: float) -> float:
            ankles = abs(xy[A.L_ANK, 0] - xy[A.R_ANK, 0])
            return abs(xy[A.L_KNE, 0] - xy[A.R_KNE, 0]) / ankles if ankles > 0.1 * s else math.nan
        r = _series(seg, ratio)
        ck.check("knee_valgus", "knee_ankle_ratio", _nan_reduce(r[w], "median"), "min_knee_ankle_ratio", ">=",
                 "knee_valgus", "knees out: knee gap {v:.2f} of ankle gap (min {thr:.2f})")


def _deadlift(ck: _Checker, seg: RepSegment) -> None:
    it = seg.i_turn
    hip = _series(seg, lambda xy, s: -_mid_y(xy, A.L_HIP, A.R_HIP) / s)  # heights, bu (image y points down)
    sho = _series(seg, lambda xy, s: -_mid_y(xy, A.L_SHO, A.R_SHO) / s)
    # set-up = lowest hips before the lockout, looking back into the context before the counted start (the
    # counter starts the rep when the shoulders move, which is late when the hips shoot up first)
    before = hip[:it + 1]
    i0 = int(np.nanargmin(before)) if np.isfinite(before).any() else seg.i_start
    if ck.allowed("hips_rise_first", "hips_first_views") and it > i0:
        total_hip, total_sho = hip[it] - hip[i0], sho[it] - sho[i0]
        ck.measure("hip_rise_bu", total_hip)
        ck.measure("shoulder_rise_bu", total_sho)
        if math.isfinite(total_hip) and math.isfinite(total_sho) and total_hip >= float(ck.cfg["min_hip_rise"]):
            frac = ck.cfg["hips_half_point"]
            half = next((i for i in range(i0, it + 1) if hip[i] - hip[i0] >= frac * total_hip), it)
            # absolute rises (bu) up to that point: equal when the back angle is kept, hips >> shoulders when
            # the hips shoot up
            ratio = (hip[half] - hip[i0]) / max(sho[half] - sho[i0], 0.02)
            ck.check("hips_rise_first", "hip_shoulder_rise_ratio", ratio, "max_hip_shoulder_rise_ratio", "<=",
                     "hips_rise_first", "chest up: hips rise {v:.1f}x faster than shoulders (max {thr:.1f}x)")
    if ck.allowed("setup", "setup_views"):
        w0 = _window(seg, i0, 0.1, clip_start=False)
        d = _series(seg, lambda xy, s: (_mid_y(xy, A.L_KNE, A.R_KNE) - _mid_y(xy, A.L_HIP, A.R_HIP)) / s)
        ck.check("setup", "setup_hip_above_knee_bu", _nan_reduce(d[w0], "median"), "min_setup_hip_above_knee", ">=",
                 "hips_too_low", "set-up: hips only {cm:.0f} cm above knees (min {thr_cm:.0f})")
    wt = _window(seg, it, 0.3)
    if ck.allowed("lockout", "lockout_views"):
        h = _series(seg, lambda xy, s: A.side_mean(A.hip_angles(xy)))
        ck.check("lockout", "lockout_hip_angle_deg", _nan_reduce(h[wt], "max"), "min_lockout_hip_angle", ">=",
                 "incomplete_lockout", "lockout: hips at {v:.0f}° (extend to {thr:.0f}°)")
    if ck.allowed("lean_back", "lean_back_views"):
        facing = _facing(seg)
        if facing != 0.0:
            def back(xy: np.ndarray, s: float) -> float:
                sho, hip = A.midpoint(xy, A.L_SHO, A.R_SHO), A.midpoint(xy, A.L_HIP, A.R_HIP)
                lean = A.tilt_from_vertical(sho, hip)
                return lean if (sho[0] - hip[0]) * facing < 0 else -lean  # shoulders behind the hips
            b = _series(seg, back)
            ck.check("lean_back", "lockout_lean_back_deg", _nan_reduce(b[wt], "max"), "max_lockout_lean_back", "<=",
                     "shoulders_behind_bar", "lockout: leaning back {v:.0f}° (max {thr:.0f}°)")
        else:
            ck.result.skipped.append("lean_back (facing unknown)")
    if ck.allowed("bar_path", "bar_path_views"):
        wx = _series(seg, lambda xy, s: A.midpoint(xy, A.L_WRI, A.R_WRI)[0] / s)
        seg_x = wx[i0:seg.i_end + 1]
        start = _nan_reduce(wx[_window(seg, i0, 0.1, clip_start=False)], "median")
        ck.check("bar_path", "bar_drift_bu", _nan_reduce(np.abs(seg_x - start), "max"), "max_bar_drift", "<=",
                 "bar_drift", "bar path: drifts {cm:.0f} cm (keep it over mid-foot, max {thr_cm:.0f})")


def _elbow_bottom(ck: _Checker, seg: RepSegment, fault: str) -> None:
    if ck.allowed("depth", "depth_views"):
        e = _series(seg, lambda xy, s: A.side_mean(A.elbow_angles(xy)))
        ck.check("depth", "bottom_elbow_angle_deg", _nan_reduce(e[_window(seg, seg.i_turn, 0.1)], "min"),
                 "max_bottom_elbow_angle", "<=", fault, "depth: elbows at {v:.0f}° (bend to {thr:.0f}°)")


def _pushup(ck: _Checker, seg: RepSegment) -> None:
    _elbow_bottom(ck, seg, "shallow_pushup")
    if ck.allowed("body_line", "body_line_views"):
        def signed(xy: np.ndarray, s: float) -> float:
            ang = A.side_mean(A.body_line_angles(xy))
            sho, hip, ank = A.midpoint(xy, A.L_SHO, A.R_SHO), A.midpoint(xy, A.L_HIP, A.R_HIP), A.midpoint(xy, A.L_ANK, A.R_ANK)
            dx = ank[0] - sho[0]
            if not (math.isfinite(ang) and abs(dx) > 1e-6):
                return math.nan
            line_y = sho[1] + (hip[0] - sho[0]) / dx * (ank[1] - sho[1])
            return ang if hip[1] >= line_y else -ang  # negative = pike (hips above the line)
        sl = _series(seg, signed)[seg.i_start:seg.i_end + 1]
        sl = sl[np.isfinite(sl)]
        if sl.size:
            worst = sl[np.argmin(np.abs(sl))]
            fault, word = ("hip_sag", "hips sag") if worst >= 0 else ("hips_high", "hips high")
            ck.check("body_line", "body_line_angle_deg", abs(float(worst)), "min_body_line_angle", ">=", fault,
                     f"body line: {word}, {{v:.0f}}° (min {{thr:.0f}}°)")
            ck.measure("hip_sag_side", 1.0 if worst >= 0 else -1.0)
        else:
            ck.result.skipped.append("body_line (joints not visible)")


def _bench(ck: _Checker, seg: RepSegment) -> None:
    _elbow_bottom(ck, seg, "shallow_bench")
    if ck.allowed("lockout", "lockout_views"):
        e = _series(seg, lambda xy, s: A.side_mean(A.elbow_angles(xy)))
        top = max(_nan_reduce(e[_window(seg, seg.i_start, 0.2)], "max"), _nan_reduce(e[_window(seg, seg.i_end, 0.2)], "max"))
        ck.check("lockout", "lockout_elbow_angle_deg", top, "min_lockout_elbow_angle", ">=", "incomplete_lockout",
                 "lockout: elbows at {v:.0f}° (extend to {thr:.0f}°)")


def _pullup(ck: _Checker, seg: RepSegment) -> None:
    if ck.allowed("chin_over_bar", "chin_views"):
        n = _series(seg, lambda xy, s: (_mid_y(xy, A.L_WRI, A.R_WRI) - xy[A.NOSE, 1]) / s)
        ck.check("chin_over_bar", "nose_above_wrists_bu", _nan_reduce(n[_window(seg, seg.i_turn, 0.2)], "max"),
                 "min_nose_above_wrists", ">=", "chin_below_bar",
                 lambda v, thr: f"chin over bar: nose {_cm(v):.0f} cm {'below' if v < 0 else 'above'} hands"
                                f" (need {_cm(thr):.0f} cm {'below' if thr < 0 else 'above'})")
    if ck.allowed("full_hang", "hang_views"):
        e = _series(seg, lambda xy, s: A.side_mean(A.elbow_angles(xy)))
        hang = _nan_reduce(e[_window(seg, seg.i_start, 0.2)], "max")
        ck.check("full_hang", "hang_elbow_angle_deg", hang, "min_hang_elbow_angle", ">=", "no_full_hang",
                 "full hang: elbows at {v:.0f}° (straighten to {thr:.0f}°)")


_EXERCISE_CHECKS = {"squat": _squat, "deadlift": _deadlift, "pushup": _pushup, "bench_press": _bench,
                    "pullup": _pullup}


def analyze_rep(seg: RepSegment, config: AnalyzerConfig) -> FormResult:
    """Measures, faults, cues and skipped checks of one rep."""
    ck = _Checker(config.form.get(seg.exercise, {}), seg.view)
    fn = _EXERCISE_CHECKS.get(seg.exercise)
    if fn is not None:
        if seg.view == "unknown":
            ck.result.skipped.append(f"{seg.exercise} form checks (view unknown)")
        else:
            fn(ck, seg)
    _tempo(ck, seg, config.form)
    return ck.result


def _above_below(bu: float, what: str) -> str:
    return f"{_cm(bu):.0f} cm {'above' if bu >= 0 else 'below'} {what}"


# The one measure a lifter or coach looks at first, per exercise: (measure, how to say it); the first one present
# in a rep is shown on screen next to its tempo.
HEADLINE: dict[str, tuple[tuple[str, object], ...]] = {
    "squat": (("knee_angle_deg", "knee {:.0f}°"), ("hip_above_knee_bu", lambda v: f"hip {_above_below(v, 'knee')}")),
    "deadlift": (("lockout_hip_angle_deg", "lockout {:.0f}°"),),
    "pushup": (("bottom_elbow_angle_deg", "elbow {:.0f}°"),),
    "bench_press": (("bottom_elbow_angle_deg", "elbow {:.0f}°"),),
    "pullup": (("nose_above_wrists_bu", lambda v: f"nose {_above_below(v, 'hands')}"),),
}


def rep_headline(exercise: str, measures: dict[str, float]) -> str:
    """Short on-screen summary of a finished rep: its key measure and tempo, e.g. ``knee 84°, down 0.9 s, up 0.7 s``."""
    parts = []
    for name, say in HEADLINE.get(exercise, ()):
        value = measures.get(name)
        if value is not None and math.isfinite(value):
            parts.append(say(value) if callable(say) else say.format(value))
            break
    down, up = measures.get("down_s"), measures.get("up_s")
    if down is not None and up is not None and math.isfinite(down) and math.isfinite(up):
        parts.append(f"down {down:.1f} s, up {up:.1f} s")
    return ", ".join(parts)
