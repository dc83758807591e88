"""The live pipeline, for one camera or many.

Per camera (``CameraPipeline``):
- capture thread (``realtime.sources.capture.Capture``): reads into a bounded ring buffer; live sources drop the oldest;
- analysis thread: pose -> smoothing -> classifier -> reps/form, one ``FrameResult`` per frame, into a small bounded
  queue (it blocks when the output thread is behind, which pushes drops back to the capture buffer for live sources
  and costs nothing for files);
- output thread: overlay, events log, video writer (its own thread), web hub, database.
The pose models are shared by all cameras (``realtime.pose.shared``): a camera's analysis thread hands its crop to
the shared engine and waits for its result.

The main thread (``MultiPipeline.run``) shows the window (a grid of every camera's overlay) and the dashboard, and
owns the stop event. Every queue is bounded and every wait has a timeout, so shutdown joins fast.
``Pipeline`` is the single-camera form with the same threads.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from realtime.errors import PoseServerUnavailable
from realtime.outputs.overlay import draw_overlay
from realtime.stats import RunStats, StatsSnapshot
from realtime.types import Frame, FrameResult, PoseResult

if TYPE_CHECKING:
    from realtime.sources.capture import CaptureStats

log = logging.getLogger(__name__)
RATE_HINT_AFTER_S = 30.0  # a live camera without a cap that drops this long ...
RATE_HINT_DROPPED = 0.3  # ... more than this share of its frames gets one hint to set --analysis-fps

POSE_SERVER_DOWN = "pose server unreachable"


class FrameSource(Protocol):
    """What the pipeline needs from a source (``Capture``, ``SyntheticSource``)."""

    source_id: str
    fps: float
    analysis_fps: float | None  # the cap on frames a second handed on, or None
    delivered_fps: float  # frames a second handed on when nothing is dropped (the overlay video's rate)
    size: tuple[int, int]
    is_live: bool
    state: str
    error: str | None

    def start(self) -> None: ...
    def get(self, timeout: float = 0.1) -> Frame | None: ...
    @property
    def ended(self) -> bool: ...
    def stats(self) -> CaptureStats: ...
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
        self.pose_error: str | None = None  # why the pose server cannot be reached, while it cannot

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
        try:
            pose: PoseResult = self.estimator.estimate(frame.image)
            self.pose_error = None
        except PoseServerUnavailable as exc:  # remote engine down: this frame has no pose; capture goes on
            self.pose_error = str(exc)
            pose = PoseResult(keypoints=None)
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
        status = POSE_SERVER_DOWN if self.pose_error else ("ok" if pose.present else "no person")
        return FrameResult(
            frame=frame, pose=pose, prediction=prediction, t=t_media, rep_count=rep_count, exercise=exercise,
            new_rep=new_rep, last_rep=self.last_rep, cues=tuple(cues), stage_ms=stage, status=status,
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
    frames_skipped: int = 0  # left out by the camera's analysis rate (not drops: never meant to be analysed)


class FrameListener(Protocol):
    """An extra output fed by a camera's output thread (web hub, database): must be quick and never raise."""

    def wants_image(self) -> bool:
        """Whether the next ``frame`` call needs the overlay image (it is drawn only if something needs it)."""
        ...

    def frame(self, result: FrameResult, image: np.ndarray | None, snapshot: StatsSnapshot) -> None:
        """One processed frame; ``image`` is the overlay, or None when no output asked for it."""
        ...

    def event(self, record: dict) -> None: ...


_END = object()


