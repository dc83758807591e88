"""Agreement of the form checks (realtime/reps/form.py) with the good/bad and fault labels in ../shared/data.

Keypoints are the ones shipped with the data (no video decoding), run through the same live ``RepAnalyzer`` as the
app (exercise fixed, ``finish()`` at the end of each sequence); a sequence is "flagged" when any counted rep has the
fault(s) of a check. Sequences where no rep was counted cannot be judged and are reported as not covered.

- deadlift_bichraix: 34 clips, YOLO COCO-17 keypoints (no scores: present = 1.0); clip label good/bad from the file
  name; per-fault labels from phase_form_labels.csv (a clip has fault X when any of its phase rows says X; clips
  without phase rows are left out of the per-fault table). rounded_lower_back / rounded_upper_back cannot be seen
  with COCO-17 (no spine points) and are not checked.
- pushup_form_pushfit: 265 sequences, MoveNet COCO-17 with scores; label correct/wrong per sequence (what made a
  sequence "wrong" is not given).
- ui_prmd_deep_squat: 200 Kinect reps (100 correct / 100 incorrect); joints rebuilt by forward kinematics from the
  parent-relative positions + Euler angles (convention: see kinect_forward_kinematics), then projected
  orthographically to a side view (z, y) and a front view (x, y) at 4 px/cm; each projection is run separately.

Per check: TP/FP/FN/TN with "bad" as the positive class, accuracy, precision, recall, F1.

    python bench/eval_form.py --json out/eval_form.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from realtime.reps.counter import RepAnalyzer  # noqa: E402
from realtime.reps.form import load_config  # noqa: E402
from realtime.training.datasets import KINECT_TO_COCO, kinect_forward_kinematics  # noqa: E402
from realtime.types import RepEvent  # noqa: E402

# check -> (measure in RepEvent.measures, threshold key in [form.<exercise>] / [form.tempo], op to pass)
CHECK_MEASURES: dict[str, dict[str, tuple[str, str, str]]] = {
    "squat": {"depth": ("hip_above_knee_bu", "max_hip_above_knee", "<="),
              "knee_angle": ("knee_angle_deg", "max_knee_angle", "<="),
              "torso_lean": ("torso_lean_deg", "max_torso_lean", "<="),
              "knee_valgus": ("knee_ankle_ratio", "min_knee_ankle_ratio", ">=")},
    "deadlift": {"hips_rise_first": ("hip_shoulder_rise_ratio", "max_hip_shoulder_rise_ratio", "<="),
                 "setup": ("setup_hip_above_knee_bu", "min_setup_hip_above_knee", ">="),
                 "lockout": ("lockout_hip_angle_deg", "min_lockout_hip_angle", ">="),
                 "lean_back": ("lockout_lean_back_deg", "max_lockout_lean_back", "<="),
                 "bar_path": ("bar_drift_bu", "max_bar_drift", "<=")},
    "pushup": {"body_line": ("body_line_angle_deg", "min_body_line_angle", ">="),
               "depth": ("bottom_elbow_angle_deg", "max_bottom_elbow_angle", "<="),
               "tempo": ("down_s", "min_lowering_s", ">=")},
}


class CheckJudge:
    """Pass/fail of one check on a sequence's reps, from the measured values and the preset's thresholds."""

    def __init__(self, exercise: str, strictness: str) -> None:
        cfg = load_config(None, strictness)
        self.specs = CHECK_MEASURES[exercise]
        self.thr = {check: float((cfg.form["tempo"] if check == "tempo" else cfg.form[exercise])[key])
                    for check, (_, key, _) in self.specs.items()}

    def fails(self, reps: list[RepEvent], check: str) -> bool | None:
        """True if any rep fails the check, False if it ran and all passed, None if it never ran."""
        measure, _, op = self.specs[check]
        values = [r.measures[measure] for r in reps if measure in r.measures]
        if not values:
            return None
        thr = self.thr[check]
        return any(not (v <= thr if op == "<=" else v >= thr) for v in values)


def auc(bad: list[float], good: list[float]) -> float | None:
    """Probability that a bad sequence's value is larger than a good one's (0.5 = no separation)."""
    if not bad or not good:
        return None
    b, g = np.asarray(bad)[:, None], np.asarray(good)[None, :]
    return round(float(((b > g).sum() + 0.5 * (b == g).sum()) / (b.size * g.size)), 3)


def run_sequence(kps: np.ndarray, fps: float, exercise: str, strictness: str) -> tuple[list[RepEvent], RepAnalyzer]:
    ra = RepAnalyzer(strictness=strictness, exercise=exercise, fps=fps)
    for i, kp in enumerate(kps):
        ra.update(i, i / fps, None if not np.isfinite(kp[:, :2]).any() else kp, None)
    ra.finish()
    return list(ra.reps), ra


def confusion(pairs: list[tuple[bool, bool]]) -> dict:
    """pairs of (truth bad, predicted bad) -> counts and scores."""
    tp = sum(t and p for t, p in pairs)
    fp = sum((not t) and p for t, p in pairs)
    fn = sum(t and (not p) for t, p in pairs)
    tn = sum((not t) and (not p) for t, p in pairs)
    n = max(len(pairs), 1)
    prec = tp / (tp + fp) if tp + fp else math.nan
    rec = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * prec * rec / (prec + rec) if tp else 0.0
    return {"n": len(pairs), "tp": tp, "fp": fp, "fn": fn, "tn": tn, "accuracy": round((tp + tn) / n, 3),
            "precision": round(prec, 3) if math.isfinite(prec) else None,
            "recall": round(rec, 3) if math.isfinite(rec) else None, "f1": round(f1, 3)}


def worst(reps: list[RepEvent], measure: str, op: str) -> float | None:
    """The sequence's value that is furthest on the failing side (max for "<=" checks, min for ">=")."""
    values = [r.measures[measure] for r in reps if measure in r.measures]
    if not values:
        return None
    return max(values) if op == "<=" else min(values)


