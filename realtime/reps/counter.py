"""Live repetition segmentation and counting, with per-rep form analysis.

Each exercise drives a 1D body signal (``[reps.<exercise>].signal`` in ``form_config.toml``: hip height for squats,
shoulder height for deadlifts, elbow angle for push-ups / bench, shoulders vs wrists for pull-ups, ...), in body
units or degrees so it does not depend on the camera distance. A causal hysteresis state machine segments it:

    rest --(leaves the rest level by enter_frac x expected ROM)--> away --(comes back turn_frac x ROM)--> back
    back --(within exit_frac x ROM of the starting level)--> rep finished --> rest

The rest level is the running extreme of the last 3 s at rest, so slow drifts (walking closer) are followed. A rep
whose ROM is below ``partial_frac`` of the expected ROM (median of the last counted reps) is not counted; it comes
back as a "partial rep" cue. No person (signal missing > ``pause_s``) pauses the counter and drops the rep in
progress; a (re)appearing person is watched for ``settle_s`` before a rep may start. Lag: a 3-sample median plus an
EMA with a 0.06 s time constant, i.e. about 0.1 s; there is no other look-ahead.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from realtime.errors import RealtimeError
from realtime.reps import angles as A
from realtime.reps.form import AnalyzerConfig, RepParams, RepSegment, analyze_rep, load_config
from realtime.reps.view import ViewDetector, majority_view
from realtime.types import EXERCISES, OTHER_LABEL, RepEvent

log = logging.getLogger(__name__)

PHASES: tuple[str, ...] = ("top", "down", "bottom", "up", "idle")


@dataclass(frozen=True)
class RepUpdate:
    """What the rep analyzer says about one frame."""

    exercise: str | None
    count: int  # reps of the current exercise
    new_rep: RepEvent | None
    phase: str  # "top" | "down" | "bottom" | "up" | "idle"
    signal: float | None  # smoothed rep signal / full_rom of the exercise (1.0 = a textbook full rep's range)
    cues: tuple[str, ...]  # on-screen form cues of the last rep


@dataclass
class _Finished:
    """A segmented rep as the counter sees it (frames and times of start, turn, end)."""

    start_frame: int
    start_t: float
    turn_frame: int
    turn_t: float
    end_frame: int
    end_t: float
    rom: float  # in signal units
    partial: bool
    lower_s: float  # time spent below the exit level on the way away from rest ...
    return_s: float  # ... and on the way back (symmetric tempo: both phases measured over the same range)


class _MaxWindow:
    """Running maximum over a time window (monotonic deque)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._q: deque[tuple[float, float]] = deque()

    def clear(self) -> None:
        self._q.clear()

    def push(self, t: float, u: float) -> float:
        while self._q and self._q[-1][1] <= u:
            self._q.pop()
        self._q.append((t, u))
        while t - self._q[0][0] > self.window_s:
            self._q.popleft()
        return self._q[0][1]


