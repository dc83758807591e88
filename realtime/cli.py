"""Command line: ``python run_live.py [options]`` runs the live analyzer; sub-commands train, evaluate,
extract, build-engine and calibrate. Bad input is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from realtime.errors import EXIT_BAD_INPUT, EXIT_FAILURE, RealtimeError
from realtime.pose import POSE_MODELS
from realtime.settings import settings_from_args
from realtime.types import EXERCISES

log = logging.getLogger("realtime")

SUBCOMMANDS = ("train", "evaluate", "extract", "ensemble", "build-engine", "calibrate", "export-triton")
BACKENDS = ("auto", "tensorrt", "torch2trt", "torch", "onnxruntime", "triton")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit code 2 (its default code, our format)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("source")
    src.add_argument("--source", action="append", default=None, metavar="[NAME=]SOURCE",
                     help="webcam index (0), rtsp://, http(s):// stream, or a video file (default: webcam 0); give it "
                     "several times for several cameras (named cam0, cam1, ... or NAME=SOURCE)")
    src.add_argument("--cameras", default=None, metavar="FILE.toml",
                     help="camera list: [[camera]] tables with name, source and optional exercise, pick, "
                     "strictness, rtsp_transport, realtime, analysis_fps")
    src.add_argument("--realtime", action="store_true",
                     help="pace a video file like a camera (frames are dropped when processing is slower)")
    src.add_argument("--rtsp-transport", choices=("tcp", "udp"), default="tcp")
    src.add_argument("--analysis-fps", type=float, default=None, metavar="FPS",
                     help="analyse at most FPS frames a second of each camera, evenly spaced; the others are skipped "
                     "before they are converted (default: every frame). Leaves CPU for more cameras and the web view; "
                     "the classifier keeps its accuracy down to 5 fps (docs/benchmarks.md)")
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
    pose.add_argument("--max-batch", type=int, default=16, metavar="N",
                      help="several cameras: most person crops the shared ViTPose engine runs in one batch")
    pose.add_argument("--max-wait-ms", type=float, default=4.0, metavar="MS",
                      help="several cameras: how long the first crop may wait for other cameras' crops")
    pose.add_argument("--workers", type=int, default=1, metavar="W",
                      help="several cameras: run them in W worker processes around the one pose engine (ViTPose "
                      "stays in this process, batched for all; BlazePose and Triton clients run in each worker). "
                      "Per-camera work beyond ~8 cameras exceeds one Python process; default 1")
    pose.add_argument("--triton-url", default=None, metavar="grpc://HOST:8001",
                      help="with --backend triton: the Triton Inference Server serving ViTPose")
    pose.add_argument("--triton-model", default=None, metavar="NAME",
                      help="with --backend triton: the model's name on the server (default vitpose_<size>)")
    ana = p.add_argument_group("analysis")
    ana.add_argument("--classifier", default=None, help="TCN checkpoint (.safetensors); default: the shipped one")
    ana.add_argument("--exercise", choices=EXERCISES, default=None,
                     help="fix the exercise for rep counting instead of following the classifier")
    ana.add_argument("--strictness", choices=("relaxed", "normal", "strict"), default="normal")
    ana.add_argument("--form-config", default=None, help="TOML with form thresholds (default: the shipped one)")
    out = p.add_argument_group("output")
    out.add_argument("--headless", action="store_true", help="no window")
    out.add_argument("--save", default=None, metavar="OUT.mp4|DIR",
                     help="write the overlay video (H.264); several cameras: a folder, one NAME.mp4 each")
    out.add_argument("--events", default=None, metavar="OUT.jsonl|DIR/",
                     help="write per-frame/rep/source events, every line with its camera; a folder (DIR/): one "
                     "NAME.jsonl per camera")
    out.add_argument("--report", default=None, metavar="DIR",
                     help="write reps.csv, summary.json and timeline.png at the end of the run (several cameras: "
                     "one sub-folder each)")
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
    bench.add_argument("--streams", default=None, metavar="N[,N...]",
                       help="with --bench: replay the clip(s) as N live 30-fps cameras through the multi-camera "
                       "pipeline, for each N given; reports the most cameras that hold 30 fps")
    bench.add_argument("--stream-seconds", type=float, default=20.0, metavar="S",
                       help="with --streams: how long each N runs")
    bench.add_argument("--bench-no-overlay", action="store_true",
                       help="with --streams: draw no overlay (as a camera nobody watches in `serve`, or a run without "
                       "window or --save); by default every frame is drawn, as for a window or --save")


def build_parser(prog: str = "run_live.py") -> argparse.ArgumentParser:
    p = _Parser(
        prog=prog,
        description="Live gym-exercise analyzer: pose -> exercise label -> reps and form cues.",
        epilog=f"sub-commands: {', '.join(SUBCOMMANDS)} (run_live.py SUB --help)",
    )
    add_run_arguments(p)
    return p


def build_subcommand_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="run_live.py", description="Training, evaluation and engine tools.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    from realtime.backends import build_engine
    from realtime.training import train

    train.add_parsers(sub)
    build_engine.add_parser(sub)
    build_engine.add_calib_parser(sub)
    from realtime.backends import triton_repo

    triton_repo.add_parser(sub)
    from realtime.logs import add_verbose_argument

    for parser in sub.choices.values():  # -v works after every sub-command (main() reads it before parsing)
        add_verbose_argument(parser)
    return p


def setup_logging(verbose: int) -> None:
    """Logs and errors to stderr (results stay on stdout); -v info, -vv debug. See realtime.logs."""
    from realtime.logs import setup_logging as setup

    setup(verbose)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = sum(a.count("v") for a in argv if a.startswith("-v") and set(a[1:]) == {"v"}) + argv.count("--verbose")
    setup_logging(verbose)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            args = build_subcommand_parser().parse_args(argv)
            return int(args.func(args) or 0)
        if argv and argv[0] == "serve":
            from realtime.serve import add_serve_arguments, run_serve

            parser = build_parser(prog="run_live.py serve")
            add_serve_arguments(parser)
            args = parser.parse_args(argv[1:])
            return run_serve(settings_from_args(args), args)
        args = build_parser().parse_args(argv)
        if args.bench:
            from realtime.benchmark.cli_bench import run_bench

            return run_bench(args)
        if "," in args.pose_model or "," in args.backend:
            raise RealtimeError("comma lists of --pose-model/--backend are for --bench only")
        from realtime.app import run

        return run(settings_from_args(args))
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