def judge_sequences(seqs: list[tuple[str, bool, list[RepEvent]]], judge: CheckJudge,
                    truth_of=None) -> tuple[dict, dict]:
    """(per-check confusion vs bad, per-check AUC of the worst measure); ``truth_of(name, check)`` overrides truth."""
    pairs: dict[str, list] = {}
    vals: dict[str, tuple[list, list]] = {}
    for name, bad, reps in seqs:
        for check, (measure, _, op) in judge.specs.items():
            truth = bad if truth_of is None else truth_of(name, check)
            if truth is None:
                continue
            f = judge.fails(reps, check)
            if f is not None:
                pairs.setdefault(check, []).append((truth, f))
            w = worst(reps, measure, op)
            if w is not None:
                vals.setdefault(check, ([], []))[0 if truth else 1].append(w if op == "<=" else -w)
    return ({k: confusion(v) for k, v in pairs.items()},
            {k: auc(*v) for k, v in vals.items()})


def table(title: str, rows: dict[str, dict], extra: str = "", aucs: dict | None = None) -> None:
    print(f"\n{title}{extra}")
    print(f"  {'check':28} {'n':>4} {'TP':>4} {'FP':>4} {'FN':>4} {'TN':>4} {'acc':>6} {'prec':>6} {'rec':>6} {'F1':>6}"
          f" {'AUC':>6}")
    def fmt(v: float | None) -> str:
        return "  -  " if v is None else f"{v:.2f}"

    for name, c in rows.items():
        print(f"  {name:28} {c['n']:4d} {c['tp']:4d} {c['fp']:4d} {c['fn']:4d} {c['tn']:4d} {c['accuracy']:6.2f} "
              f"{fmt(c['precision']):>6} {fmt(c['recall']):>6} {c['f1']:6.2f} {fmt((aucs or {}).get(name)):>6}")


# ----------------------------------------------------------------------------------------------- deadlift

# check -> fault label of phase_form_labels.csv it corresponds to (hips_rise_first has none: clip good/bad only)
DEADLIFT_LABEL_FAULT = {"setup": "hips_too_low", "lockout": "incomplete_lockout", "lean_back": "shoulders_behind_bar",
                        "bar_path": "bar_drift"}