class SignalCounter:
    """Hysteresis rep segmentation of one exercise's signal (see the module docstring)."""

    REST_WINDOW_S = 3.0

    def __init__(self, params: RepParams, pause_s: float = 0.6, settle_s: float = 0.4) -> None:
        self.p = params
        self.pause_s = pause_s
        self.settle_s = settle_s
        self.sign = 1.0 if params.rest_signal == "high" else -1.0  # u = sign * signal: the rest level is max(u)
        self._roms: deque[float] = deque(maxlen=5)
        self._raw: deque[float] = deque(maxlen=max(1, params.median_frames))
        self._rest = _MaxWindow(self.REST_WINDOW_S)
        self._trace: deque[tuple[float, float]] = deque(maxlen=8192)  # (t, u) since the rep started (bounded)
        self.reset()

    def reset(self) -> None:
        self.state = "idle"
        self.value: float | None = None  # smoothed signal
        self._raw.clear()
        self._rest.clear()
        self._last_valid_t = -math.inf
        self._last_t = -math.inf
        self._appear_t = 0.0
        self._r = 0.0
        self._near: tuple[int, float] = (0, 0.0)
        self._extreme = (0.0, 0, 0.0)  # u, frame, t
        self._extreme_moved_t = 0.0
        self._back_max = 0.0
        self._trace.clear()

    @property
    def expected_rom(self) -> float:
        prior = self.p.prior_frac * self.p.full_rom
        return statistics.median(self._roms) if self._roms else prior

    def _reference_rom(self) -> float:
        return min(self.expected_rom, self.p.full_rom)

    def phase(self) -> str:
        top, bottom = ("top", "bottom") if self.p.rest == "top" else ("bottom", "top")
        away, back = ("down", "up") if self.p.rest == "top" else ("up", "down")
        if self.state in ("idle", "settle"):
            return "idle"
        if self.state == "rest":
            return top
        if self.state == "away":
            return bottom if self._last_t - self._extreme_moved_t > 0.15 else away
        return back

    def _smooth(self, t: float, v: float) -> float:
        self._raw.append(v)
        med = float(statistics.median(self._raw))  # of 3 floats: numpy's per-call cost was 30 % of update()
        if self.value is None or not math.isfinite(self._last_valid_t):
            return med
        dt = max(t - self._last_valid_t, 1e-3)
        alpha = 1.0 - math.exp(-dt / self.p.smooth_s) if self.p.smooth_s > 0 else 1.0
        return self.value + alpha * (med - self.value)

    def _to_rest(self, frame: int, t: float, u: float) -> None:
        self.state = "rest"
        self._rest.clear()
        self._r = self._rest.push(t, u)
        self._near = (frame, t)

    def update(self, frame: int, t: float, value: float, gate: bool = True) -> _Finished | None:
        """Feed one frame (``value`` NaN = not measurable); returns a finished rep (counted or partial)."""
        self._last_t = t
        if not math.isfinite(value):
            if self.state != "idle" and t - self._last_valid_t > self.pause_s:
                if self.state in ("away", "back"):
                    log.debug("rep abandoned at frame %d: nobody in view", frame)
                self.state = "idle"
                self.value = None
                self._raw.clear()
            return None
        if self.state == "idle":
            self._raw.clear()
            self.value = None
            self._last_valid_t = -math.inf
        self.value = self._smooth(t, value)
        self._last_valid_t = t
        u = self.sign * self.value
        ref = self._reference_rom()
        enter = max(self.p.enter_frac * ref, 0.5 * self.p.min_rom)
        if self.state == "idle":
            self.state, self._appear_t = "settle", t
            self._rest.clear()
        if self.state in ("settle", "rest"):
            # settle = rest in which no rep may start yet (the body scale is still settling after (re)appearing);
            # the rest level seen meanwhile counts, so a descent that begins right away is still a rep
            self._r = self._rest.push(t, u)
            if u >= self._r - 0.1 * ref:
                self._near = (frame, t)
                self._trace.clear()
            self._trace.append((t, u))
            if self.state == "settle":
                if t - self._appear_t < self.settle_s:
                    return None
                self.state = "rest"
            if self._r - u >= enter and gate:
                self.state = "away"
                self._extreme = (u, frame, t)
                self._extreme_moved_t = t
            return None
        _, start_t = self._near
        self._trace.append((t, u))
        if t - start_t > self.p.max_rep_s:
            log.debug("rep abandoned at frame %d: longer than %.0f s", frame, self.p.max_rep_s)
            self._to_rest(frame, t, u)
            return None
        if u < self._extreme[0]:
            self._extreme = (u, frame, t)
            self._extreme_moved_t = t
            if self.state == "back":
                self.state = "away"
        rom = self._r - self._extreme[0]
        turn = max(self.p.turn_frac * rom, 0.25 * self.p.min_rom)
        if self.state == "away":
            if u - self._extreme[0] >= turn:
                self.state, self._back_max = "back", u
            return None
        # back
        self._back_max = max(self._back_max, u)
        if self._back_max - u >= turn:  # went down again before finishing: same rep
            self.state = "away"
            return None
        if u < self._r - self.p.exit_frac * rom:
            return None
        return self._finish(frame, t, u, rom)

    def _finish(self, frame: int, t: float, u: float, rom: float) -> _Finished | None:
        start_frame, start_t = self._near
        _, turn_frame, turn_t = self._extreme
        level = self._r - self.p.exit_frac * rom
        down_cross = next((tt for tt, uu in self._trace if uu <= level), turn_t)
        self._to_rest(frame, t, u)
        self._trace.clear()
        if t - start_t < self.p.min_rep_s or rom < self.p.min_rom:
            return None  # jitter / fidgeting, not a movement
        partial = rom < self.p.partial_frac * self._reference_rom()
        if not partial:
            self._roms.append(rom)
        return _Finished(start_frame, start_t, turn_frame, turn_t, frame, t, rom, partial, turn_t - down_cross,
                         t - turn_t)

    def flush(self, frame: int, t: float) -> _Finished | None:
        """End of stream: a rep past its turn and at least half-way back counts as finished; for an exercise scored
        at the turn (``scored_at = "turn"``: a pull-up counts once the chin is over the bar), so does one that got
        within ``exit_frac`` of the usual depth, even if the lifter had not started back."""
        if self.state not in ("away", "back") or self.value is None:
            return None
        u = self.sign * self.value
        rom = self._r - self._extreme[0]
        if rom <= 0:
            return None
        half_way_back = self.state == "back" and u - self._extreme[0] >= 0.5 * rom
        reached = self.p.scored_at == "turn" and rom >= (1.0 - self.p.exit_frac) * self._reference_rom()
        if not (half_way_back or reached):
            return None
        return self._finish(frame, t, u, rom)


