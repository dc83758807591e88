"""Rep counting on the rep-labelled clips of ../shared/data/workouttracker_reps (squat, pull-up, push-up).

Truth = number of frames with label 1 (the frame where a rep STARTS; squat_16 has none). Keypoints come from our pose
engine (``--pose-model``, default the bundled BlazePose) run on the decoded frames (display rotation applied) and
are cached under ``out/keypoints_cache/`` (git-ignored; never commit them). The exercise is given per clip (the
classifier is evaluated elsewhere) unless ``--labels oracle-late`` is used, which feeds the clip's exercise as a
classifier label that only appears after ``--label-delay`` seconds (what the live pipeline sees while the TCN warms
up; before that it says "other"), or ``--labels classifier``, which follows the trained streaming classifier.

Reported per clip: true count, live count (reps finished while the video plays), the count after
``RepAnalyzer.finish()`` (end of file: a rep past its turn and half-way back counts) and "started" = live count + 1
when a rep has begun (left the rest level) but not finished when the clip ends; "started" is what the labels count
(they mark rep starts, and many clips end a moment after the last one). Summary: MAE, MAE relative
to the mean true count, exact and off-by-one accuracy, per exercise and overall; rep-start matching (a predicted
start within ``--tol`` s of a labelled start) as a diagnostic.

    python bench/eval_reps.py                       # extract (first run, a few minutes on 2 cores) + evaluate
    python bench/eval_reps.py --json out/eval_reps.json --plots out/eval_reps
    python bench/eval_reps.py --analysis-fps 10     # as a camera capped with --analysis-fps 10: pose, tracking and
                                                    # counting see only the kept frames (realtime.sources.rate)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from realtime.reps.counter import RepAnalyzer  # noqa: E402

EXERCISE_OF = {"squats": "squat", "pull-ups": "pullup", "push-ups": "pushup"}  # dips: not one of our classes


def decode_upright(path: Path):
    """Yield BGR frames with the display rotation applied, and the stream's frame rate."""
    import av

    from realtime.sources.decode import iter_upright, stream_fps

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = stream_fps(stream, 30.0)
        for img in iter_upright(container, stream):
            yield img, fps