def eval_deadlift(data: Path, strictness: str) -> dict:
    import pandas as pd

    root = data / "deadlift_bichraix"
    index = pd.read_csv(root / "index.csv")
    fps_of = {Path(v).stem: float(f) for v, f in zip(index.video, index.fps, strict=True)}
    phases = pd.read_csv(root / "phase_form_labels.csv")
    fault_sets = {v: set(g.fault) - {"correct"} for v, g in phases.groupby("video")}
    judge = CheckJudge("deadlift", strictness)
    seqs, clip_rows = [], []
    for csv in sorted((root / "keypoints_coco17").glob("*_joints_new.csv")):
        name = csv.name.split("_")[0]
        d = pd.read_csv(csv)
        xy = d.iloc[:, 1:].to_numpy(float).reshape(-1, 17, 2)
        kps = np.concatenate([xy, np.isfinite(xy).all(-1, keepdims=True).astype(float)], -1)
        kps[~np.isfinite(kps)] = 0.0
        reps, _ = run_sequence(kps.astype(np.float32), fps_of.get(name, 30.0), "deadlift", strictness)
        clip_rows.append({"clip": name, "reps": len(reps), "faults": sorted({f for r in reps for f in r.faults}),
                          "views": [r.view for r in reps],
                          "measures": [{k: round(v, 3) for k, v in r.measures.items()} for r in reps]})
        if reps:
            seqs.append((name, name.startswith("bad"), reps))

    def label_truth(name: str, check: str) -> bool | None:
        if check not in DEADLIFT_LABEL_FAULT or name not in fault_sets:
            return None
        return DEADLIFT_LABEL_FAULT[check] in fault_sets[name]

    any_pairs = [(bad, any(judge.fails(reps, c) for c in judge.specs)) for _, bad, reps in seqs]
    per_bad, auc_bad = judge_sequences(seqs, judge)
    per_fault, auc_fault = judge_sequences(seqs, judge, label_truth)
    res = {"clips": len(clip_rows), "covered": len(seqs), "clip_bad_any": confusion(any_pairs),
           "clip_bad_per_check": per_bad, "clip_bad_auc": auc_bad,
           "fault_labels_per_check": per_fault, "fault_labels_auc": auc_fault, "clips_detail": clip_rows}
    table("deadlift_bichraix: clip good/bad", {"any check": res["clip_bad_any"], **per_bad},
          f" ({len(seqs)}/{len(clip_rows)} clips with a counted rep)", auc_bad)
    table("deadlift_bichraix: phase fault labels (clips with phase rows; check vs "
          + ", ".join(f"{k}={v}" for k, v in DEADLIFT_LABEL_FAULT.items()) + ")", per_fault, "", auc_fault)
    return res


# ----------------------------------------------------------------------------------------------- push-ups

def eval_pushup(data: Path, strictness: str) -> dict:
    import pandas as pd

    root = data / "pushup_form_pushfit"
    z = np.load(root / "pushup_movenet_coco17.npz")
    labels = pd.read_csv(root / "labels.csv").set_index("name")
    off = np.r_[0, np.cumsum(z["lengths"])]
    judge = CheckJudge("pushup", strictness)
    seqs, n_reps, views = [], [], {}
    for i, name in enumerate(z["names"]):
        fps = float(labels.fps.get(name, 30.0)) if name in labels.index else 30.0
        fps = fps if math.isfinite(fps) and fps > 0 else 30.0
        reps, _ = run_sequence(z["keypoints"][off[i]:off[i + 1]], fps, "pushup", strictness)
        n_reps.append(len(reps))
        for r in reps:
            views[r.view] = views.get(r.view, 0) + 1
        if reps:
            seqs.append((str(name), str(z["labels"][i]) == "wrong", reps))
    any_pairs = [(bad, bool(judge.fails(reps, "body_line")) or bool(judge.fails(reps, "depth")))
                 for _, bad, reps in seqs]
    per, aucs = judge_sequences(seqs, judge)
    res = {"sequences": len(n_reps), "covered": len(seqs), "reps_total": int(sum(n_reps)), "rep_views": views,
           "wrong_any_form_check": confusion(any_pairs), "wrong_per_check": per, "wrong_auc": aucs}
    table("pushup_form_pushfit: sequence correct/wrong", {"body_line or depth": res["wrong_any_form_check"], **per},
          f" ({len(seqs)}/{len(n_reps)} sequences with a counted rep; rep views {views})", aucs)
    return res