class CameraPipeline:
    """One camera: its source, its analysis and its outputs, on two threads of its own (see the module doc)."""

    def __init__(
        self,
        source: FrameSource,
        analyzer: Analyzer,
        *,
        name: str = "cam0",
        events=None,
        video=None,
        video_factory: Callable[[float, tuple[int, int]], Any] | None = None,
        listeners: tuple[FrameListener, ...] = (),
        max_frames: int | None = None,
        draw: bool = True,
        results_capacity: int = 4,
        on_start: Callable[[], None] | None = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.analyzer = analyzer
        self.stats = analyzer.stats
        self.events = events
        self.video = video
        self._video_factory = video_factory  # a camera that opens late: the writer is made at its first frame
        self.listeners = listeners
        self.max_frames = max_frames
        self.draw = draw or video is not None or video_factory is not None
        self.stop_event = threading.Event()
        self._results: queue.Queue = queue.Queue(maxsize=results_capacity)
        self._source_events: deque[dict] = deque(maxlen=1000)  # filled by the capture thread
        self._reset_pending = threading.Event()
        self._analysis_error: str | None = None
        self._stopped_by = "end"
        self._on_start, self._on_stop = on_start, on_stop
        self.latest_overlay: np.ndarray | None = None  # for the window (read by the main thread)
        self._last_result: FrameResult | None = None
        self._pose_down = False
        self._threads: list[threading.Thread] = []
        self.t0 = time.monotonic()
        self._start_t = self.t0
        self._end_t: float | None = None
        self._rate_hint_due = True

    # Called from the capture thread.
    def on_source_event(self, event: dict) -> None:
        self._source_events.append(event)
        if event.get("state") == "back":
            self._reset_pending.set()  # a reconnected camera may have moved: re-find the lifter

    # -- analysis thread ---------------------------------------------------------------------------------------
    def _analysis_loop(self) -> None:
        processed = 0
        if self._on_start is not None:
            self._on_start()
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
        except Exception as exc:  # the output thread reports it; sinks still finalise
            log.exception("analysis of %s failed", self.name)
            self._analysis_error = f"analysis failed: {type(exc).__name__}: {exc}"
            self._stopped_by = "error"
        finally:
            if self._on_stop is not None:
                self._on_stop()
            while True:
                try:
                    self._results.put(_END, timeout=0.1)
                    break
                except queue.Full:
                    if self.stop_event.is_set():
                        try:  # the output thread is stopping: make room for the sentinel
                            self._results.get_nowait()
                        except queue.Empty:
                            pass

    # -- output thread -----------------------------------------------------------------------------------------
    def _output_loop(self) -> None:
        try:
            while True:
                self._drain_source_events()
                try:
                    item = self._results.get(timeout=0.05)
                except queue.Empty:
                    if self.stop_event.is_set() and not self._threads[0].is_alive():
                        break
                    continue
                if item is _END:
                    break
                self._emit(item)
        finally:
            self._drain_source_events()

    def _emit(self, result: FrameResult) -> None:
        t = time.perf_counter()
        image = result.frame.image
        status = "reconnecting" if self.source.state == "reconnecting" else None
        # drawn for the window or the video, or for a viewer of the web view (only while someone watches)
        if self.draw or any(listener.wants_image() for listener in self.listeners):
            image = draw_overlay(image, result, self.stats.fps_out(), self._dropped(), source_status=status)
            self.latest_overlay = image
            self.stats.add("draw", (time.perf_counter() - t) * 1000)
        else:
            image = None
        self._pose_server_event(result)
        t = time.perf_counter()
        if self.listeners:  # first: the database commits a rep before its event line is written
            snapshot = self.snapshot(result)
            for listener in self.listeners:
                listener.frame(result, image, snapshot)
        if self.events is not None:
            self.events.frame(result)
        if self.video is None and self._video_factory is not None:
            h, w = image.shape[:2]
            self.video = self._video_factory(self.source.delivered_fps, (w, h))
        if self.video is not None:
            self.video.write(image)
        self.stats.add("sinks", (time.perf_counter() - t) * 1000)
        self.stats.frame_done(result.frame.t)
        self._last_result = result
        if self._rate_hint_due and time.monotonic() - self._start_t >= RATE_HINT_AFTER_S:
            self._rate_hint_due = False
            self._hint_analysis_rate()

    def _hint_analysis_rate(self) -> None:
        """Once per run: a live camera that drops most of its frames is better served by a set analysis rate (the
        frames then come evenly spaced, and the CPU they no longer take is left to the other cameras and viewers)."""
        if not self.source.is_live or self.source.analysis_fps is not None:
            return
        src = self.source.stats()
        if src.frames_read and src.frames_dropped > RATE_HINT_DROPPED * src.frames_read:
            fps = self.stats.fps_out()
            log.warning("camera %s: %.0f %% of its frames were dropped (%.1f of them analysed a second); "
                        "--analysis-fps %d (or analysis_fps in cameras.toml) analyses evenly spaced frames and leaves "
                        "CPU for the other cameras and the web view", self.name,
                        100 * src.frames_dropped / src.frames_read, fps, max(1, math.floor(fps * 0.8)))

    def _pose_server_event(self, result: FrameResult) -> None:
        """A ``source``-style event when the remote pose server goes away and when it answers again."""
        down = result.status == POSE_SERVER_DOWN
        if down == self._pose_down:
            return
        self._pose_down = down
        record = {"type": "source", "state": "pose server unreachable" if down else "pose server back",
                  "t": round(time.monotonic() - self.t0, 4), "source": self.source.source_id}
        if down:
            record["reason"] = self.analyzer.pose_error
        self._write_event(record)

    def _write_event(self, record: dict) -> None:
        if self.events is not None:
            self.events.write(record)
        for listener in self.listeners:
            listener.event(record)

    def _drain_source_events(self) -> None:
        while self._source_events:
            event = dict(self._source_events.popleft())
            if "t" in event:
                event["t"] = round(event["t"] - self.t0, 4)
            self._write_event(event)

    def _dropped(self) -> int:
        try:
            return int(self.source.stats().frames_dropped)
        except Exception:  # noqa: BLE001 - stats are informative only
            return 0

    # -- state for the window, dashboard and web view ----------------------------------------------------------
    def status(self) -> str:
        if self.source.state == "reconnecting":
            return "reconnecting"
        if self.source.state == "failed" or self._analysis_error:
            return "error"
        last = self._last_result
        if last is None:
            return "starting"
        if self.finished:
            return "ended"
        return last.status

    def snapshot(self, last: FrameResult | None = None) -> StatsSnapshot:
        src = self.source.stats()
        last = last or self._last_result
        pred = last.prediction if last else None
        return StatsSnapshot(
            stages=self.stats.stages(),
            end_to_end=self.stats.end_to_end(),
            fps_out=self.stats.fps_out(),
            frames_read=src.frames_read,
            frames_processed=self.stats.frames_processed,
            frames_dropped=src.frames_dropped,
            frames_skipped=src.frames_skipped,
            buffer_fill=src.buffer_fill,
            buffer_capacity=src.buffer_capacity,
            label=pred.label if pred else None,
            confidence=pred.confidence if pred else 0.0,
            reps=last.rep_count if last else 0,
            # A result being emitted speaks for itself; otherwise the camera's state (reconnecting, ended, ...).
            status=last.status if last is not None and last is not self._last_result else self.status(),
            extra={"camera": self.name, "exercise": last.exercise if last else None,
                   "last_rep": last.last_rep if last else None, "cues": last.cues if last else ()},
        )

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._start_t = time.monotonic()
        self.t0 = self._start_t
        self.source.start()
        analysis = threading.Thread(target=self._analysis_loop, name=f"analysis[{self.name}]", daemon=True)
        output = threading.Thread(target=self._output_loop, name=f"output[{self.name}]", daemon=True)
        self._threads = [analysis, output]
        analysis.start()
        output.start()

    @property
    def finished(self) -> bool:
        return bool(self._threads) and not any(t.is_alive() for t in self._threads)

    def stop(self, stopped_by: str | None = None) -> None:
        if stopped_by and self._stopped_by == "end":
            self._stopped_by = stopped_by
        self.stop_event.set()

    def join(self, timeout: float = 2.0) -> None:
        self.source.stop(timeout=timeout)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        # Results already computed are written, not lost.
        while True:
            try:
                item = self._results.get_nowait()
            except queue.Empty:
                break
            if item is not _END:
                self._emit(item)
        self._drain_source_events()
        self._end_t = self._end_t or time.monotonic()

    def outcome(self) -> RunOutcome:
        src = self.source.stats()
        error = self._analysis_error or self.source.error
        stopped_by = self._stopped_by if error is None else ("error" if self._stopped_by == "end" else self._stopped_by)
        return RunOutcome(
            frames_read=int(src.frames_read),
            frames_processed=self.stats.frames_processed,
            frames_dropped=int(src.frames_dropped),
            duration_s=(self._end_t or time.monotonic()) - self._start_t,
            error=error,
            stopped_by=stopped_by,
            frames_skipped=src.frames_skipped,
        )


class MultiPipeline:
    """Runs every camera's pipeline; the calling (main) thread shows the window grid and the dashboard."""

    def __init__(self, cameras: list[CameraPipeline], *, screen=None, dashboard=None, engine=None,
                 stop_event: threading.Event | None = None, tile_size: tuple[int, int] = (640, 360)) -> None:
        self.cameras = cameras
        self.screen = screen
        self.dashboard = dashboard
        self.engine = engine  # the shared pose engine, for the dashboard's batch figures
        self.stop_event = stop_event or threading.Event()
        self.tile_size = tile_size
        self._user_stop = False

    def run(self) -> dict[str, RunOutcome]:
        for camera in self.cameras:
            camera.start()
        try:
            while not all(c.finished for c in self.cameras):
                if self.stop_event.wait(0.03):
                    break
                self._show()
                self._refresh_dashboard()
        except KeyboardInterrupt:
            self._user_stop = True
        finally:
            stopped_by = "user" if (self.stop_event.is_set() or self._user_stop) else None
            for camera in self.cameras:
                camera.stop(stopped_by if not camera.finished else None)
            for camera in self.cameras:
                camera.join(timeout=2.0)
            self._refresh_dashboard(force=True)
        return {c.name: c.outcome() for c in self.cameras}

    def _show(self) -> None:
        if self.screen is None:
            return
        tiles = [self._tile(c) for c in self.cameras]
        if not any(t is not None for t in tiles):
            return
        image = tiles[0] if len(tiles) == 1 else grid(tiles, self.tile_size)
        if not self.screen.show(image):
            self._user_stop = True
            self.stop_event.set()

    def _tile(self, camera: CameraPipeline) -> np.ndarray | None:
        image = camera.latest_overlay
        if image is None or camera.source.state != "reconnecting":
            return image
        import cv2

        image = image.copy()
        cv2.putText(image, "RECONNECTING...", (20, image.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.5,
                    (0, 200, 255), 3, cv2.LINE_AA)
        return image

    def snapshots(self) -> list[StatsSnapshot]:
        return [c.snapshot() for c in self.cameras]

    def _refresh_dashboard(self, force: bool = False) -> None:
        if self.dashboard is None:
            return
        stats = self.engine.batch_stats() if self.engine is not None else None
        if len(self.cameras) == 1:
            self.dashboard.update(self.cameras[0].snapshot(), time.monotonic(), force=force)
        else:
            self.dashboard.update_many(self.snapshots(), stats, time.monotonic(), force=force)


def grid(tiles: list[np.ndarray | None], tile_size: tuple[int, int]) -> np.ndarray:
    """Every camera's overlay in one image, letterboxed into equal tiles (a camera with no frame yet is black)."""
    import cv2

    tw, th = tile_size
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    canvas = np.zeros((rows * th, cols * tw, 3), np.uint8)
    for i, tile in enumerate(tiles):
        if tile is None:
            continue
        h, w = tile.shape[:2]
        scale = min(tw / w, th / h)
        nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
        y0, x0 = (i // cols) * th + (th - nh) // 2, (i % cols) * tw + (tw - nw) // 2
        canvas[y0:y0 + nh, x0:x0 + nw] = cv2.resize(tile, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas


class Pipeline(CameraPipeline):
    """One camera with the window and dashboard on the calling thread (the single-source form of the analyzer)."""

    def __init__(self, source: FrameSource, analyzer: Analyzer, *, events=None, video=None, screen=None,
                 dashboard=None, max_frames: int | None = None, draw: bool = True,
                 stop_event: threading.Event | None = None, results_capacity: int = 4, name: str = "cam0",
                 listeners: tuple[FrameListener, ...] = ()) -> None:
        super().__init__(source, analyzer, name=name, events=events, video=video, listeners=listeners,
                         max_frames=max_frames, draw=draw or screen is not None, results_capacity=results_capacity)
        self._runner = MultiPipeline([self], screen=screen, dashboard=dashboard, stop_event=stop_event)

    def run(self) -> RunOutcome:
        return self._runner.run()[self.name]


def summary_record(outcome: RunOutcome, stats: RunStats, extra: dict[str, Any]) -> dict[str, Any]:
    """The final ``{"type": "summary"}`` figures of one camera (and the bench JSON's core)."""
    stages = {
        name: {"p50_ms": round(s.p50_ms, 3), "p95_ms": round(s.p95_ms, 3), "mean_ms": round(s.mean_ms, 3)}
        for name, s in stats.stages().items()
    }
    e2e = stats.end_to_end()
    return {
        "frames_read": outcome.frames_read,
        "frames_processed": outcome.frames_processed,
        "frames_dropped": outcome.frames_dropped,
        "frames_skipped": outcome.frames_skipped,
        "duration_s": round(outcome.duration_s, 3),
        "fps": round(outcome.frames_processed / outcome.duration_s, 2) if outcome.duration_s > 0 else 0.0,
        "stage_ms": stages,
        "end_to_end_ms": {"p50": round(e2e.p50_ms, 3), "p95": round(e2e.p95_ms, 3)} if e2e else None,
        "stopped_by": outcome.stopped_by,
        "error": outcome.error,
        **extra,
    }
