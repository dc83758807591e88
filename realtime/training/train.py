"""``train`` / ``evaluate`` / ``extract``: build, measure and feed the exercise classifier.

    python -m realtime.training.train extract VIDEOS/ clips_npz/          # VIDEOS/<class>/*.mp4 -> clips_npz/<class>/*.npz
    python -m realtime.training.train train --data npz=clips_npz --out my.safetensors
    python -m realtime.training.train evaluate --model my.safetensors --data npz=clips_npz --out report/

(``python run_live.py train|evaluate|extract ...`` is the same, via ``add_parsers``.)

Training draws random windows from group-wise splits (never splitting a person/source), augments them like a
live pose engine would distort them (``realtime.training.augment``), optionally glues "other" stretches before/after an
exercise (walking in, standing, nobody in view) and trains the causal TCN with a per-frame loss, so the model
names the exercise early in a stream. Batches are padded on the right and the padding is masked: the model is
causal, so right padding cannot change the outputs of the real frames.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

from realtime.classify.classifier import (
    FACE_JOINTS,
    default_normalisation,
    load_model,
    metadata_path,
    save_checkpoint,
)
from realtime.classify.tcn import TCNEnsemble
from realtime.errors import DataError, RealtimeError
from realtime.training.datasets import DATASETS, Sample, load_data, parse_spec, split_samples, subset
from realtime.training.evaluation import ClipResult, brief, run_eval, summarise, write_report
from realtime.training.extract import VIDEO_EXTS, extract_folder, iter_video
from realtime.training.loop import SequenceSampler, TrainConfig, train_model
from realtime.types import EXERCISES, OTHER_LABEL

log = logging.getLogger(__name__)

__all__ = ["SequenceSampler", "TrainConfig", "add_parsers", "class_order", "iter_video", "main", "run_eval",
           "split_warning", "summarise", "train_model"]


def class_order(labels: set[str] | list[str]) -> tuple[str, ...]:
    """Known exercises in ``EXERCISES`` order, then any new class alphabetically, ``other`` last."""
    labels = set(labels)
    known = [c for c in EXERCISES if c in labels]
    extra = sorted(labels - set(EXERCISES) - {OTHER_LABEL})
    return tuple(known + extra + ([OTHER_LABEL] if OTHER_LABEL in labels else []))


def split_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".split.json")



def _progress():
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=False,
                    console=Console(stderr=True))  # progress is not a result: stderr


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, unless it has none (None, a flag) or its help names it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text or action.nargs == 0:
            return text
        return super()._get_help_string(action)


def add_parsers(subparsers) -> None:
    """Add ``train``, ``evaluate``, ``extract`` and ``ensemble`` sub-commands (each sets ``func``)."""
    from realtime.logs import add_verbose_argument
    from realtime.pose.options import BACKENDS, POSE_MODELS

    kinds = ", ".join(DATASETS)
    fmt = DefaultsHelpFormatter
    cfg = TrainConfig()
    p = subparsers.add_parser("train", help="train the exercise classifier on keypoint data", formatter_class=fmt,
                              description="Train the causal TCN exercise classifier. Data: --data KIND=PATH, "
                                          f"KIND one of {kinds}.")
    p.add_argument("--data", action="append", required=True, metavar="KIND=PATH",
                   help="training data (repeatable), e.g. penn=../shared/data/penn_action or npz=my_clips")
    p.add_argument("--out", default="classifier.safetensors", help="output .safetensors (+ .json, .split.json)")
    p.add_argument("--classes", nargs="+", help="train only these classes (default: every label found)")
    p.add_argument("--init", help="start from this checkpoint (matching layers and class rows are copied)")
    p.add_argument("--no-synthetic-other", action="store_true",
                   help="do not add generated standing/walking/empty 'other' sequences")
    p.add_argument("--val-frac", type=float, default=0.15,
                   help="share of each class's groups (people/clips) held out for validation")
    p.add_argument("--test-frac", type=float, default=0.25, help="share of each class held out for testing "
                   "(data sets with an official split keep it)")
    p.add_argument("--report", help="also evaluate the test split and write the report into this folder")
    for name, what in (("steps", "training steps (batches)"), ("batch-size", "sequences per batch"),
                       ("channels", "TCN channels per layer"), ("levels", "TCN levels (receptive field doubles "
                                                                            "with each)"),
                       ("seed", "random seed of the split, sampling and initialisation"),
                       ("eval-every", "validate every N steps (the best validation checkpoint is kept)"),
                       ("threads", "torch threads (more than the free cores is much slower)"),
                       ("workers", "background processes drawing batches (0 = in the training loop)")):
        p.add_argument(f"--{name}", type=int, default=getattr(cfg, name.replace("-", "_")), metavar="N", help=what)
    p.add_argument("--lr", type=float, default=cfg.lr, help="AdamW learning rate")
    p.add_argument("--shallow-squats", action="store_true",
                   help="also train on squats made shallower and with counterbalance arms (the recipe of the "
                        "shipped ensemble's second member)")
    p.set_defaults(func=cmd_train)
    add_verbose_argument(p)

    p = subparsers.add_parser("evaluate", help="measure a classifier on keypoint data", formatter_class=fmt,
                              description="Classification report, confusion matrix, misclassified clips and "
                                          "streaming measures (delay, flips) for a classifier checkpoint.")
    p.add_argument("--model", help="checkpoint .safetensors (default: the shipped model)")
    p.add_argument("--data", action="append", required=True, metavar="KIND=PATH", help=f"KIND one of {kinds}")
    p.add_argument("--split", default="test", choices=("test", "val", "train", "all"),
                   help="which part of the model's split to use (clips the model never saw count as test)")
    p.add_argument("--out", default="classifier_report", help="report folder")
    p.add_argument("--title", default="Exercise classifier evaluation", help="report title")
    p.add_argument("--no-gate", action="store_true",
                   help="the network alone, without the plausibility rules the live classifier applies")
    p.set_defaults(func=cmd_evaluate)
    add_verbose_argument(p)

    p = subparsers.add_parser("extract", help="run the pose engine over class folders of videos", formatter_class=fmt,
                              description="VIDEOS/<class>/*.mp4 -> OUT/<class>/*.npz (key 'reconstruction', "
                                          "T x 17 x 3 COCO-17 x, y, score) + OUT/manifest.csv, ready for "
                                          "`train --data npz=OUT`. Name videos <person>__<n>.mp4 to keep a "
                                          "person on one side of the train/test split.")
    p.add_argument("videos", help="folder with one sub-folder of videos per class")
    p.add_argument("out", help="output folder")
    p.add_argument("--pose-model", default="auto", choices=POSE_MODELS, metavar="MODEL",
                   help=f"{'|'.join(POSE_MODELS)}: pose engine (as in the live run); auto: ViTPose when its weights are present, else the "
                        "bundled BlazePose")
    p.add_argument("--backend", default="auto", help=f"ViTPose backend: {'|'.join(BACKENDS)}")
    p.add_argument("--weights", help="ViTPose weights (default: bundled BlazePose when none are found)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop each video after N frames (default: all)")
    p.set_defaults(func=cmd_extract)
    add_verbose_argument(p)

    p = subparsers.add_parser("ensemble", help="make a checkpoint average its probabilities with other checkpoints",
                              description="Writes the members into MODEL's .json (paths relative to it): loading "
                                          "MODEL then gives the ensemble. Members need the same classes and input.")
    p.add_argument("model", help="checkpoint .safetensors that becomes the ensemble")
    p.add_argument("members", nargs="*", help="other checkpoints (.safetensors); none = undo")
    p.set_defaults(func=cmd_ensemble)
    add_verbose_argument(p)


MIN_TRAIN_PER_CLASS = 5  # fewer real training sequences of a class than this: the split is too small to learn from


def split_warning(train: list[Sample], val: list[Sample], test: list[Sample], val_frac: float,
                  test_frac: float) -> str | None:
    """One line saying which split is empty or too small (``val`` without the synthetic sequences), else None."""
    labels = sorted({s.label for s in (*train, *val, *test)})
    problems = []
    few = [f"{c} {n}" for c in labels if (n := sum(s.label == c for s in train)) < MIN_TRAIN_PER_CLASS]
    if few:
        problems.append(f"train has few sequences ({', '.join(few)}; want {MIN_TRAIN_PER_CLASS}+ per class)")
    if val_frac > 0 and not val:
        problems.append("val is empty (a class needs 2+ groups, i.e. people or clips, outside test)")
    if test_frac > 0 and not test:
        problems.append("test is empty (a class needs 3+ groups for a test share; --report will have nothing)")
    if not problems:
        return None
    return (f"too little data for a train/val/test split: {'; '.join(problems)}; add clips of more people "
            f"(train {len(train)} / val {len(val)} / test {len(test)} real sequences)")


def _load_split(model_path: Path) -> dict | None:
    path = split_path(model_path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())["splits"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"split file {path} is unreadable ({exc}); delete it or re-train") from None


def cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    samples = load_data(args.data, for_training=True)
    if args.classes:
        unknown = set(args.classes) - {s.label for s in samples}
        if unknown:
            raise DataError(f"--classes {', '.join(sorted(unknown))} not found in the data")
        samples = [s for s in samples if s.label in args.classes]
    labels = {s.label for s in samples}
    if not args.no_synthetic_other:
        labels.add(OTHER_LABEL)
    classes = class_order(labels)
    if len(classes) < 2:
        raise DataError(f"need at least two classes to train, found {', '.join(classes)}; add another class folder "
                        f"or keep the synthetic 'other' class")
    split = split_samples(samples, args.val_frac, args.test_frac, args.seed)
    train, val, test = (subset(samples, split[k]) for k in ("train", "val", "test"))
    warning = split_warning(train, val, test, args.val_frac, args.test_frac)
    if warning:
        log.warning(warning)
    if not args.no_synthetic_other:
        from realtime.training.datasets import synthetic_other_samples

        val = val + synthetic_other_samples(20, seed=args.seed + 1000)  # fixed, never trained on
    counts = {c: sum(s.label == c for s in train) for c in classes}
    console.print(f"classes: {', '.join(f'{c} ({counts[c]})' for c in classes)}")
    console.print(f"split by group: train {len(train)} / val {len(val)} / test {len(test)} sequences")
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, channels=args.channels,
                      levels=args.levels, eval_every=args.eval_every, seed=args.seed, threads=args.threads,
                      workers=args.workers,
                      synthetic_other=not args.no_synthetic_other,
                      p_squat_depth=0.4 if args.shallow_squats else 0.0, squat_counterbalance=args.shallow_squats)
    with _progress() as bar:
        task = bar.add_task("training", total=cfg.steps, info="")

        def tick(step: int, info: dict) -> None:
            shown = {k: v for k, v in info.items() if k != "step"}
            text = " ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in shown.items())
            bar.update(task, completed=step, info=text)
            if "elapsed_s" in info and not bar.console.is_terminal:  # logs/CI: one line per evaluation
                print(f"step {step}/{cfg.steps} {text}", file=sys.stderr, flush=True)

        model, hist = train_model(train, val, classes, cfg, tick, init=args.init)
    out = Path(args.out)
    meta = {
        "training": {
            "data": [{"kind": k, "path": str(p), "terms": DATASETS[k].licence} for k, p in map(parse_spec, args.data)],
            "synthetic_other": cfg.synthetic_other, "sequences": {"train": len(train), "val": len(val),
                                                                   "test": len(test)},
            "train_counts": counts, "config": asdict(cfg), "seed": args.seed, "train_seconds": hist["train_seconds"],
            "history": hist["history"], "split_file": split_path(out).name,
            "init": args.init, "ignored_joints": list(FACE_JOINTS),
        },
        "metrics": {},
    }
    if val:
        meta["metrics"]["val"] = brief(summarise(run_eval(model, {"classes": classes, "normalisation":
                                                                      default_normalisation()}, val), classes))
    split_path(out).parent.mkdir(parents=True, exist_ok=True)
    split_path(out).write_text(json.dumps({"seed": args.seed, "val_frac": args.val_frac, "test_frac": args.test_frac,
                                           "grouping": "by Sample.group (person / source / clip)",
                                           "splits": split}, indent=0) + "\n")
    save_checkpoint(model, classes, meta, out)
    if test:
        results = run_eval(model, {"classes": classes, "normalisation": default_normalisation()}, test)
        if args.report:
            sums = write_report(results, classes, Path(args.report), "Test split",
                                {"path": str(out), "receptive_field": model.receptive_field})
        else:
            groups: dict[str, list[ClipResult]] = {}
            for r in results:
                groups.setdefault(r.source, []).append(r)
            sums = {k: summarise(v, classes) for k, v in groups.items()}
        meta["metrics"]["test"] = {k: brief(v) for k, v in sums.items()}
        save_checkpoint(model, classes, meta, out)
    console.print(f"saved {out} (+ {out.with_suffix('.json').name}, {split_path(out).name})")
    console.print(json.dumps(meta["metrics"], indent=1))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from realtime.classify.classifier import DEFAULT_WEIGHTS

    model_path = Path(args.model) if args.model else DEFAULT_WEIGHTS
    model, meta = load_model(model_path)
    classes = tuple(meta["classes"])
    samples = load_data(args.data)
    split = _load_split(model_path)
    if split is not None and args.split != "all":
        seen = {i for ids in split.values() for i in ids}
        wanted = set(split.get(args.split, []))
        samples = [s for s in samples if s.id in wanted or (args.split == "test" and s.id not in seen)]
    skipped = [s for s in samples if s.label not in classes]
    if skipped:
        log.warning("%d sequences have labels the model does not know (%s); skipped", len(skipped),
                    ", ".join(sorted({s.label for s in skipped})))
    samples = [s for s in samples if s.label in classes]
    if not samples:
        raise DataError(f"no sequences to evaluate (split {args.split!r}, model classes {', '.join(classes)})")
    with _progress() as bar:
        task = bar.add_task("evaluating", total=len(samples), info="")
        results = run_eval(model, meta, samples, progress=lambda: bar.advance(task), gate=not args.no_gate)
    shown_path = model_path.resolve()
    if shown_path.is_relative_to(Path.cwd()):
        shown_path = shown_path.relative_to(Path.cwd())
    sums = write_report(results, classes, Path(args.out), args.title,
                        {"path": str(shown_path), "receptive_field": model.receptive_field, "split": args.split,
                         "plausibility_rules": not args.no_gate, "ensemble": list(meta.get("ensemble") or [])})
    for name, s in sums.items():
        print(f"{name}: {json.dumps(brief(s))}")
    print(f"report written to {args.out}/report.md")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    model_path = Path(args.model)
    load_model(model_path, members=False)  # a readable checkpoint, before its metadata is touched
    meta_file = metadata_path(model_path)
    before = meta_file.read_text()
    meta = json.loads(before)
    meta["ensemble"] = [os.path.relpath(Path(m), model_path.parent) for m in args.members]
    if not meta["ensemble"]:
        del meta["ensemble"]
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    try:
        model, _ = load_model(model_path)
    except RealtimeError:
        meta_file.write_text(before)  # keep the checkpoint usable as it was
        raise
    size = len(model.members) if isinstance(model, TCNEnsemble) else 1
    print(f"{model_path}: {size} member(s)")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from realtime import pose

    pose.validate_pose_options(args.pose_model, args.backend, "auto", args.weights)
    video_dir, out_dir = Path(args.videos), Path(args.out)
    if not video_dir.is_dir():
        raise DataError(f"video folder {video_dir} not found; expected <folder>/<class>/<video>.mp4")
    estimator, reason = pose.create_pose_estimator(args.pose_model, args.backend, args.weights)
    print(f"pose engine: {getattr(estimator, 'name', type(estimator).__name__)} ({reason})", file=sys.stderr)
    n = sum(1 for p in video_dir.glob("*/*") if p.suffix.lower() in VIDEO_EXTS)
    try:
        with _progress() as bar:
            task = bar.add_task("extracting", total=n, info="")
            rows = extract_folder(video_dir, out_dir, estimator,
                                  progress=lambda name: bar.update(task, advance=1, info=name),
                                  max_frames=args.max_frames)
    finally:
        estimator.close()
    print(f"wrote {len(rows)} clips + manifest.csv to {out_dir}; next: train --data npz={out_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from realtime.logs import add_verbose_argument, count_verbose, setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging(count_verbose(argv))
    parser = argparse.ArgumentParser(prog="python -m realtime.training.train", description=__doc__.split("\n")[0])
    add_verbose_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RealtimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["ClipResult", "SequenceSampler", "TrainConfig", "add_parsers", "class_order", "extract_folder",
           "iter_video", "main", "run_eval", "split_path", "summarise", "train_model", "write_report"]
