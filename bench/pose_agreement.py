"""Keypoint agreement of our pose engine with the keypoints shipped beside the real clips in ../shared/data.

References are other models' outputs, not ground truth, so this measures *agreement*:
- deadlift_bichraix: every video with a keypoint CSV (YOLO pose, COCO-17, NaN = missing);
- workouttracker_reps push-ups vs pushup_form_pushfit MoveNet keypoints, for the clips that are the same file
  (matched here by byte size, frame count and resolution against pushfit's labels.csv; joints with MoveNet score
  < ``--ref-min-score`` count as missing).

PCK@a: share of reference joints whose predicted position lies within a·S of the reference, S = max side of the box
around that frame's reference joints; frames where we found nobody count as misses. "found" = share of frames
with a reference person (≥ 5 joints) where the engine returned a pose.

    python bench/pose_agreement.py --pose-model blazepose-full --json out/agreement.json --overlays out/overlays
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

from realtime.training.datasets import undo_square_letterbox  # noqa: E402
from realtime.types import COCO17_NAMES  # noqa: E402

THRESHOLDS = (0.05, 0.10)
MIN_REF_JOINTS = 5


def read_frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    from realtime.sources.decode import decode_upright

    return list(decode_upright(path, limit=limit or None, threads=None))


def deadlift_cases(data: Path) -> list[tuple[str, Path, np.ndarray]]:
    """(name, video, reference (T, 17, 2) with NaN = missing) for every deadlift video with keypoints."""
    import pandas as pd

    root = data / "deadlift_bichraix"
    cases = []
    for video in sorted((root / "videos").glob("*/*.mp4")):
        csv = root / "keypoints_coco17" / f"{video.stem}_joints_new.csv"
        if csv.is_file():
            ref = pd.read_csv(csv).iloc[:, 1:].to_numpy(float).reshape(-1, 17, 2)
            cases.append((f"deadlift/{video.stem}", video, ref))
    return cases


def pushup_cases(
    data: Path, min_score: float, fix_letterbox: bool = True
) -> tuple[list[tuple[str, Path, np.ndarray]], list[str]]:
    """Push-up videos that are the same file as a pushfit sequence, with the MoveNet reference; plus match notes."""
    import pandas as pd

    wt = data / "workouttracker_reps"
    pf = data / "pushup_form_pushfit"
    if not (wt / "index.csv").is_file() or not (pf / "labels.csv").is_file():
        return [], ["push-up data absent"]
    index = pd.read_csv(wt / "index.csv")
    labels = pd.read_csv(pf / "labels.csv")
    z = np.load(pf / "pushup_movenet_coco17.npz", allow_pickle=False)
    names = [str(n) for n in z["names"]]
    offsets = np.r_[0, np.cumsum(z["lengths"])]
    cases, notes = [], []
    for row in index[index.exercise == "push-ups"].itertuples():
        video = wt / row.video
        if not video.is_file():
            continue
        size = video.stat().st_size
        match = labels[(labels.video_bytes == size) & (labels.keypoint_frames == row.frames)
                       & (labels.width == row.width) & (labels.height == row.height)]
        if len(match) != 1:
            notes.append(f"{row.clip}: no unique pushfit match ({len(match)} candidates), skipped")
            continue
        name = str(match.name.iloc[0])
        i = names.index(name)
        ref = z["keypoints"][offsets[i]:offsets[i + 1]].astype(float)
        xy = undo_square_letterbox(ref[..., :2], int(row.width), int(row.height)) if fix_letterbox else ref[..., :2].copy()
        xy[ref[..., 2] < min_score] = np.nan
        cases.append((f"pushup/{row.clip}={name}", video, xy))
        notes.append(f"{row.clip} = pushfit {name} (same bytes {size}, {row.frames} frames, {row.width}x{row.height})")
    return cases, notes


def score_clip(pred: list[np.ndarray | None], ref: np.ndarray) -> dict:
    """Per-joint hit counts at each threshold, joint counts, frames with a reference person and frames found."""
    n = min(len(pred), len(ref))
    hits = {a: np.zeros(17) for a in THRESHOLDS}
    total = np.zeros(17)
    ref_frames = found = 0
    errors = []
    for t in range(n):
        valid = ~np.isnan(ref[t]).any(1)
        if valid.sum() < MIN_REF_JOINTS:
            continue
        ref_frames += 1
        xy = ref[t, valid]
        size = float(max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]), 1.0))
        total[valid] += 1
        if pred[t] is None:
            continue
        found += 1
        dist = np.full(17, np.inf)
        dist[valid] = np.hypot(*(pred[t][valid, :2] - ref[t, valid]).T) / size
        errors.extend(dist[valid].tolist())
        for a in THRESHOLDS:
            hits[a] += dist <= a
    return {"hits": {str(a): h.tolist() for a, h in hits.items()}, "total": total.tolist(), "ref_frames": ref_frames,
            "found": found, "frames": n, "median_err": float(np.median(errors)) if errors else None}


def summarize(clips: list[dict]) -> dict:
    total = np.sum([c["total"] for c in clips], 0)
    out = {"clips": len(clips), "frames": int(sum(c["frames"] for c in clips)),
           "ref_frames": int(sum(c["ref_frames"] for c in clips)), "found": int(sum(c["found"] for c in clips))}
    out["found_share"] = out["found"] / max(out["ref_frames"], 1)
    for a in THRESHOLDS:
        hits = np.sum([c["hits"][str(a)] for c in clips], 0)
        out[f"pck@{a:.2f}"] = float(hits.sum() / max(total.sum(), 1))
        out[f"pck@{a:.2f}_joint"] = {COCO17_NAMES[j]: (float(hits[j] / total[j]) if total[j] else None) for j in range(17)}
    return out


def draw(image: np.ndarray, keypoints: np.ndarray | None, ref: np.ndarray | None, box: np.ndarray | None) -> np.ndarray:
    import cv2

    from realtime.outputs.overlay import draw_skeleton

    vis = image.copy()
    thick = max(2, image.shape[0] // 240)
    if ref is not None:  # reference joints as white rings
        for x, y in ref:
            if not np.isnan(x):
                cv2.circle(vis, (int(x), int(y)), 3 * thick, (255, 255, 255), max(1, thick // 2), cv2.LINE_AA)
    if keypoints is not None:
        draw_skeleton(vis, keypoints, min_score=0.3, thickness=thick)
    if box is not None:
        cv2.rectangle(vis, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), (0, 255, 0), max(1, thick // 2))
    return vis


def main(argv: list[str] | None = None) -> int:
    from realtime.logs import add_verbose_argument, setup_logging

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pose-model", default="blazepose-full")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--max-frames", type=int, default=None, help="per clip (default: all)")
    parser.add_argument("--ref-min-score", type=float, default=0.3, help="MoveNet joints below this are missing")
    parser.add_argument("--no-pushups", action="store_true")
    parser.add_argument("--pushfit-raw", action="store_true",
                        help="use pushfit's MoveNet y as stored (short axis squashed; see undo_square_letterbox)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--overlays", type=Path, default=None, help="write squat/deadlift/push-up overlay PNGs here")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    from realtime.pose import create_pose_estimator

    estimator, reason = create_pose_estimator(args.pose_model, backend=args.backend, weights=args.weights)
    cases = [("deadlift", *c) for c in deadlift_cases(args.data)]
    notes: list[str] = []
    if not args.no_pushups:
        push, notes = pushup_cases(args.data, args.ref_min_score, not args.pushfit_raw)
        cases += [("pushup", *c) for c in push]
    if not cases:
        print(f"no reference data under {args.data}", file=sys.stderr)
        return 1
    per_set: dict[str, list[dict]] = {}
    per_clip = {}
    overlays: dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]] = {}
    t_start = time.perf_counter()
    infer_ms = []
    for kind, name, video, ref in cases:
        frames = read_frames(video, args.max_frames)
        estimator.reset()
        preds, boxes = [], []
        for frame in frames:
            result = estimator.estimate(frame)
            preds.append(result.keypoints)
            boxes.append(result.box)
            infer_ms.append(result.infer_ms)
        scores = score_clip(preds, ref)
        per_clip[name] = {k: v for k, v in scores.items() if k not in ("hits", "total")}
        per_clip[name]["pck@0.10"] = float(np.sum(scores["hits"]["0.1"]) / max(np.sum(scores["total"]), 1))
        per_set.setdefault(kind, []).append(scores)
        if kind not in overlays and preds:
            k = len(frames) // 2
            overlays[kind] = (frames[k], preds[k], ref[k] if k < len(ref) else None, boxes[k])
        print(f"{name:40s} frames {scores['frames']:4d} found {scores['found']:4d}/{scores['ref_frames']:4d} "
              f"pck@0.10 {per_clip[name]['pck@0.10']:.3f}", file=sys.stderr)
    elapsed = time.perf_counter() - t_start

    summary = {kind: summarize(clips) for kind, clips in per_set.items()}
    summary["all"] = summarize([c for clips in per_set.values() for c in clips])
    report = {"pose_model": estimator.name, "reason": reason, "thresholds": THRESHOLDS, "summary": summary,
              "per_clip": per_clip, "pushup_matching": notes, "mean_infer_ms": float(np.mean(infer_ms)),
              "wall_s": elapsed, "command": " ".join(sys.argv)}

    sets = list(summary)
    print(f"\nKeypoint agreement of {estimator.name} (PCK, box = max side of the reference joints' box)\n")
    print("| joint | " + " | ".join(f"{s} @5% | {s} @10%" for s in sets) + " |")
    print("|---|" + "---|---|" * len(sets))
    for joint in COCO17_NAMES:
        cells = []
        for s in sets:
            for a in THRESHOLDS:
                v = summary[s][f"pck@{a:.2f}_joint"][joint]
                cells.append("–" if v is None else f"{v:.3f}")
        print(f"| {joint} | " + " | ".join(cells) + " |")
    print("| **all joints** | " + " | ".join(f"**{summary[s][f'pck@{a:.2f}']:.3f}**" for s in sets for a in THRESHOLDS)
          + " |")
    print("| lifter found | " + " | ".join(f"{summary[s]['found_share']:.3f} |" for s in sets) + " |")
    print("| frames (clips) | " + " | ".join(f"{summary[s]['ref_frames']} ({summary[s]['clips']}) |" for s in sets)
          + " |")
    print(f"\nreferences: deadlift = YOLO-pose CSVs; pushup = pushfit MoveNet (score >= {args.ref_min_score}); "
          f"not ground truth. Mean model time {report['mean_infer_ms']:.1f} ms/frame, wall {elapsed:.0f} s.")
    for note in notes:
        print(f"  match: {note}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    if args.overlays:
        import cv2

        args.overlays.mkdir(parents=True, exist_ok=True)
        squat = args.data / "workouttracker_reps" / "videos" / "squats" / "squat_24.mp4"
        if squat.is_file():
            frames = read_frames(squat, 70)
            estimator.reset()
            for frame in frames:
                result = estimator.estimate(frame)
            overlays["squat"] = (frames[-1], result.keypoints, None, result.box)
        for kind, (frame, kp, ref, box) in overlays.items():
            out = args.overlays / f"{kind}_{estimator.name.split('/')[0]}.png"
            cv2.imwrite(str(out), draw(frame, kp, ref, box))
            print(f"overlay: {out}")
    estimator.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
