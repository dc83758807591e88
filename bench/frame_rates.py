"""Classifier accuracy at other frame rates: one model step per frame vs the 30 Hz time base (``realtime.classify.ticks``).

    python bench/frame_rates.py [--data ../shared/data/penn_action] [--json out/frame_rates.json]

Penn Action's test split (the shipped model's split file) is re-timed from its 30 fps keypoints: 60 fps by linear
interpolation (``realtime.training.augment.time_warp``, as training re-times clips), 15 / 10 / 5 fps by keeping every 2nd / 3rd /
6th frame (a source that is slower, or a pose engine that keeps up with only that many frames of a live feed).
Each clip is then classified twice: with one model step per frame (``predict_sequence`` without ``fps``) and on
the time base (``fps=``), plausibility rules on, as live. Clip accuracy = argmax of the mean probabilities.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from realtime.classify.classifier import DEFAULT_WEIGHTS, load_model, predict_sequence
from realtime.training.augment import time_warp
from realtime.training.datasets import read_penn_action, subset


def retime(kp: np.ndarray, factor: int | float) -> np.ndarray:
    """(T, 17, 3) at 30 fps -> ``factor`` × the frame rate (2: 60 fps, interpolated by the training code's
    ``time_warp``; 1/k: every k-th frame, as a source that slow or a pose engine that drops the rest gives them)."""
    if factor < 1:
        return kp[:: int(round(1 / factor))]
    return time_warp(kp, 1 / factor)


def main() -> None:
    from realtime.logs import add_verbose_argument, setup_logging

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/penn_action")
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--json", type=Path)
    add_verbose_argument(ap)
    args = ap.parse_args()
    setup_logging(args.verbose)
    model, meta = load_model(args.weights)
    classes = list(meta["classes"])
    split = json.loads(Path(args.weights).with_suffix(".split.json").read_text())["splits"]["test"]
    clips = [s for s in subset(read_penn_action(args.data), split) if s.label in classes]
    rows = []
    for fps in (60, 30, 15, 10, 5):
        acc = {}
        for mode, timed in (("per_frame", None), ("time_base", float(fps))):
            hits = 0
            for s in clips:
                probs = predict_sequence(model, meta, retime(s.keypoints, fps / 30), fps=timed)
                hits += classes[int(probs.mean(0).argmax())] == s.label
            acc[mode] = hits / len(clips)
        rows.append({"fps": fps, **acc})
        print(f"{fps:>3} fps: one step per frame {acc['per_frame']:.1%}   30 Hz time base {acc['time_base']:.1%}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"clips": len(clips), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