@dataclass
class _HistEntry:
    frame: int
    t: float
    xy: np.ndarray | None
    scale: float
    view: str


class RepAnalyzer:
    """Counts reps of the followed exercise live and analyses each rep's form.

    ``exercise`` fixes the exercise (``--exercise``); otherwise the classifier's label is followed once it has been
    the same and confident for ``label_stable_s`` (reps of that exercise finished since the label first appeared
    are credited when the switch happens). ``update`` must be called for every processed frame, in order.
    """

    def __init__(self, strictness: str = "normal", config_path: str | None = None, exercise: str | None = None,
                 fps: float = 30.0) -> None:
        self.config: AnalyzerConfig = load_config(config_path, strictness)
        if exercise is not None and exercise not in EXERCISES:
            raise RealtimeError(f"unknown --exercise {exercise!r}; choose one of {', '.join(EXERCISES)}")
        if not (fps > 0 and math.isfinite(fps)):
            raise RealtimeError(f"fps must be a positive number, got {fps!r}")
        self.fixed_exercise = exercise
        self.fps = float(fps)
        g = self.config.general
        self._min_score = g["min_score"]
        hold = {j: g["ankle_hold_s"] for j in (A.L_ANK, A.R_ANK, A.L_KNE, A.R_KNE)}
        self._gap = A.GapFiller(g["max_gap_s"], hold)
        self._scale = A.ScaleTracker(g["scale_window_s"])
        v = self.config.view
        self._view = ViewDetector(v["side_max"], v["frontal_min"], v["face_min_score"], int(v["window_frames"]),
                                  self._min_score)
        names = (exercise,) if exercise else EXERCISES
        self._counters = {ex: SignalCounter(self.config.reps[ex], g["pause_s"], g["settle_s"])
                          for ex in names}
        self._hist: deque[_HistEntry] = deque(maxlen=int(g["history_s"] * self.fps) + 30)
        self.reps: deque[RepEvent] = deque(maxlen=int(g["max_reps_kept"]))
        self._timeline: deque[tuple[float, float, str]] = deque(maxlen=int(g["timeline_hz"] * g["timeline_s"]))
        self.reset()

    # ------------------------------------------------------------------ public API
    def reset(self) -> None:
        """Forget everything (new source)."""
        self._gap.reset()
        self._scale.reset()
        self._view.reset()
        for c in self._counters.values():
            c.reset()
        self._hist.clear()
        self.reps.clear()
        self._timeline.clear()
        self._current: str | None = self.fixed_exercise
        self._counts: Counter[str] = Counter()
        self._pending: deque[tuple[str, _Finished]] = deque(maxlen=64)
        self._votes: Counter[str] = Counter()  # classifier label per frame with a person (whole-file decision)
        self._cand: str | None = None
        self._cand_since = 0.0
        # confidences of the current label run, last ~label_stable_s only (bounded for long sessions)
        self._cand_conf: deque[float] = deque(maxlen=int(self.config.general["label_stable_s"] * self.fps) + 1)
        self._cues: tuple[str, ...] = ()
        self._last_tl_t = -math.inf
        self._agg: dict[str, dict] = {}
        self._last_frame, self._last_t = -1, 0.0

    @property
    def exercise(self) -> str | None:
        return self._current

    @property
    def in_progress(self) -> bool:
        """True while a rep of the followed exercise has started (left the rest level) and not finished."""
        cur = self._counters.get(self._current) if self._current else None
        return cur is not None and cur.state in ("away", "back")

    def update(self, frame_index: int, t: float, keypoints: np.ndarray | None, label: str | None,
               confidence: float = 1.0) -> RepUpdate:
        """Feed one frame: COCO-17 (17, 3) keypoints or None (nobody), the classifier's label and confidence."""
        self._last_frame, self._last_t = frame_index, t
        xy = A.clean_keypoints(keypoints, self._min_score) if keypoints is not None else None
        xy = self._gap.update(t, xy)
        if xy is not None and np.isfinite(xy).all(axis=1).sum() < 4:
            xy = None  # a few stray joints are not a person
        scale = self._scale.update(t, A.body_scale(xy)) if xy is not None else self._scale.value
        view = self._view.update(keypoints, scale) if xy is not None else self._view.view
        self._hist.append(_HistEntry(frame_index, t, xy, scale, view))

        new_events: list[RepEvent] = []
        if xy is not None and label is not None:
            self._votes[label if label in EXERCISES else OTHER_LABEL] += 1
        switched_to = self._follow_label(t, label, confidence)
        if switched_to:
            new_events += self._adopt_pending(switched_to)

        cache: dict[str, float] = {}
        for ex, counter in self._counters.items():
            p = counter.p
            if xy is None:
                value, gate = math.nan, False
            else:
                if p.signal not in cache:
                    cache[p.signal] = A.signal_value(p.signal, xy, scale)
                value, gate = cache[p.signal], A.gate_ok(p.gate, xy, scale)
            fin = counter.update(frame_index, t, value, gate)
            if fin is None:
                continue
            if ex == self._current:
                ev = self._emit(ex, fin)
                if ev is not None:
                    new_events.append(ev)
            elif not fin.partial:
                self._pending.append((ex, fin))

        cur = self._counters.get(self._current) if self._current else None
        signal = None
        if cur is not None and cur.value is not None:
            signal = cur.value / cur.p.full_rom
        phase = cur.phase() if cur is not None else "idle"
        if signal is not None and t - self._last_tl_t >= 1.0 / self.config.general["timeline_hz"]:
            self._timeline.append((t, signal, phase))
            self._last_tl_t = t
        return RepUpdate(self._current, self._counts[self._current] if self._current else 0,
                         new_events[-1] if new_events else None, phase, signal, self._cues)

    WHOLE_FILE_MIN_SHARE = 1 / 3  # share of the frames with a person the file's exercise must have been named in

    def file_exercise(self) -> str | None:
        """The exercise the classifier named most often over the whole stream (frames with a person), if it was
        named in at least a third of them and more often than ``other``; None otherwise or with ``--exercise``."""
        if self.fixed_exercise:
            return None
        total = sum(self._votes.values())
        named = [(n, ex) for ex, n in self._votes.items() if ex in self._counters]
        if not total or not named:
            return None
        n, ex = max(named)
        if n < self.WHOLE_FILE_MIN_SHARE * total or n <= self._votes[OTHER_LABEL]:
            return None
        return ex

    def finish(self) -> list[RepEvent]:
        """End of a file: count the current exercise's rep in progress if it is past its turn and half-way back.

        A file can be judged as a whole: when the classifier named one exercise for most of it (``file_exercise``)
        and live following credited that exercise late or never (short clips: the label settles after the first
        rep), its reps counted in the background before the label settled are credited now. Nothing is changed
        when another exercise was counted live (a file with two exercises keeps its live counts)."""
        events: list[RepEvent] = []
        whole = self.file_exercise()
        if whole is not None and whole != self._current and self._counts[self._current] == 0:
            self._current = whole
        if whole is not None and whole == self._current:
            # pending reps were never emitted: _adopt_pending drops what it credits
            late = [fin for name, fin in self._pending if name == whole]
            self._pending = deque(((n, f) for n, f in self._pending if n != whole), maxlen=self._pending.maxlen)
            for fin in sorted(late, key=lambda f: f.end_frame):
                ev = self._emit(whole, fin)
                if ev is not None:
                    events.append(ev)
            if late:
                log.info("end of file: %d %s rep(s) from before the label settled credited", len(late), whole)
        cur = self._counters.get(self._current) if self._current else None
        if cur is None:
            return events
        fin = cur.flush(self._last_frame, self._last_t)
        ev = self._emit(self._current, fin) if fin is not None else None
        return events + ([ev] if ev is not None else [])

    def summary(self) -> dict:
        """Per exercise: reps, partial reps, mean measures, fault counts (over the whole session)."""
        out: dict = {"strictness": self.config.strictness, "exercise_mode": "fixed" if self.fixed_exercise else "auto",
                     "total_reps": int(sum(self._counts.values())), "exercises": {}}
        total = sum(self._votes.values())
        if total:  # auto mode: what the classifier said, over the frames with a person
            out["labels"] = {label: round(n / total, 4) for label, n in self._votes.most_common()}
        for ex, agg in sorted(self._agg.items()):
            n = agg["reps"]
            out["exercises"][ex] = {
                "reps": n,
                "partial_reps": agg["partial"],
                "mean_range_of_motion": round(agg["rom"] / n, 4) if n else None,
                "mean_duration_s": round(agg["dur"] / n, 4) if n else None,
                "mean_measures": {k: round(s / c, 4) for k, (s, c) in sorted(agg["measures"].items())},
                "faults": dict(sorted(agg["faults"].items())),
                "reps_with_faults": agg["faulty"],
                "views": dict(sorted(agg["views"].items())),
                "skipped_checks": dict(sorted(agg["skipped"].items())),
            }
        return out

    def timeline(self) -> list[tuple[float, float, str]]:
        """Downsampled (t, signal / full_rom, phase) history of the followed exercise (bounded)."""
        return list(self._timeline)

    def skipped_checks(self, rep: RepEvent) -> tuple[str, ...]:
        """Form checks the camera view (or missing joints) did not allow for this rep."""
        return tuple(rep.skipped)

    # ------------------------------------------------------------------ internals
    def _follow_label(self, t: float, label: str | None, confidence: float) -> str | None:
        """Label hysteresis; returns the newly followed exercise on a switch to one."""
        if self.fixed_exercise or label is None:
            return None
        label = label if label in EXERCISES else OTHER_LABEL
        if label != self._cand:
            self._cand, self._cand_since = label, t
            self._cand_conf.clear()
        self._cand_conf.append(float(confidence))
        target = None if label == OTHER_LABEL else label
        if target == self._current:
            return None
        if (t - self._cand_since >= self.config.general["label_stable_s"]
                and statistics.fmean(self._cand_conf) >= self.config.general["label_min_confidence"]):
            log.debug("following %s from t=%.2f", target, t)
            self._current = target
            return target
        return None

    def _adopt_pending(self, ex: str) -> list[RepEvent]:
        """Credit reps of ``ex`` that finished while the classifier was already saying ``ex`` (earlier ones stay
        pending: ``finish`` may credit them when the whole file turns out to be ``ex``)."""
        events = []
        keep: deque[tuple[str, _Finished]] = deque(maxlen=self._pending.maxlen)
        for name, fin in self._pending:
            if name == ex and fin.end_t >= self._cand_since:
                ev = self._emit(ex, fin)
                if ev is not None:
                    events.append(ev)
            else:
                keep.append((name, fin))
        self._pending = keep
        return events

    CONTEXT_S = 1.0  # frames kept before the rep start for checks that look at the set-up (deadlift)

    def _segment(self, ex: str, fin: _Finished, view: str) -> RepSegment | None:
        rows = [h for h in self._hist if fin.start_t - self.CONTEXT_S <= h.t and h.frame <= fin.end_frame]
        frames = np.array([h.frame for h in rows], dtype=np.int64)
        i_start = int(np.searchsorted(frames, fin.start_frame))
        if len(rows) - i_start < 2:
            return None
        xy = np.stack([h.xy if h.xy is not None else np.full((17, 2), np.nan) for h in rows])
        i_turn = int(np.clip(np.searchsorted(frames, fin.turn_frame), i_start, len(rows) - 1))
        rest = self.config.reps[ex].rest
        tempo = (fin.lower_s, fin.return_s) if rest == "top" else (fin.return_s, fin.lower_s)
        return RepSegment(ex, xy, np.array([h.t for h in rows]), np.array([h.scale for h in rows]), i_start, i_turn,
                          len(rows) - 1, rest, view, tempo)

    def _emit(self, ex: str, fin: _Finished) -> RepEvent | None:
        agg = self._agg.setdefault(ex, {"reps": 0, "partial": 0, "rom": 0.0, "dur": 0.0, "measures": {},
                                        "faults": Counter(), "faulty": 0, "views": Counter(), "skipped": Counter()})
        p = self.config.reps[ex]
        rom_norm = fin.rom / p.full_rom
        if fin.partial:
            agg["partial"] += 1
            self._cues = (f"partial rep: {rom_norm:.0%} of a full range, not counted",)
            return None
        views = [h.view for h in self._hist if fin.start_frame <= h.frame <= fin.end_frame]
        view = majority_view(views)
        seg = self._segment(ex, fin, view)
        measures: dict[str, float] = {}
        faults: list[str] = []
        cues: list[str] = []
        skipped: list[str] = []
        if seg is not None:
            res = analyze_rep(seg, self.config)
            measures, faults, cues, skipped = res.measures, res.faults, res.cues, res.skipped
        else:
            skipped = ["all checks (rep longer than the kept history)"]
        measures = {"rom_signal": float(fin.rom), **measures}
        self._counts[ex] += 1
        ev = RepEvent(exercise=ex, index=self._counts[ex], start_frame=fin.start_frame, end_frame=fin.end_frame,
                      start_t=fin.start_t, end_t=fin.end_t, range_of_motion=rom_norm, bottom_frame=fin.turn_frame,
                      measures=measures, faults=list(dict.fromkeys(faults)), view=view, skipped=list(skipped))
        self.reps.append(ev)
        self._cues = tuple(cues)
        agg["reps"] += 1
        agg["rom"] += rom_norm
        agg["dur"] += ev.duration_s
        for k, v in measures.items():
            s, c = agg["measures"].get(k, (0.0, 0))
            agg["measures"][k] = (s + v, c + 1)
        agg["faults"].update(ev.faults)
        agg["faulty"] += bool(ev.faults)
        agg["views"][view] += 1
        agg["skipped"].update(skipped)
        return ev
