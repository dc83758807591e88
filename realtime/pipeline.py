"""The live pipeline: capture thread -> ring buffer -> analysis thread -> main thread (draw, screen, sinks).

- Capture thread (``realtime.sources.capture.Capture``): reads into a bounded ring buffer; live sources drop the oldest.
- Analysis thread: pose -> smoothing -> classifier -> reps/form, one ``FrameResult`` per frame, into a small
  bounded queue (it blocks when the main thread is behind, which pushes drops back to the capture buffer for
  live sources and costs nothing for files).
- Main thread: overlay, OpenCV window, events log, video writer (its own thread), dashboard.
One stop event ends everything; every queue is bounded and every wait has a timeout, so shutdown joins fast.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from realtime.outputs.overlay import draw_overlay
from realtime.stats import RunStats, StatsSnapshot
from realtime.types import Frame, FrameResult, PoseResult

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    """What the pipeline needs from a source (``realtime.sources.capture.Capture``, ``realtime.sources.synthetic.SyntheticSource``)."""

    source_id: str
    fps: float
    size: tuple[int, int]
    is_live: bool
    state: str
    error: str | None

    def start(self) -> None: ...
    def get(self, timeout: float = 0.1) -> Frame | None: ...
    @property
    def ended(self) -> bool: ...
    def stats(self) -> Any: ...
    def stop(self, timeout: float = 2.0) -> None: ...


class Analyzer:
    """Pose -> smoothing -> classifier -> reps for one frame at a time (single-threaded; reused by bench/soak)."""

    def __init__(self, estimator, classifier=None, reps=None, smoother=None, stats: RunStats | None = None) -> None:
        self.estimator = estimator
        self.classifier = classifier
        self.reps = reps
        self.smoother = smoother
        self.stats = stats or RunStats()
        self.t0: float | None = None  # live sources: time of the first frame
        self.last_rep = None

    def frame_time(self, frame: Frame) -> float:
        """Analysis clock: media time for files (tempo in real seconds even when decoding faster), else run time."""
        if frame.media_t is not None:
            return frame.media_t
        if self.t0 is None:
            self.t0 = frame.t
        return frame.t - self.t0

    def reset_tracking(self) -> None:
        self.estimator.reset()
        if self.smoother is not None:
            self.smoother.reset()

    def process(self, frame: Frame) -> FrameResult:
        stage: dict[str, float] = {}
        t_media = self.frame_time(frame)
        t = time.perf_counter()
        pose: PoseResult = self.estimator.estimate(frame.image)
        if self.smoother is not None:
            if pose.keypoints is None:
                self.smoother.reset()
            else:
                smoothed = self.smoother.filter(pose.keypoints, t_media)
                pose = dataclasses.replace(pose, keypoints=smoothed, raw_keypoints=pose.keypoints)
        stage["pose"] = (time.perf_counter() - t) * 1000
        prediction = None
        if self.classifier is not None:
            t = time.perf_counter()
            prediction = self.classifier.push(pose.keypoints, t_media)
            stage["classifier"] = (time.perf_counter() - t) * 1000
        rep_count, exercise, new_rep, cues = 0, None, None, ()
        if self.reps is not None:
            t = time.perf_counter()
            update = self.reps.update(
                frame.index, t_media, pose.keypoints,
                prediction.label if prediction else None, prediction.confidence if prediction else 0.0,
            )
            stage["reps"] = (time.perf_counter() - t) * 1000
            rep_count, exercise, new_rep, cues = update.count, update.exercise, update.new_rep, update.cues
            if new_rep is not None:
                self.last_rep = new_rep
        for name, ms in stage.items():
            self.stats.add(name, ms)
        return FrameResult(
            frame=frame, pose=pose, prediction=prediction, t=t_media, rep_count=rep_count, exercise=exercise,
            new_rep=new_rep, last_rep=self.last_rep, cues=tuple(cues), stage_ms=stage,
            status="ok" if pose.present else "no person",
        )


@dataclass
class RunOutcome:
    frames_read: int
    frames_processed: int
    frames_dropped: int
    duration_s: float
    error: str | None
    stopped_by: str  # "end" | "user" | "max-frames" | "error"
    summary: dict[str, Any] = field(default_factory=dict)


_END = object()


class Pipeline:
    """Wires a source, an analyzer and the sinks together, with the threads described in the module doc."""

    def __init__(
        self,
        source: FrameSource,
        analyzer: Analyzer,
        *,
        events=None,
        video=None,
        screen=None,
        dashboard=None,
        max_frames: int | None = None,
        draw: bool = True,
        stop_event: threading.Event | None = None,
        results_capacity: int = 4,
    ) -> None:
        self.source = source
        self.analyzer = analyzer
        self.stats = analyzer.stats
        self.events = events
        self.video = video
        self.screen = screen
        self.dashboard = dashboard
        self.max_frames = max_frames
        self.draw = draw or video is not None or screen is not None
        self.stop_event = stop_event or threading.Event()
        self._results: queue.Queue = queue.Queue(maxsize=results_capacity)
        self._source_events: deque[dict] = deque(maxlen=1000)  # filled by the capture thread
        self._reset_pending = threading.Event()
        self._analysis_error: str | None = None
        self._stopped_by = "end"
        self._last_overlay: np.ndarray | None = None
        self._last_result: FrameResult | None = None
        self.t0 = time.monotonic()

    # Called from the capture thread.
    def on_source_event(self, event: dict) -> None:
        self._source_events.append(event)
        if event.get("state") == "back":
            self._reset_pending.set()  # a reconnected camera may have moved: re-find the lifter

    def _analysis_loop(self) -> None:
        processed = 0
        try:
            while not self.stop_event.is_set():
                frame = self.source.get(timeout=0.1)
                if frame is None:
                    if self.source.ended:
                        break
                    continue
                if self._reset_pending.is_set():
                    self._reset_pending.clear()
                    self.analyzer.reset_tracking()
                result = self.analyzer.process(frame)
                while not self.stop_event.is_set():
                    try:
                        self._results.put(result, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                processed += 1
                if self.max_frames is not None and processed >= self.max_frames:
                    self._stopped_by = "max-frames"
                    break
        except Exception as exc:  # the main thread reports it; sinks still finalise
            log.exception("analysis failed")
            self._analysis_error = f"analysis failed: {type(exc).__name__}: {exc}"
            self._stopped_by = "error"
        finally:
            while True:
                try:
                    self._results.put(_END, timeout=0.1)
                    break
                except queue.Full:
                    if self.stop_event.is_set():
                        # the main thread is gone or stopping: make room for the sentinel
                        try:
                            self._results.get_nowait()
                        except queue.Empty:
                            pass

    def _emit(self, result: FrameResult) -> None:
        t = time.perf_counter()
        image = result.frame.image
        if self.draw:
            image = draw_overlay(image, result, self.stats.fps_out(), self._dropped())
            self._last_overlay = image
            self.stats.add("draw", (time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        if self.events is not None:
            self.events.frame(result)
        if self.video is not None:
            self.video.write(image)
        self._show(image)
        self.stats.add("sinks", (time.perf_counter() - t) * 1000)
        self.stats.frame_done(result.frame.t)
        self._last_result = result

    def _drain_source_events(self) -> None:
        while self._source_events:
            event = self._source_events.popleft()
            if self.events is not None:
                event = dict(event)
                if "t" in event:
                    event["t"] = round(event["t"] - self.t0, 4)
                self.events.write(event)

    def _dropped(self) -> int:
        try:
            return int(self.source.stats().frames_dropped)
        except Exception:  # noqa: BLE001 - stats are informative only
            return 0

    def snapshot(self) -> StatsSnapshot:
        src = self.source.stats()
        last = self._last_result
        pred = last.prediction if last else None
        status = "reconnecting" if self.source.state == "reconnecting" else (last.status if last else "starting")
        return StatsSnapshot(
            stages=self.stats.stages(),
            end_to_end=self.stats.end_to_end(),
            fps_out=self.stats.fps_out(),
            frames_read=src.frames_read,
            frames_processed=self.stats.frames_processed,
            frames_dropped=src.frames_dropped,
            buffer_fill=src.buffer_fill,
            buffer_capacity=src.buffer_capacity,
            label=pred.label if pred else None,
            confidence=pred.confidence if pred else 0.0,
            reps=last.rep_count if last else 0,
            status=status,
        )

    def _show(self, image: np.ndarray) -> None:
        """Show a frame; the user closing the window (q, Esc) stops the run."""
        if self.screen is not None and not self.screen.show(image):
            self._stopped_by = "user"
            self.stop_event.set()

    def _show_waiting(self) -> None:
        """Keep the window alive (and say why nothing moves) while the source reconnects."""
        if self.screen is None or self._last_overlay is None:
            return
        image = self._last_overlay
        if self.source.state == "reconnecting":
            import cv2

            image = image.copy()
            cv2.putText(image, "RECONNECTING...", (20, image.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.5,
                        (0, 200, 255), 3, cv2.LINE_AA)
        self._show(image)

    def run(self) -> RunOutcome:
        start = time.monotonic()
        self.t0 = start
        self.source.start()
        worker = threading.Thread(target=self._analysis_loop, name="analysis", daemon=True)
        worker.start()
        try:
            while True:
                self._drain_source_events()
                try:
                    item = self._results.get(timeout=0.05)
                except queue.Empty:
                    if self.stop_event.is_set() and not worker.is_alive():
                        break
                    self._show_waiting()
                    self._refresh_dashboard()
                    continue
                if item is _END:
                    break
                self._emit(item)
                self._refresh_dashboard()
        except KeyboardInterrupt:
            self._stopped_by = "user"
        finally:
            if self.stop_event.is_set() and self._stopped_by == "end":
                self._stopped_by = "user"  # a signal handler or the caller asked us to stop
            self.stop_event.set()
            self.source.stop(timeout=2.0)
            worker.join(timeout=2.0)
            # Results already computed are written, not lost.
            while True:
                try:
                    item = self._results.get_nowait()
                except queue.Empty:
                    break
                if item is not _END:
                    self._emit(item)
            self._drain_source_events()
            self._refresh_dashboard(force=True)
        src = self.source.stats()
        error = self._analysis_error or self.source.error
        stopped_by = self._stopped_by if error is None else ("error" if self._stopped_by == "end" else self._stopped_by)
        return RunOutcome(
            frames_read=int(src.frames_read),
            frames_processed=self.stats.frames_processed,
            frames_dropped=int(src.frames_dropped),
            duration_s=time.monotonic() - start,
            error=error,
            stopped_by=stopped_by,
        )

    def _refresh_dashboard(self, force: bool = False) -> None:
        if self.dashboard is not None:
            self.dashboard.update(self.snapshot(), time.monotonic(), force=force)


def summary_record(outcome: RunOutcome, stats: RunStats, extra: dict[str, Any]) -> dict[str, Any]:
    """The final ``{"type": "summary"}`` line of the events log (and the bench JSON's core)."""
    stages = {
        name: {"p50_ms": round(s.p50_ms, 3), "p95_ms": round(s.p95_ms, 3), "mean_ms": round(s.mean_ms, 3)}
        for name, s in stats.stages().items()
    }
    e2e = stats.end_to_end()
    return {
        "frames_read": outcome.frames_read,
        "frames_processed": outcome.frames_processed,
        "frames_dropped": outcome.frames_dropped,
        "duration_s": round(outcome.duration_s, 3),
        "fps": round(outcome.frames_processed / outcome.duration_s, 2) if outcome.duration_s > 0 else 0.0,
        "stage_ms": stages,
        "end_to_end_ms": {"p50": round(e2e.p50_ms, 3), "p95": round(e2e.p95_ms, 3)} if e2e else None,
        "stopped_by": outcome.stopped_by,
        "error": outcome.error,
        **extra,
    }
