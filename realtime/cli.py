"""Command line: ``python run_live.py [options]`` runs the live analyzer; sub-commands train, evaluate,
extract, build-engine and calibrate. Bad input is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from realtime.errors import RealtimeError
from realtime.pose import POSE_MODELS
from realtime.types import EXERCISES

log = logging.getLogger("realtime")

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
SUBCOMMANDS = ("train", "evaluate", "extract", "ensemble", "build-engine", "calibrate")
BACKENDS = ("auto", "tensorrt", "torch2trt", "torch", "onnxruntime")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit code 2 (its default code, our format)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("source")
    src.add_argument("--source", default=None,
                     help="webcam index (0), rtsp://, http(s):// stream, or a video file (default: webcam 0)")
    src.add_argument("--realtime", action="store_true",
                     help="pace a video file like a camera (frames are dropped when processing is slower)")
    src.add_argument("--rtsp-transport", choices=("tcp", "udp"), default="tcp")
    src.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N processed frames")
    pose = p.add_argument_group("pose")
    pose.add_argument("--pose-model", default="auto", metavar="MODEL",
                      help=f"{'|'.join(POSE_MODELS)}; auto: ViTPose when its weights are present, else the "
                      "bundled BlazePose (comma list with --bench to compare)")
    pose.add_argument("--backend", default="auto",
                      help=f"ViTPose backend: {'|'.join(BACKENDS)} (comma list with --bench to compare)")
    pose.add_argument("--weights", default=None,
                      help="ViTPose weights: HF directory or id, mmpose .pth, or exported .onnx "
                      "('random' = random weights, for --bench speed runs only)")
    pose.add_argument("--precision", choices=("auto", "fp32", "fp16", "int8"), default="auto",
                      help="ViTPose precision; auto: fp16 on a CUDA GPU, fp32 on the CPU")
    pose.add_argument("--rebuild", action="store_true", help="rebuild cached ONNX exports / TensorRT engines")
    pose.add_argument("--pick", default="largest",
                      help="which person to follow when several are in view: largest|center|left|right, or an index "
                      "counted from the left (0, 1, ...)")
    pose.add_argument("--no-smooth", action="store_true", help="analyse raw keypoints (no One Euro smoothing)")
    ana = p.add_argument_group("analysis")
    ana.add_argument("--classifier", default=None, help="TCN checkpoint (.safetensors); default: the shipped one")
    ana.add_argument("--exercise", choices=EXERCISES, default=None,
                     help="fix the exercise for rep counting instead of following the classifier")
    ana.add_argument("--strictness", choices=("relaxed", "normal", "strict"), default="normal")
    ana.add_argument("--form-config", default=None, help="TOML with form thresholds (default: the shipped one)")
    out = p.add_argument_group("output")
    out.add_argument("--headless", action="store_true", help="no window")
    out.add_argument("--save", default=None, metavar="OUT.mp4", help="write the overlay video (H.264)")
    out.add_argument("--events", default=None, metavar="OUT.jsonl", help="write per-frame/rep/source events")
    out.add_argument("--report", default=None, metavar="DIR",
                     help="write reps.csv, summary.json and timeline.png at the end of the run")
    out.add_argument("--no-dashboard", action="store_true", help="no terminal dashboard")
    out.add_argument("-v", "--verbose", action="count", default=0)
    bench = p.add_argument_group("benchmark")
    bench.add_argument("--bench", action="store_true", help="measure per-stage and end-to-end speed, then exit")
    bench.add_argument("--bench-frames", type=int, default=200, metavar="N")
    bench.add_argument("--bench-json", default=None, metavar="FILE")
    bench.add_argument("--bench-repeats", type=int, default=3, metavar="N",
                       help="alternate engine-alone and pipeline runs N times; the overhead is the median ratio")
    bench.add_argument("--soak", type=float, default=None, metavar="SECONDS",
                       help="with --bench: run a 30-fps live source this long, sampling memory and latency")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="run_live.py",
        description="Live gym-exercise analyzer: pose -> exercise label -> reps and form cues.",
        epilog=f"sub-commands: {', '.join(SUBCOMMANDS)} (run_live.py SUB --help)",
    )
    add_run_arguments(p)
    return p


def build_subcommand_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="run_live.py", description="Training, evaluation and engine tools.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    from realtime import build_engine, train

    train.add_parsers(sub)
    build_engine.add_parser(sub)
    build_engine.add_calib_parser(sub)
    return p


def setup_logging(verbose: int) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(show_path=verbose > 1, rich_tracebacks=verbose > 1, markup=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)


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
    from realtime.classifier import StreamingClassifier
    from realtime.pose import create_pose_estimator
    from realtime.reps import RepAnalyzer
    from realtime.smoothing import KeypointSmoother

    estimator, reason = create_pose_estimator(pose_model, backend, args.weights, args.precision, args.pick,
                                              args.rebuild)
    classifier = StreamingClassifier.load(args.classifier)
    reps = RepAnalyzer(strictness=args.strictness, config_path=args.form_config, exercise=args.exercise, fps=fps)
    smoother = None if args.no_smooth else KeypointSmoother()
    return estimator, reason, classifier, reps, smoother


def run_live(args: argparse.Namespace) -> int:
    """Open the source, build the models, run the pipeline, finalise every sink. Returns the exit code."""
    from realtime.capture import Capture, redact
    from realtime.pipeline import Analyzer, Pipeline, summary_record
    from realtime.sinks import EventLogSink, ScreenSink, VideoFileSink, display_available

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
            from realtime.dashboard import Dashboard

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
    from realtime.exports import write_reps_csv, write_summary_json, write_timeline_png

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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = sum(a.count("v") for a in argv if a.startswith("-v") and set(a[1:]) == {"v"}) + argv.count("--verbose")
    setup_logging(verbose)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            args = build_subcommand_parser().parse_args(argv)
            return int(args.func(args) or 0)
        args = build_parser().parse_args(argv)
        if args.max_frames is not None and args.max_frames <= 0:
            raise RealtimeError("--max-frames must be a positive number")
        if args.bench:
            from realtime.bench import run_bench

            return run_bench(args)
        if "," in args.pose_model or "," in args.backend:
            raise RealtimeError("comma lists of --pose-model/--backend are for --bench only")
        if args.source is None:
            args.source = "0"
        return run_live(args)
    except RealtimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: one line, the traceback only with -vv
        if verbose > 1:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (run with -vv for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
