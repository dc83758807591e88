"""Wiring shared by the command line, the web service and the benchmark: build one shared pose engine and, per
camera, a source, the analysis stages and the outputs; run them; finalise every output.

Order of work: options are validated first (nothing opened), then the engine is built (exports, engines), then the
sources are opened, so that a bad option never leaves an RTSP session idling and a slow build never times one out.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from realtime.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, RealtimeError, SourceError
from realtime.settings import CameraSettings, RunSettings

log = logging.getLogger("realtime")


def install_stop_signals(stop: threading.Event) -> None:
    """SIGINT/SIGTERM request a clean stop; a second SIGINT aborts at once."""

    def handler(signum, _frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def validate(settings: RunSettings) -> None:
    """Everything that can be checked without opening a source or loading a model."""
    from realtime.pose import validate_pose_options

    validate_pose_options(settings.pose_model, settings.backend, settings.precision, settings.weights)
    if settings.weights == "random":
        raise RealtimeError("--weights random is for --bench speed runs only; pass real ViTPose weights")
    if settings.max_frames is not None and settings.max_frames <= 0:
        raise RealtimeError("--max-frames must be a positive number")
    if settings.max_batch < 1:
        raise RealtimeError("--max-batch must be at least 1")
    if settings.max_wait_ms < 0:
        raise RealtimeError("--max-wait-ms must be 0 or more")
    if settings.multi and settings.save and Path(settings.save).suffix:
        raise RealtimeError(f"--save {settings.save}: with several cameras --save takes a folder "
                            "(one NAME.mp4 per camera)")
    if settings.multi and settings.report and Path(settings.report).is_file():
        raise RealtimeError(f"--report {settings.report} is a file: it takes a folder")
    if settings.workers < 1:
        raise RealtimeError(f"--workers {settings.workers}: give 1 or more processes")
    if settings.workers > 1 and settings.multi and settings.events and not _is_dir_target(settings.events):
        raise RealtimeError(f"--events {settings.events} with --workers: give a folder (--events DIR/), one "
                            "NAME.jsonl per camera, since each worker process writes its own cameras' logs")


def create_engine(settings: RunSettings, cameras: int = 1):
    """The analyzer's pose engine, shared by every camera (batching only pays with several cameras)."""
    from realtime.pose import create_pose_engine

    options: dict[str, Any] = {}
    if settings.triton_url:
        options["triton_url"] = settings.triton_url
    if settings.triton_model:
        options["triton_model"] = settings.triton_model
    return create_pose_engine(settings.pose_model, settings.backend, settings.weights, settings.precision,
                              settings.rebuild, max_batch=settings.max_batch if cameras > 1 else 1,
                              max_wait_ms=settings.max_wait_ms, cameras=cameras, **options)


def build_stages(settings: RunSettings, camera: CameraSettings, fps: float = 30.0):
    """One camera's stages after the pose: (classifier, rep counter, keypoint smoother or None)."""
    from realtime.classify.classifier import StreamingClassifier
    from realtime.pose.smoothing import KeypointSmoother
    from realtime.reps.counter import RepAnalyzer

    classifier = StreamingClassifier.load(settings.classifier)
    reps = RepAnalyzer(strictness=camera.strictness, config_path=settings.form_config, exercise=camera.exercise,
                       fps=fps)
    smoother = KeypointSmoother() if settings.smooth else None
    return classifier, reps, smoother


def build_components(settings: RunSettings, pose_model: str, backend: str, fps: float = 30.0):
    """One camera with an engine of its own (the benchmark): (estimator, reason, classifier, reps, smoother)."""
    from realtime.pose import create_pose_estimator

    camera = settings.cameras[0] if settings.cameras else CameraSettings("cam0", "0")
    estimator, reason = create_pose_estimator(pose_model, backend, settings.weights, settings.precision, camera.pick,
                                              settings.rebuild)
    return (estimator, reason, *build_stages(settings, camera, fps))


# ------------------------------------------------------------------------------------------------ outputs