def keypoints_for(video: Path, cache: Path, pose_model: str, estimator_box: dict,
                  analysis_fps: float | None = None) -> tuple[np.ndarray, float, np.ndarray]:
    """(T, 17, 3) keypoints (NaN rows = nobody found), the clip's fps and the indices of the T frames analysed
    (all of them, or those an ``analysis_fps`` cap keeps), from the cache or by running the pose engine."""
    if cache.exists():
        z = np.load(cache)
        kps = z["keypoints"]
        return kps, float(z["fps"]), z["frames"] if "frames" in z.files else np.arange(len(kps))
    from realtime.sources.rate import AnalysisRate

    rate = AnalysisRate(analysis_fps) if analysis_fps else None
    if "est" not in estimator_box:
        from realtime.pose import create_pose_estimator

        estimator_box["est"], _ = create_pose_estimator(pose_model)
    est = estimator_box["est"]
    est.reset()
    kps, frames, rates, t0 = [], [], [30.0], time.perf_counter()
    for i, (img, fps) in enumerate(decode_upright(video)):
        rates.append(fps)
        if rate is not None and not rate.keep(i / fps):
            continue
        frames.append(i)
        kp = est.estimate(img).keypoints
        kps.append(np.full((17, 3), np.nan, np.float32) if kp is None else np.asarray(kp, np.float32))
    arr, fps, idx = np.stack(kps), rates[-1], np.array(frames)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, keypoints=arr, fps=fps, pose_model=pose_model, frames=idx)
    print(f"  extracted {video.name}: {len(arr)} frames in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return arr, fps, idx


def count_clip(kps: np.ndarray, fps: float, exercise: str, strictness: str, labels: str,
               label_delay: float, classifier=None, frames: np.ndarray | None = None) -> dict:
    """``frames``: the clip frame index of each row of ``kps`` (default: every frame)."""
    fixed = exercise if labels == "given" else None
    ra = RepAnalyzer(strictness=strictness, exercise=fixed, fps=fps)
    if classifier is not None:
        classifier.reset()
    for i, kp in zip(range(len(kps)) if frames is None else frames, kps, strict=True):
        i = int(i)
        t = i / fps
        k = None if np.isnan(kp).all() else kp
        label, conf = None, 1.0
        if labels == "oracle-late":
            label = exercise if t >= label_delay else "other"
        elif labels == "classifier":
            pred = classifier.push(k, t)
            label, conf = pred.label, pred.confidence
        ra.update(i, t, k, label, conf)
    live = len([r for r in ra.reps if r.exercise == exercise])
    started = live + int(ra.in_progress and ra.exercise == exercise)
    ra.finish()
    reps = [r for r in ra.reps if r.exercise == exercise]
    return {"live": live, "final": len(reps), "started": started, "starts": [r.start_frame for r in reps],
            "ends": [r.end_frame for r in reps], "timeline": ra.timeline(), "faults": [r.faults for r in reps]}


def match_starts(pred: list[int], truth: list[int], tol_frames: float) -> int:
    """Greedy one-to-one matching of predicted and labelled start frames within the tolerance."""
    used, hits = set(), 0
    for p in pred:
        best = min((abs(p - g), j) for j, g in enumerate(truth) if j not in used) if len(used) < len(truth) else None
        if best is not None and best[0] <= tol_frames:
            used.add(best[1])
            hits += 1
    return hits


def summarize(rows: list[dict], key: str) -> dict:
    err = np.array([r[key] - r["truth"] for r in rows], float)
    truth = np.array([r["truth"] for r in rows], float)
    return {
        "clips": len(rows),
        "true_reps": int(truth.sum()),
        "mae": round(float(np.abs(err).mean()), 3),
        "mae_over_mean_true": round(float(np.abs(err).mean() / max(truth.mean(), 1e-9)), 3),
        "exact": round(float((err == 0).mean()), 3),
        "within_one": round(float((np.abs(err) <= 1).mean()), 3),
        "bias": round(float(err.mean()), 3),
    }


def plot_clip(path: Path, name: str, fps: float, timeline, truth_frames, starts, ends) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 2.6))
    if timeline:
        t, s, _ = zip(*timeline, strict=True)
        ax.plot(t, s, lw=1.2, label="signal / full ROM")
    for f in truth_frames:
        ax.axvline(f / fps, color="g", ls="--", lw=1)
    for a, b in zip(starts, ends, strict=True):
        ax.axvspan(a / fps, b / fps, color="orange", alpha=0.25)
    ax.set_title(f"{name}: labelled starts (green), counted reps (orange)")
    ax.set_xlabel("s")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from realtime.logs import add_verbose_argument, setup_logging

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "workouttracker_reps")
    ap.add_argument("--cache", type=Path, default=REPO / "out" / "keypoints_cache" / "workouttracker_reps")
    ap.add_argument("--pose-model", default="blazepose-full")
    ap.add_argument("--strictness", default="normal")
    ap.add_argument("--labels", choices=("given", "oracle-late", "classifier"), default="given",
                    help="given = --exercise fixed per clip; oracle-late = follow a label that appears late; "
                         "classifier = follow realtime.classify.classifier's live predictions (--classifier-weights)")
    ap.add_argument("--classifier-weights", default=None, help="classifier .safetensors (default: the shipped one)")
    ap.add_argument("--label-delay", type=float, default=1.0)
    ap.add_argument("--tol", type=float, default=1.0, help="rep-start matching tolerance, seconds")
    ap.add_argument("--analysis-fps", type=float, default=None, metavar="FPS",
                    help="analyse only the frames a camera capped at FPS keeps (run_live.py --analysis-fps)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plots", type=Path, default=None)
    add_verbose_argument(ap)
    args = ap.parse_args(argv)
    from realtime.sources.rate import ANALYSIS_FPS_RANGE

    low, high = ANALYSIS_FPS_RANGE
    if args.analysis_fps is not None and not low <= args.analysis_fps <= high:
        print(f"error: --analysis-fps must be from {low:g} to {high:g}", file=sys.stderr)
        return 2
    setup_logging(args.verbose)

    import pandas as pd

    if not (args.data / "index.csv").exists():
        print(f"error: {args.data}/index.csv not found; pass --data", file=sys.stderr)
        return 2
    index = pd.read_csv(args.data / "index.csv")
    classifier = None
    if args.labels == "classifier":
        from realtime.classify.classifier import StreamingClassifier
        from realtime.errors import RealtimeError

        try:
            classifier = StreamingClassifier.load(args.classifier_weights)
        except RealtimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    box: dict = {}
    rows = []
    for rec in index.itertuples():
        if rec.exercise not in EXERCISE_OF:
            continue
        ex = EXERCISE_OF[rec.exercise]
        lab = pd.read_csv(args.data / rec.labels)
        truth_frames = [int(f) for f in np.flatnonzero(lab.label.to_numpy() > 0.5)]
        capped = f".{args.analysis_fps:g}fps" if args.analysis_fps else ""
        cache = args.cache / rec.exercise / f"{rec.clip}.{args.pose_model}{capped}.npz"
        kps, fps, frames = keypoints_for(args.data / rec.video, cache, args.pose_model, box, args.analysis_fps)
        res = count_clip(kps, fps, ex, args.strictness, args.labels, args.label_delay, classifier, frames)
        found = float((~np.isnan(kps).all(axis=(1, 2))).mean())
        hits = match_starts(res["starts"], truth_frames, args.tol * fps)
        rows.append({"exercise": ex, "clip": rec.clip, "frames": len(kps), "fps": round(fps, 3), "truth": len(truth_frames),
                     "live": res["live"], "final": res["final"], "started": res["started"], "start_hits": hits, "person_found": round(found, 3),
                     "pred_starts": res["starts"], "true_starts": truth_frames})
        if args.plots:
            plot_clip(args.plots / f"{rec.clip}.png", rec.clip, fps, res["timeline"], truth_frames, res["starts"],
                      res["ends"])
    if "est" in box:
        box["est"].close()

    print(f"{'exercise':8} {'clip':12} {'true':>4} {'live':>4} {'final':>5} {'started':>7} {'starts ok':>9} {'found':>6}")
    for r in rows:
        print(f"{r['exercise']:8} {r['clip']:12} {r['truth']:4d} {r['live']:4d} {r['final']:5d} {r['started']:7d} "
              f"{r['start_hits']:4d}/{r['truth']:<4d} {r['person_found']:6.2f}")
    out = {"pose_model": args.pose_model, "strictness": args.strictness, "labels": args.labels,
           "analysis_fps": args.analysis_fps, "clips": rows,
           "summary": {}}
    groups = {"all": rows, **{ex: [r for r in rows if r["exercise"] == ex] for ex in EXERCISE_OF.values()}}
    print(f"\n{'group':8} {'count':7} {'clips':>5} {'true':>5} {'MAE':>6} {'MAE/mean':>8} {'exact':>6} {'±1':>6} {'bias':>6}")
    for g, rs in groups.items():
        if not rs:
            continue
        out["summary"][g] = {}
        for key in ("live", "final", "started"):
            s = summarize(rs, key)
            out["summary"][g][key] = s
            print(f"{g:8} {key:7} {s['clips']:5d} {s['true_reps']:5d} {s['mae']:6.3f} {s['mae_over_mean_true']:8.3f} "
                  f"{s['exact']:6.2f} {s['within_one']:6.2f} {s['bias']:+6.2f}")
        tp = sum(r["start_hits"] for r in rs)
        npred, ntrue = sum(r["final"] for r in rs), sum(r["truth"] for r in rs)
        prec, rec = tp / max(npred, 1), tp / max(ntrue, 1)
        out["summary"][g]["start_match"] = {"tol_s": args.tol, "precision": round(prec, 3), "recall": round(rec, 3)}
        print(f"{'':8} starts within ±{args.tol:.1f} s: precision {prec:.2f}, recall {rec:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