# ----------------------------------------------------------------------------------------------- UI-PRMD

def project(joints: np.ndarray, view: str, px_per_cm: float = 4.0) -> np.ndarray:
    """(T, 22, 3) -> (T, 17, 3) COCO keypoints of an orthographic side (z, y) or front (x, y) view."""
    horiz = joints[..., 2] if view == "side" else joints[..., 0]
    kp = np.zeros((len(joints), 17, 3), np.float32)
    for c, k in enumerate(KINECT_TO_COCO):
        if k is None:
            continue
        kp[:, c, 0] = 640 + horiz[:, k] * px_per_cm * (1 if view == "front" else -1)
        kp[:, c, 1] = 900 - joints[:, k, 1] * px_per_cm
        kp[:, c, 2] = 1.0
    if view == "side":
        kp[:, [6, 8, 10, 12, 14, 16], 0] += 2.0  # both sides project onto each other; keep them distinct
    return kp


def eval_uiprmd(data: Path, strictness: str, fps: float = 30.0) -> dict:
    import pandas as pd

    root = data / "ui_prmd_deep_squat"
    index = pd.read_csv(root / "index.csv")
    judge = CheckJudge("squat", strictness)
    joints = []
    for rec in index[index.quantity == "positions"].itertuples():
        ang_file = rec.file.replace("/positions/", "/angles/").replace("_positions", "_angles")
        pos = np.loadtxt(gzip.open(root / rec.file), delimiter=",")
        ang = np.loadtxt(gzip.open(root / ang_file), delimiter=",")
        joints.append((rec.file, rec.form == "incorrect", kinect_forward_kinematics(pos, ang)))
    res: dict = {}
    for view in ("side", "front"):
        seqs, counts, views = [], [], {}
        for name, bad, j in joints:
            reps, _ = run_sequence(project(j, view), fps, "squat", strictness)
            counts.append(len(reps))
            for r in reps:
                views[r.view] = views.get(r.view, 0) + 1
            if reps:
                seqs.append((name, bad, reps))
        per, aucs = judge_sequences(seqs, judge)
        medians = {}
        for form, flag in (("correct", False), ("incorrect", True)):
            medians[form] = {}
            for measure, _, op in judge.specs.values():
                w = [worst(reps, measure, op) for _, b, reps in seqs if b == flag]
                w = [v for v in w if v is not None]
                if w:
                    medians[form][measure] = round(float(np.median(w)), 3)
        exact = sum(1 for c in counts if c == 1)
        res[view] = {"files": len(counts), "exactly_one_rep": exact, "rep_views": views, "per_check": per,
                     "auc": aucs, "median_worst_measures": medians}
        table(f"ui_prmd_deep_squat ({view} projection): correct/incorrect", per,
              f" (exactly 1 rep found in {exact}/{len(counts)} one-rep files; views {views})", aucs)
        print(f"  median of each file's worst value: {medians}")
    return res


def main(argv: list[str] | None = None) -> int:
    from realtime.logs import add_verbose_argument, setup_logging

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--strictness", default="normal")
    ap.add_argument("--only", choices=("deadlift", "pushup", "uiprmd"), default=None)
    ap.add_argument("--json", type=Path, default=None)
    add_verbose_argument(ap)
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    if not args.data.exists():
        print(f"error: {args.data} not found; pass --data", file=sys.stderr)
        return 2
    out = {"strictness": args.strictness}
    if args.only in (None, "deadlift"):
        out["deadlift"] = eval_deadlift(args.data, args.strictness)
    if args.only in (None, "pushup"):
        out["pushup"] = eval_pushup(args.data, args.strictness)
    if args.only in (None, "uiprmd"):
        out["uiprmd"] = eval_uiprmd(args.data, args.strictness)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