class CameraEvents:
    """One camera's view of an events log: every record carries ``"camera"``; several cameras may share a file."""

    def __init__(self, sink, camera: str, owns: bool) -> None:
        self.sink = sink
        self.camera = camera
        self.owns = owns

    def write(self, record: dict) -> None:
        self.sink.write({**record, "camera": self.camera})

    def frame(self, result) -> None:
        from realtime.outputs.sinks import frame_records

        for record in frame_records(result):
            self.write(record)

    def close(self, summary: dict | None = None) -> None:
        if summary is not None:
            self.write({"type": "summary", **summary})
        if self.owns:
            self.sink.close()

    @property
    def error(self) -> str | None:
        return getattr(self.sink, "error", None)


@dataclass
class Camera:
    """A camera being run: its settings, source, stages and outputs."""

    settings: CameraSettings
    source: Any = None
    stages: tuple = ()
    events: CameraEvents | None = None
    video: Any = None
    report: Path | None = None
    error: str | None = None  # could not be opened (file): skipped
    pipeline: Any = None
    video_factory: Callable[[float, tuple[int, int]], Any] | None = None  # --save for a camera not up yet
    early_events: list[dict] = field(default_factory=list)  # source events from before its pipeline existed


def _is_dir_target(path: str) -> bool:
    return path.endswith(("/", "\\")) or Path(path).is_dir()


