"""Wiring shared by the command line and the benchmark: build the analysis stages from the options, run the live
pipeline on one source and finalise every output."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from realtime.errors import EXIT_BAD_INPUT, EXIT_OK, RealtimeError

log = logging.getLogger("realtime")


def _install_stop_signals(stop: threading.Event) -> None:
    """SIGINT/SIGTERM request a clean stop; a second SIGINT aborts at once."""

    def handler(signum, _frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def build_components(args: argparse.Namespace, pose_model: str, backend: str, fps: float = 30.0):
    """The analysis stages the options ask for: (pose estimator, why it was chosen, classifier, reps, smoother)."""
    from realtime.classify.classifier import StreamingClassifier
    from realtime.pose import create_pose_estimator
    from realtime.pose.smoothing import KeypointSmoother
    from realtime.reps.counter import RepAnalyzer

    estimator, reason = create_pose_estimator(pose_model, backend, args.weights, args.precision, args.pick,
                                              args.rebuild)
    classifier = StreamingClassifier.load(args.classifier)
    reps = RepAnalyzer(strictness=args.strictness, config_path=args.form_config, exercise=args.exercise, fps=fps)
    smoother = None if args.no_smooth else KeypointSmoother()
    return estimator, reason, classifier, reps, smoother


def run_live(args: argparse.Namespace) -> int:
    """Open the source, build the models, run the pipeline, finalise every sink. Returns the exit code."""
    from realtime.outputs.sinks import EventLogSink, ScreenSink, VideoFileSink, display_available
    from realtime.pipeline import Analyzer, Pipeline, summary_record
    from realtime.sources.capture import Capture, redact

    stop = threading.Event()
    _install_stop_signals(stop)
    pipeline = None
    capture = Capture(args.source, realtime=args.realtime, rtsp_transport=args.rtsp_transport,
                      on_event=lambda e: pipeline.on_source_event(e) if pipeline else None)
    capture.open()
    sinks_to_close: list = []
    try:
        if args.weights == "random":
            raise RealtimeError("--weights random is for --bench speed runs only; pass real ViTPose weights")
        estimator, reason, classifier, reps, smoother = build_components(args, args.pose_model, args.backend,
                                                                         capture.fps)
        log.warning("pose: %s (%s)", estimator.name, reason)
        analyzer = Analyzer(estimator, classifier, reps, smoother)

        headless = args.headless
        if not headless and not display_available():
            log.warning("no display found: running headless (use --headless to silence this)")
            headless = True
        events = video = screen = dashboard = None
        if args.events:
            events = EventLogSink(args.events)
            sinks_to_close.append(events)
            events.write({"type": "start", "source": capture.source_id, "pose": estimator.name,
                          "pose_reason": reason, "classes": list(classifier.classes), "fps": capture.fps,
                          "size": list(capture.size)})
        if args.save:
            video = VideoFileSink(args.save, capture.fps, capture.size)
            sinks_to_close.append(video)
        if args.report:
            _prepare_report_dir(Path(args.report))
        if not headless:
            screen = ScreenSink()
            sinks_to_close.append(screen)
        use_dashboard = not args.no_dashboard and sys.stderr.isatty()
        if use_dashboard:
            from realtime.outputs.dashboard import Dashboard

            dashboard = Dashboard(f"{capture.source_id} | {estimator.name}")
        pipeline = Pipeline(capture, analyzer, events=events, video=video, screen=screen, dashboard=dashboard,
                            max_frames=args.max_frames, stop_event=stop)
        if dashboard is not None:
            with dashboard:
                outcome = pipeline.run()
        else:
            outcome = pipeline.run()

        if not capture.is_live:  # end of a file: a rep past its turn and well on its way back counts
            for rep in reps.finish():
                if events is not None:
                    events.write(rep.to_json())
        extra = {
            "source": redact(args.source),
            "pose": estimator.name,
            "reps": reps.summary(),
        }
        summary = summary_record(outcome, analyzer.stats, extra)
        if video is not None:
            video.close()
            if video.error:
                outcome.error = outcome.error or video.error
        if events is not None:
            events.close(summary)
        if args.report:
            try:
                _write_report(Path(args.report), reps)
            except OSError as exc:  # the events and the video are already closed and kept
                outcome.error = outcome.error or f"cannot write the report into {args.report}: {exc.strerror or exc}"
        _print_summary(summary, outcome)
        estimator.close()
        if outcome.error:
            print(f"error: {outcome.error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        return EXIT_OK
    finally:
        capture.stop()
        for sink in sinks_to_close:  # idempotent: finalise whatever was opened, whatever happened
            try:
                sink.close()
            except Exception:  # noqa: BLE001 - closing must not mask the real error
                log.exception("closing %s failed", type(sink).__name__)


def _prepare_report_dir(directory: Path) -> None:
    """Create the --report folder before the run, so a bad path is refused at once and not after the work."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RealtimeError(f"cannot create report folder {directory}: "
                            f"{'a file of that name exists' if directory.exists() else exc.strerror}") from None


def _write_report(directory: Path, reps) -> None:
    from realtime.outputs.exports import write_reps_csv, write_summary_json, write_timeline_png

    directory.mkdir(parents=True, exist_ok=True)
    write_reps_csv(list(reps.reps), directory / "reps.csv")
    write_summary_json(reps.summary(), directory / "summary.json")
    write_timeline_png(reps.timeline(), list(reps.reps), directory / "timeline.png")


def _print_summary(summary: dict, outcome) -> None:
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # one line per fact, however narrow the terminal
    console.print(
        f"[bold]done[/] ({outcome.stopped_by}): read {summary['frames_read']}, processed "
        f"{summary['frames_processed']}, dropped {summary['frames_dropped']}, {summary['fps']} fps"
    )
    reps = summary.get("reps") or {}
    labels = reps.get("labels") or {}
    if labels:
        named = ", ".join(f"{label} {share:.0%}" for label, share in list(labels.items())[:3])
        console.print(f"  classifier: {named} of the frames with a person")
    for name, info in reps.get("exercises", {}).items():
        n = info.get("reps", 0)
        console.print(f"  {name}: {n} rep{'' if n == 1 else 's'}")
    if reps.get("exercise_mode") == "auto" and not reps.get("total_reps") and labels:
        console.print("  no reps counted: if the exercise was not recognised, --exercise NAME counts it")