def _prepare_dir(directory: Path, what: str) -> None:
    """Create an output folder before the run, so a bad path is refused at once and not after the work."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RealtimeError(f"cannot create {what} folder {directory}: "
                            f"{'a file of that name exists' if directory.exists() else exc.strerror}") from None


def _open_outputs(settings: RunSettings, cameras: list[Camera], engine_name: str, reason: str) -> list:
    """Events, video and report targets per camera; returns what must be closed whatever happens."""
    from realtime.outputs.sinks import EventLogSink, VideoFileSink

    to_close: list = []
    if settings.events:
        if _is_dir_target(settings.events):  # a folder (DIR/ or an existing one): one NAME.jsonl per camera
            _prepare_dir(Path(settings.events), "events")
            for cam in cameras:
                sink = EventLogSink(Path(settings.events) / f"{cam.settings.name}.jsonl")
                to_close.append(sink)
                cam.events = CameraEvents(sink, cam.settings.name, owns=True)
        else:
            sink = EventLogSink(settings.events)
            to_close.append(sink)
            for cam in cameras:
                cam.events = CameraEvents(sink, cam.settings.name, owns=False)
        for cam in cameras:
            src = cam.source
            classes = list(cam.stages[1].classes) if cam.stages else None
            cam.events.write({"type": "start", "source": cam.settings.name if src is None else src.source_id,
                              "pose": engine_name, "pose_reason": reason, "classes": classes,
                              "fps": getattr(src, "fps", None), "analysis_fps": cam.settings.analysis_fps,
                              "size": list(getattr(src, "size", (0, 0))),
                              "error": cam.error})
    if settings.save:
        if settings.multi:
            _prepare_dir(Path(settings.save), "video")
        for cam in cameras:
            if cam.source is None:
                continue
            path = Path(settings.save) / f"{cam.settings.name}.mp4" if settings.multi else Path(settings.save)
            if cam.source.size[0] > 0:
                cam.video = VideoFileSink(path, cam.source.delivered_fps, cam.source.size)
                to_close.append(cam.video)
            else:  # a live camera that is not up yet: the writer is made at its first frame
                cam.video_factory = lambda fps, size, path=path: _late_video(path, fps, size, to_close)
    if settings.report:
        _prepare_dir(Path(settings.report), "report")
        for cam in cameras:
            cam.report = Path(settings.report) / cam.settings.name if settings.multi else Path(settings.report)
    return to_close


def _late_video(path: Path, fps: float, size: tuple[int, int], to_close: list):
    from realtime.outputs.sinks import VideoFileSink

    sink = VideoFileSink(path, fps, size)
    to_close.append(sink)
    return sink


def _write_report(directory: Path, reps) -> None:
    from realtime.outputs.exports import write_reps_csv, write_summary_json, write_timeline_png

    directory.mkdir(parents=True, exist_ok=True)
    write_reps_csv(list(reps.reps), directory / "reps.csv")
    write_summary_json(reps.summary(), directory / "summary.json")
    write_timeline_png(reps.timeline(), list(reps.reps), directory / "timeline.png")


# ------------------------------------------------------------------------------------------------ the run


_EARLY_EVENTS_LOCK = threading.Lock()


def _route_source_event(cam: Camera, event: dict) -> None:
    """A source event to its camera's pipeline; one that comes before the pipeline exists (a live camera down at
    start reports "lost" from its capture thread at once) is kept for it, not dropped."""
    with _EARLY_EVENTS_LOCK:
        if cam.pipeline is None:
            cam.early_events.append(event)
            return
    cam.pipeline.on_source_event(event)


def open_sources(settings: RunSettings, stop: threading.Event, on_event: Callable[[Camera, dict], None]
                 ) -> list[Camera]:
    """Open every camera. One camera: a source that cannot be opened is bad input (exit 2). Several: a live camera
    that is down keeps being retried; a file that cannot be opened is skipped, its error in the summary."""
    from realtime.sources.capture import Capture

    cameras = []
    for cam_settings in settings.cameras:
        cam = Camera(cam_settings)
        capture = Capture(cam_settings.source, realtime=cam_settings.realtime,
                          rtsp_transport=cam_settings.rtsp_transport, analysis_fps=cam_settings.analysis_fps,
                          on_event=lambda e, cam=cam: on_event(cam, e))
        try:
            capture.open()
        except SourceError as exc:
            if not settings.multi:
                raise
            try:
                capture.start_reconnecting(str(exc))
                log.warning("camera %s: %s; retrying in the background", cam_settings.name, exc)
            except SourceError:
                log.info("camera %s skipped: %s", cam_settings.name, exc)  # reported once at the end
                cam.error = str(exc)
                cameras.append(cam)
                continue
        cam.source = capture
        cameras.append(cam)
        if stop.is_set():
            break
    return cameras


def run(settings: RunSettings, *, stop: threading.Event | None = None,
        listeners_for: Callable[[str], tuple] | None = None, on_engine: Callable[[Any], None] | None = None,
        install_signals: bool = True) -> int:
    """Run the analyzer on every camera of ``settings`` until the files end or a stop is asked; returns the exit
    code. ``listeners_for(camera)`` adds outputs per camera (web view, database); with ``--workers`` it is handed
    to each worker process, so it must pickle (``realtime.serve.ServeListeners`` does)."""
    validate(settings)
    stop = stop or threading.Event()
    if install_signals:
        install_stop_signals(stop)
    if settings.workers > 1 and settings.multi and not settings.in_worker:
        from realtime.workers import run_in_workers

        build_stages(settings, settings.cameras[0])  # a bad --classifier or --form-config: one line, not one a worker
        summaries, bad_input, failure = run_in_workers(settings, stop, listeners_for, on_engine,
                                                       create_engine=create_engine, run_cameras=run_cameras)
    else:
        engine = create_engine(settings, len(settings.cameras))
        log.info("pose: %s (%s)", engine.name, engine.reason)
        if on_engine is not None:
            on_engine(engine)
        try:
            summaries, bad_input, failure = run_cameras(settings, engine, stop, listeners_for)
        finally:
            engine.close()
    return report_run(summaries, settings.multi, bad_input, failure)


def run_cameras(settings: RunSettings, engine, stop: threading.Event,
                listeners_for: Callable[[str], tuple] | None = None,
                on_runner: Callable[[Any], None] | None = None) -> tuple[dict[str, dict], bool, bool]:
    """Open, run and finalise every camera of ``settings`` on ``engine`` (this process's cameras); returns the
    per-camera summaries and whether any camera had bad input / a run-time failure. ``on_runner`` gets the
    ``MultiPipeline`` before it starts (a camera worker reports its cameras' snapshots from it)."""
    from realtime.outputs.sinks import ScreenSink, display_available
    from realtime.pipeline import Analyzer, CameraPipeline, MultiPipeline, summary_record

    to_close: list = []
    cameras: list[Camera] = []
    try:
        cameras = open_sources(settings, stop, _route_source_event)
        for cam in cameras:  # a bad --classifier or --form-config fails here, before any output file is made
            if cam.source is not None:
                cam.stages = (engine.estimator(cam.settings.pick),
                              *build_stages(settings, cam.settings, cam.source.fps if cam.source.size[0] else 30.0))
        to_close += _open_outputs(settings, cameras, engine.name, engine.reason)
        headless = settings.headless
        if not headless and not display_available():
            log.warning("no display found: running headless (use --headless to silence this)")
            headless = True
        screen = dashboard = None
        if not headless:
            screen = ScreenSink()
            to_close.append(screen)
        if settings.dashboard and sys.stderr.isatty():
            from realtime.outputs.dashboard import Dashboard

            title = cameras[0].source.source_id if len(cameras) == 1 and cameras[0].source else \
                f"{len(cameras)} cameras"
            dashboard = Dashboard(f"{title} | {engine.name}")
        pipelines = []
        for cam in cameras:
            if cam.source is None:
                continue
            estimator, classifier, reps, smoother = cam.stages
            listeners = listeners_for(cam.settings.name) if listeners_for else ()
            pipeline = CameraPipeline(
                cam.source, Analyzer(estimator, classifier, reps, smoother), name=cam.settings.name,
                events=cam.events, video=cam.video, video_factory=cam.video_factory,
                listeners=listeners, max_frames=settings.max_frames, on_start=engine.attach, on_stop=engine.detach,
                draw=screen is not None,  # else only for a video (--save) or a web viewer: never for nobody
            )
            with _EARLY_EVENTS_LOCK:  # events from before the pipeline existed go first, in order
                for event in cam.early_events:
                    pipeline.on_source_event(event)
                cam.early_events.clear()
                cam.pipeline = pipeline
            pipelines.append(cam.pipeline)
        runner = MultiPipeline(pipelines, screen=screen, dashboard=dashboard, engine=engine, stop_event=stop)
        if on_runner is not None:
            on_runner(runner)
        if dashboard is not None:
            with dashboard:
                outcomes = runner.run()
        else:
            outcomes = runner.run()
        return _finish(settings, cameras, outcomes, engine, summary_record)
    finally:
        for cam in cameras:
            if cam.source is not None:
                cam.source.stop()
        for sink in to_close:  # idempotent: finalise whatever was opened, whatever happened
            try:
                sink.close()
            except Exception:  # noqa: BLE001 - closing must not mask the real error
                log.exception("closing %s failed", type(sink).__name__)


def _finish(settings: RunSettings, cameras: list[Camera], outcomes: dict, engine, summary_record
            ) -> tuple[dict[str, dict], bool, bool]:
    """Per camera: end-of-file rep credit, summary line, video and report; returns (summaries, bad input,
    failure)."""
    from realtime.sources.urls import redact

    bad_input = failure = False
    summaries: dict[str, dict] = {}
    stats = engine.batch_stats()
    for cam in cameras:
        name = cam.settings.name
        if cam.source is None:
            summaries[name] = {"camera": name, "error": cam.error, "frames_processed": 0, "stopped_by": "error"}
            if cam.events is not None:
                cam.events.close({"error": cam.error, "frames_processed": 0, "stopped_by": "error"})
            bad_input = True
            continue
        outcome = outcomes[name]
        estimator, _, reps, _ = cam.stages
        if cam.source.is_live and outcome.frames_read == 0 and outcome.error is None:
            outcome.error = f"no frame was received from {cam.source.source_id} (it never connected)"
        if not cam.source.is_live:  # end of a file: a rep past its turn and well on its way back counts
            for rep in reps.finish():
                if cam.events is not None:
                    cam.events.write(rep.to_json())
                for listener in cam.pipeline.listeners:
                    listener.event(rep.to_json())
        extra: dict[str, Any] = {"source": redact(cam.settings.source), "pose": engine.name, "reps": reps.summary()}
        if stats is not None:
            extra["engine"] = {"batches": stats.batches, "mean_batch": round(stats.mean_batch, 2),
                               "max_batch": stats.max_batch, "network_p50_ms": round(stats.network_p50_ms, 2)}
        written: dict[str, str] = {}
        video = cam.video if cam.video is not None else cam.pipeline.video
        if video is not None:
            video.close()
            if getattr(video, "error", None):
                extra["video_error"] = video.error
                outcome.error = outcome.error or video.error
            else:
                written["video"] = str(video.path)
        if cam.report is not None:
            try:
                _write_report(cam.report, reps)
                written["report"] = str(cam.report)
            except OSError as exc:  # the events and the video are already closed and kept
                extra["report_error"] = f"cannot write the report into {cam.report}: {exc.strerror or exc}"
                outcome.error = outcome.error or extra["report_error"]
        if cam.events is not None:
            if cam.events.error:
                extra["events_error"] = cam.events.error
                outcome.error = outcome.error or cam.events.error
            else:
                written["events"] = str(cam.events.sink.path)
        summary = summary_record(outcome, cam.pipeline.stats, extra)
        if cam.events is not None:
            cam.events.close(summary)
        summaries[name] = {"camera": name, **summary, "written": written}
        if outcome.error:
            # A source that cannot be read (a damaged file) is bad input; a lost stream, a failing writer or a bug
            # in the analysis is a run-time failure.
            if cam.source.is_live or outcome.error.startswith("analysis failed") or cam.source.state == "failed" \
                    or any(k in extra for k in ("video_error", "report_error", "events_error")):
                failure = True
            else:
                bad_input = True
        estimator.close()
    return summaries, bad_input, failure


def report_run(summaries: dict[str, dict], multi: bool, bad_input: bool, failure: bool) -> int:
    """The printed summary (results on stdout, errors one line each on stderr) and the exit code."""
    _print_summary(summaries, multi)
    for name, summary in summaries.items():
        if summary.get("error"):
            prefix = f"{name}: " if multi else ""
            print(f"error: {prefix}{summary['error']}", file=sys.stderr)
    if bad_input:
        return EXIT_BAD_INPUT
    return EXIT_FAILURE if failure else EXIT_OK


def _print_summary(summaries: dict[str, dict], multi: bool) -> None:
    from rich.console import Console

    err = Console(stderr=True, soft_wrap=True)  # one line per fact, however narrow the terminal
    out = Console(soft_wrap=True)  # results on stdout
    for name, summary in summaries.items():
        head = f"[bold]{name}[/] " if multi else ""
        if summary.get("error") and not summary.get("frames_processed"):
            err.print(f"{head}[bold]skipped[/]: {summary['error']}")
            continue
        out.print(
            f"{head}[bold]done[/] ({summary['stopped_by']}): read {summary['frames_read']}, processed "
            f"{summary['frames_processed']}, dropped {summary['frames_dropped']}, "
            + (f"skipped {summary['frames_skipped']} (analysis rate), " if summary.get("frames_skipped") else "")
            + f"{summary['fps']} fps"
        )
        reps = summary.get("reps") or {}
        labels = reps.get("labels") or {}
        if labels:
            named = ", ".join(f"{label} {share:.0%}" for label, share in list(labels.items())[:3])
            out.print(f"  classifier: {named} of the frames with a person")
        for exercise, info in reps.get("exercises", {}).items():
            n = info.get("reps", 0)
            out.print(f"  {exercise}: {n} rep{'' if n == 1 else 's'}")
        if reps.get("exercise_mode") == "auto" and not reps.get("total_reps") and labels:
            out.print("  no reps counted: if the exercise was not recognised, --exercise NAME counts it")
        for what, path in (summary.get("written") or {}).items():
            out.print(f"  {what}: {path}")
