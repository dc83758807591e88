"""Readers for the labelled keypoint data sets, all returning ``Sample`` records in COCO-17 pixel coordinates.

Every reader returns (T, 17, 3) float32 [x, y, score] sequences; a missing joint has score 0 (and x = y = 0).
``group`` is the unit that must never be split between train and test (a person, a source video or a
source run); ``split`` is set only where the data set has an official split (Penn Action).

Terms (see ``../shared/data/*/README.md``): Penn Action = research use, cite ICCV'13; BichraiX deadlift and
PushFit push-ups = no licence, internal use (the data must never be shipped or committed); Pose Trainer =
GPL-3.0, evaluation only here (``trainable=False``: nothing trained on it goes into the package).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realtime.classify.window import normalise
from realtime.errors import DataError
from realtime.types import NUM_JOINTS, OTHER_LABEL

log = logging.getLogger(__name__)

# Penn Action 0-based joint -> COCO-17 (Penn's odd indices are the person's RIGHT side, see its README).
PENN2COCO: dict[int, int] = {0: 0, 1: 6, 2: 5, 3: 8, 4: 7, 5: 10, 6: 9, 7: 12, 8: 11, 9: 14, 10: 13, 11: 16, 12: 15}
PENN_GYM: tuple[str, ...] = ("squat", "pushup", "pullup", "bench_press", "jumping_jacks", "situp",
                             "clean_and_jerk", "jump_rope")
PENN_VISIBLE_SCORE, PENN_HIDDEN_SCORE = 1.0, 0.5  # hand-labelled hidden joints still carry coordinates
# OpenPose COCO-18 -> COCO-17 (neck dropped).
OPENPOSE2COCO: dict[int, int] = {0: 0, 15: 1, 14: 2, 17: 3, 16: 4, 5: 5, 2: 6, 6: 7, 3: 8, 7: 9, 4: 10,
                                 11: 11, 8: 12, 12: 13, 9: 14, 13: 15, 10: 16}


@dataclass
class Sample:
    """One labelled keypoint sequence."""

    id: str
    label: str
    keypoints: np.ndarray  # (T, 17, 3) float32 pixels + score
    group: str  # person / source video / source run: never split across train and test
    source: str = ""  # data set kind (penn, deadlift, pushfit, posetrainer, npz, synthetic)
    split: str | None = None  # official split ("train" / "test") where the data set has one
    fps: float = 30.0
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keypoints)


@dataclass(frozen=True)
class DatasetKind:
    reader: Callable[[Path], list[Sample]]
    licence: str
    trainable: bool  # may a model that goes into the package be trained on it


def _require(path: Path, what: str) -> None:
    if not path.exists():
        raise DataError(f"{what} not found at {path}; pass the data set folder (e.g. ../shared/data/...)")


def read_penn_action(root: str | Path, include_other: bool = True) -> list[Sample]:
    """Penn Action ``labels/*.mat`` (13 hand-labelled joints) -> COCO-17; non-gym actions -> ``other``.

    Eyes/ears do not exist in Penn (score 0); hidden joints keep their labelled position with score 0.5;
    unlabelled joints (placed at the image corner) are missing (score 0).
    ``split`` is the official train/test split; ``group`` is the clip (Penn has no person ids).
    """
    import scipy.io

    root = Path(root)
    index = root / "index.csv"
    _require(index, "Penn Action index.csv")
    out: list[Sample] = []
    with open(index, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        gym = row["action"] in PENN_GYM
        if not gym and not include_other:
            continue
        path = root / row.get("label_file", f"labels/{row['clip_id']}.mat")
        try:
            m = scipy.io.loadmat(path, squeeze_me=True)
            x, y, vis = (np.atleast_2d(np.asarray(m[k], np.float32)) for k in ("x", "y", "visibility"))
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"cannot read Penn Action clip {path}: {exc}; re-copy the file") from None
        if x.shape[1:] != (13,) or y.shape != x.shape:
            raise DataError(f"Penn Action clip {path} has x of shape {x.shape}, expected (T, 13)")
        kp = np.zeros((len(x), NUM_JOINTS, 3), np.float32)
        # Joints nobody annotated sit at the image corner (~(0.75, 0.75), 12.7 % of all values) with
        # visibility 0: those are missing, not hidden.
        unlabelled = (vis <= 0) & (x <= 1.5) & (y <= 1.5)
        for p, c in PENN2COCO.items():
            kp[:, c, 0], kp[:, c, 1] = x[:, p], y[:, p]
            kp[:, c, 2] = np.where(vis[:, p] > 0, PENN_VISIBLE_SCORE, PENN_HIDDEN_SCORE)
            kp[unlabelled[:, p], c] = 0
        out.append(Sample(
            id=f"penn/{row['clip_id']}", label=row["action"] if gym else OTHER_LABEL, keypoints=kp,
            group=f"penn/{row['clip_id']}", source="penn", split=row["split"],
            meta={"action": row["action"], "view": row.get("view", "")},
        ))
    return out


def _read_numeric_csv(path: Path) -> np.ndarray:
    """A CSV of numbers with one header row -> (rows, columns) float64; empty cells are NaN."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    if not rows:
        return np.zeros((0, 0))
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise ValueError("rows have different numbers of columns")
    return np.array([[float(v) if v.strip() else np.nan for v in r] for r in rows], np.float64)


def read_deadlift(root: str | Path) -> list[Sample]:
    """BichraiX deadlift COCO-17 CSVs (YOLO pose, NaN = missing); one group per clip (no person ids)."""
    root = Path(root)
    folder = root / "keypoints_coco17"
    _require(folder, "deadlift keypoints_coco17 folder")
    out = []
    for path in sorted(folder.glob("*_joints_new.csv")):
        try:
            vals = _read_numeric_csv(path)[:, 1:]
        except (OSError, ValueError, csv.Error) as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
        if vals.shape[1] != 2 * NUM_JOINTS:
            raise DataError(f"{path} has {vals.shape[1]} coordinate columns, expected 34 (17 COCO joints x, y)")
        xy = vals.reshape(-1, NUM_JOINTS, 2)
        ok = np.isfinite(xy).all(-1)
        kp = np.zeros((len(xy), NUM_JOINTS, 3), np.float32)
        kp[..., :2] = np.where(ok[..., None], xy, 0)
        kp[..., 2] = ok
        clip = path.name.replace("_joints_new.csv", "")
        out.append(Sample(id=f"deadlift/{clip}", label="deadlift", keypoints=kp, group=f"deadlift/{clip}",
                          source="deadlift", fps=29.97, meta={"form": re.sub(r"\d+$", "", clip)}))
    if not out:
        raise DataError(f"no *_joints_new.csv files in {folder}")
    return out


def _signature(kp: np.ndarray, n: int = 64) -> np.ndarray:
    """Mirror- and scale-invariant motion signature (pair-averaged |x| and y, resampled to n frames)."""
    xy = normalise(kp)[..., :2]
    parts = [xy[:, 0]] + [(xy[:, a] + xy[:, b]) / 2 for a, b in ((5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))]
    f = np.concatenate([np.stack([np.abs(p[:, 0]), p[:, 1]], 1) for p in parts], 1)
    t = np.linspace(0, len(f) - 1, n)
    return np.stack([np.interp(t, np.arange(len(f)), f[:, j]) for j in range(f.shape[1])], 1)


def _union_groups(n: int, links: list[tuple[int, int]]) -> list[int]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in links:
        parent[find(a)] = find(b)
    return [find(i) for i in range(n)]


def _is_number(text: str) -> bool:
    try:
        return np.isfinite(float(text)) and float(text) > 0
    except ValueError:
        return False


def undo_square_letterbox(xy: np.ndarray, width: float, height: float) -> np.ndarray:
    """PushFit's MoveNet pixels are squashed on the frame's short axis: they are coordinates normalised on the frame
    padded to a square, multiplied by the short side (a fit against our pose engine on the 8 matched 1920x1080 clips
    gave y_stored = 0.56..0.60 * y + 204..230, i.e. 1080/1920 * y + 420 * 1080/1920 = 0.5625 * y + 236). Undo that."""
    out = np.array(xy, dtype=np.float32, copy=True)
    long_side, short_side = max(width, height), min(width, height)
    axis = 1 if width >= height else 0
    out[..., axis] = out[..., axis] * long_side / short_side - (long_side - short_side) / 2
    return out


def read_pushfit(root: str | Path, duplicate_threshold: float = 0.025) -> list[Sample]:
    """PushFit MoveNet COCO-17 push-ups. Groups = source runs, merged with near-duplicate copies.

    The clips are numbered in source order; consecutive clips of the same label, resolution and fps come from
    the same source video/uploader (their motion signatures are each other's nearest neighbours), so such a
    run is one group. Mirrored / rescaled near-duplicates anywhere in the set (signature distance below
    ``duplicate_threshold``) are merged into the same group. The stored short-axis squash is undone where
    ``labels.csv`` gives the frame size (``undo_square_letterbox``).
    """
    root = Path(root)
    npz = root / "pushup_movenet_coco17.npz"
    _require(npz, "PushFit pushup_movenet_coco17.npz")
    try:
        z = np.load(npz, allow_pickle=False)
        kps, lengths, names, forms = z["keypoints"], z["lengths"], z["names"], z["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read {npz}: {exc}") from None
    if kps.ndim != 3 or kps.shape[1:] != (NUM_JOINTS, 3) or int(lengths.sum()) != len(kps):
        raise DataError(f"{npz}: keypoints {kps.shape} do not match lengths (sum {int(lengths.sum())})")
    meta: dict[str, tuple] = {}
    labels_csv = root / "labels.csv"
    if labels_csv.exists():
        with open(labels_csv, newline="") as f:
            meta = {r["name"]: (r["label"], r["width"], r["height"], r["fps"]) for r in csv.DictReader(f)}
    off = np.r_[0, np.cumsum(lengths)]
    clips = [np.ascontiguousarray(kps[off[i]:off[i + 1]], np.float32) for i in range(len(names))]
    for name, c in zip(names, clips, strict=True):
        bad = ~np.isfinite(c).all(-1)
        size = meta.get(str(name), ())[1:3]
        if len(size) == 2 and all(_is_number(v) for v in size):
            c[..., :2] = undo_square_letterbox(c[..., :2], float(size[0]), float(size[1]))
        c[bad] = 0
    keys = [meta.get(str(n), (str(f),)) for n, f in zip(names, forms, strict=True)]
    links = [(i, i - 1) for i in range(1, len(clips)) if keys[i] == keys[i - 1]]
    sig = np.stack([_signature(c) for c in clips])
    for i in range(len(clips)):
        d = np.abs(sig[:i] - sig[i]).mean((1, 2))
        links += [(i, int(j)) for j in np.flatnonzero(d < duplicate_threshold)]
    roots = _union_groups(len(clips), links)
    out = []
    for i, (name, form) in enumerate(zip(names, forms, strict=True)):
        fps = float(meta[str(name)][3]) if str(name) in meta and meta[str(name)][3] not in ("", "nan") else 30.0
        out.append(Sample(id=f"pushfit/{name}", label="pushup", keypoints=clips[i], group=f"pushfit/run{roots[i]}",
                          source="pushfit", fps=fps if np.isfinite(fps) else 30.0, meta={"form": str(form)}))
    return out


def read_pose_trainer(root: str | Path) -> list[Sample]:
    """Pose Trainer OpenPose COCO-18 (bicep curl, front raise, shoulder press/shrug) as ``other``; GPL-3.0:
    evaluation only. Group = exercise + form + file (few subjects, no ids)."""
    root = Path(root)
    folder = root / "poses_compressed"
    _require(folder, "Pose Trainer poses_compressed folder")
    out = []
    for path in sorted(folder.glob("*/*.npy")):
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
        if a.ndim != 3 or a.shape[1:] != (18, 3):
            raise DataError(f"{path} has shape {a.shape}, expected (T, 18, 3) OpenPose COCO-18")
        kp = np.zeros((len(a), NUM_JOINTS, 3), np.float32)
        for o, c in OPENPOSE2COCO.items():
            kp[:, c] = a[:, o]
        kp[~np.isfinite(kp).all(-1)] = 0
        kp[kp[..., 2] <= 0] = 0  # OpenPose writes (0, 0, 0) for missing joints
        out.append(Sample(id=f"posetrainer/{path.parent.name}/{path.stem}", label=OTHER_LABEL, keypoints=kp,
                          group=f"posetrainer/{path.parent.name}", source="posetrainer",
                          meta={"exercise": path.parent.name}))
    if not out:
        raise DataError(f"no .npy files under {folder}")
    return out


def _coerce_reconstruction(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim != 3 or arr.shape[1] != NUM_JOINTS or arr.shape[2] not in (2, 3) or len(arr) == 0:
        raise DataError(f"{path}: 'reconstruction' has shape {arr.shape}, expected (T, 17, 2) or (T, 17, 3) "
                        f"COCO-17 keypoints")
    arr = arr.astype(np.float32)
    if arr.shape[2] == 2:
        ok = np.isfinite(arr).all(-1) & ~(arr == 0).all(-1)  # (0, 0) is how missing joints are usually stored
        kp = np.zeros((len(arr), NUM_JOINTS, 3), np.float32)
        kp[..., :2] = np.where(ok[..., None], arr, 0)
        kp[..., 2] = ok
        return kp
    bad = ~np.isfinite(arr).all(-1)
    arr[bad] = 0
    return arr


def read_npz_clip(path: str | Path) -> tuple[np.ndarray, float]:
    """One study-format ``.npz`` (key ``reconstruction``, T x 17 x 2|3) -> ((T, 17, 3) keypoints, fps)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "reconstruction" not in z.files:
                raise DataError(f"{path} has no 'reconstruction' array (keys: {', '.join(z.files)}); "
                                f"write keypoints under that key")
            arr = z["reconstruction"]
            fps = float(z["fps"]) if "fps" in z.files else 30.0
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}; is it a numpy .npz file?") from None
    return _coerce_reconstruction(arr, path), fps


def read_npz_folder(root: str | Path) -> list[Sample]:
    """The study's format: ``root/<class>/*.npz`` with key ``reconstruction`` (T x 17 x 2 or T x 17 x 3).

    Group = the ``group`` column of ``root/manifest.csv`` (written by ``extract``) when present, else the part
    of the file name before ``__`` (name clips ``<person>__<n>.npz`` to keep a person on one side of the
    split), else the file name.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"npz folder {root} not found; expected <folder>/<class>/*.npz")
    groups: dict[str, str] = {}
    manifest = root / "manifest.csv"
    if manifest.exists():
        with open(manifest, newline="") as f:
            groups = {r["npz"]: r["group"] for r in csv.DictReader(f) if r.get("npz") and r.get("group")}
    out = []
    for path in sorted(root.glob("*/*.npz")):
        kp, fps = read_npz_clip(path)
        rel = path.relative_to(root).as_posix()
        group = groups.get(rel) or (path.stem.split("__")[0] if "__" in path.stem else path.stem)
        label = path.parent.name
        out.append(Sample(id=f"npz/{rel}", label=label, keypoints=kp, group=f"npz/{label}/{group}",
                          source="npz", fps=fps))
    if not out:
        raise DataError(f"no .npz files in {root}/<class>/; run `extract` first or check the folder")
    return out


# --- UI-PRMD deep squats (Kinect v2, one rep per file, joints stored parent-relative) -------------------
# Kinect joint order: 0 waist, 1 spine, 2 chest, 3 neck, 4 head, 5 head tip, 6-9 left collar/upper arm/forearm/
# hand, 10-13 right, 14-17 left upper leg/lower leg/foot/toes, 18-21 right.
KINECT_CHAINS = ((0, 1, 2, 3, 4, 5), (2, 6, 7, 8, 9), (2, 10, 11, 12, 13), (0, 14, 15, 16, 17), (0, 18, 19, 20, 21))
# COCO-17 <- Kinect joint (None = no such joint): nose <- head; shoulders <- upper arm joints; ...
KINECT_TO_COCO = (4, None, None, None, None, 7, 11, 8, 12, 9, 13, 14, 18, 15, 19, 16, 20)


def _euler(deg: np.ndarray) -> np.ndarray:
    """Columns (x, y, z) in degrees -> Rz @ Rx @ Ry."""
    x, y, z = np.radians(deg)
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return rz @ rx @ ry


def kinect_forward_kinematics(pos: np.ndarray, ang: np.ndarray) -> np.ndarray:
    """(T, 66) parent-relative positions + (T, 66) Euler angles -> (T, 22, 3) absolute joints (cm, y up).

    joint = R(parent) @ offset + parent, with R(j) = E(j) @ R(parent(j)), E = Rz Rx Ry of the joint's angles.
    The data set does not state its convention and its reference visualisation leaves the feet floating; this one
    was chosen among the 48 Euler-order / composition variants because it keeps the feet on the floor (smallest
    ankle and foot height spread over a correct and an incorrect rep), and the skeletons were drawn and checked.
    """
    out = np.zeros((len(pos), 22, 3))
    for t in range(len(pos)):
        p, a = pos[t].reshape(22, 3), ang[t].reshape(22, 3)
        out[t, 0] = p[0]
        rot = {0: _euler(a[0])}
        for chain in KINECT_CHAINS:
            for k in range(1, len(chain)):
                parent, joint = chain[k - 1], chain[k]
                out[t, joint] = rot[parent] @ p[joint] + out[t, parent]
                rot[joint] = _euler(a[joint]) @ rot[parent]
    return out


def project_kinect(joints: np.ndarray, yaw_deg: float, pitch_deg: float = 0.0, px_per_cm: float = 4.0
                   ) -> np.ndarray:
    """(T, 22, 3) Kinect joints (cm, y up) -> (T, 17, 3) COCO-17 pixels seen by an orthographic camera.

    ``yaw_deg`` turns the camera about the vertical axis (0 = the Kinect's own front view, 90 = side view),
    ``pitch_deg`` looks down from above (positive) or up. The nose is put 9 cm in front of the head joint along
    the direction the feet point (Kinect has no face points); eyes and ears stay missing (the classifier zeroes them).
    """
    j = joints - joints[:, :1].mean(0, keepdims=True)
    feet = (j[:, 17] - j[:, 16] + j[:, 21] - j[:, 20]).mean(0)
    facing = np.array([feet[0], 0.0, feet[2]])
    facing /= np.linalg.norm(facing) + 1e-9
    view = _euler(np.array([pitch_deg, yaw_deg, 0.0]))  # Rx(pitch) @ Ry(yaw)
    cam = j @ view.T
    nose = (j[:, 4] + 9.0 * facing) @ view.T
    kp = np.zeros((len(j), NUM_JOINTS, 3), np.float32)
    for c, k in enumerate(KINECT_TO_COCO):
        if k is None:
            continue
        src = nose if c == 0 else cam[:, k]
        kp[:, c, 0] = 640 + src[:, 0] * px_per_cm
        kp[:, c, 1] = 600 - src[:, 1] * px_per_cm
        kp[:, c, 2] = 1.0
    return kp


def read_ui_prmd(root: str | Path, views_per_rep: int = 3, seed: int = 0) -> list[Sample]:
    """UI-PRMD deep squats (correct and incorrect reps, 10 subjects) -> ``squat`` samples seen from random views.

    Each one-rep Kinect file is rebuilt by forward kinematics and projected ``views_per_rep`` times, with camera
    yaw uniform in [-90, 90] degrees and pitch in [-10, 25] degrees (seeded: the same samples on every run).
    These are bodyweight squats (arms free), which Penn Action's mostly barbell squats lack. Group = subject.
    """
    import gzip

    root = Path(root)
    index = root / "index.csv"
    _require(index, "UI-PRMD index.csv")
    with open(index, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["quantity"] == "positions"]
    rng = np.random.default_rng(seed)
    out = []
    for r in rows:
        pos_file = root / r["file"]
        ang_file = root / r["file"].replace("/positions/", "/angles/").replace("_positions", "_angles")
        try:
            pos = np.loadtxt(gzip.open(pos_file), delimiter=",", ndmin=2)
            ang = np.loadtxt(gzip.open(ang_file), delimiter=",", ndmin=2)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read UI-PRMD {pos_file.name}: {exc}") from None
        if pos.shape != ang.shape or pos.shape[1] != 66:
            raise DataError(f"UI-PRMD {pos_file.name}: positions {pos.shape} / angles {ang.shape}, expected (T, 66)")
        joints = kinect_forward_kinematics(pos, ang)
        stem = pos_file.name.split(".")[0]
        for v in range(views_per_rep):
            yaw, pitch = float(rng.uniform(-90, 90)), float(rng.uniform(-10, 25))
            out.append(Sample(id=f"uiprmd/{stem}/v{v}", label="squat", keypoints=project_kinect(joints, yaw, pitch),
                              group=f"uiprmd/s{int(r['subject']):02d}", source="uiprmd", fps=30.0,
                              meta={"form": r["form"], "yaw": round(yaw, 1), "pitch": round(pitch, 1)}))
    if not out:
        raise DataError(f"no UI-PRMD position files listed in {index}")
    return out


DATASETS: dict[str, DatasetKind] = {
    "penn": DatasetKind(read_penn_action, "Penn Action: no licence stated, research use, cite ICCV'13", True),
    "deadlift": DatasetKind(read_deadlift, "BichraiX deadlift: no licence, third-party footage, internal use; "
                            "data never shipped", True),
    "pushfit": DatasetKind(read_pushfit, "PushFit: no licence (Kaggle sources, one CC BY-NC-SA 4.0), internal use; "
                           "data never shipped", True),
    "uiprmd": DatasetKind(read_ui_prmd, "UI-PRMD: Open Data Commons PDDL 1.0 (data paper), cite Vakanski et al. 2018", True),
    "posetrainer": DatasetKind(read_pose_trainer, "Pose Trainer: GPL-3.0, evaluation only", False),
    "npz": DatasetKind(read_npz_folder, "your own clips (extract output or the study's npz format)", True),
}


def parse_spec(spec: str) -> tuple[str, Path]:
    """``kind=path`` -> (kind, path)."""
    kind, sep, path = spec.partition("=")
    if not sep or kind not in DATASETS or not path:
        raise DataError(f"bad --data {spec!r}; use KIND=PATH with KIND one of {', '.join(DATASETS)}")
    return kind, Path(path)


def load_data(specs: list[str], for_training: bool = False) -> list[Sample]:
    """Read every ``kind=path`` spec; with ``for_training`` refuse data sets that must not train a shipped model."""
    samples: list[Sample] = []
    for spec in specs:
        kind, path = parse_spec(spec)
        if for_training and not DATASETS[kind].trainable:
            raise DataError(f"--data {kind}=... is {DATASETS[kind].licence}; use it with `evaluate`, not `train`")
        got = DATASETS[kind].reader(path)
        log.info("%s: %d sequences from %s", kind, len(got), path)
        samples += got
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise DataError("the same data set was given twice (duplicate sample ids); pass each --data once")
    return samples


def split_samples(samples: list[Sample], val_frac: float = 0.15, test_frac: float = 0.25,
                  seed: int = 0) -> dict[str, list[str]]:
    """Group-wise train/val/test split, stratified by label; official splits are kept.

    Samples with ``split == "test"`` go to test; ``"train"`` ones to train or val (by group); the rest are
    split by group so that ``test_frac`` / ``val_frac`` of each label's groups are held out (at least one
    group each when a label has 3 or more groups). No group ever appears in two splits.
    """
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[Sample]] = {}
    for s in samples:
        by_group.setdefault(s.group, []).append(s)
    assign: dict[str, str] = {}
    pools: dict[tuple[str, str], list[str]] = {}  # (label, allowed) -> groups
    for g, members in sorted(by_group.items()):
        official = {m.split for m in members}
        if official == {"test"}:
            assign[g] = "test"
            continue
        labels = [m.label for m in members]
        label = max(set(labels), key=labels.count)
        allowed = "trainval" if official == {"train"} else "any"
        pools.setdefault((label, allowed), []).append(g)
    for (_label, allowed), groups in sorted(pools.items()):
        groups = list(groups)
        rng.shuffle(groups)
        size = {g: len(by_group[g]) for g in groups}
        total = sum(size.values())
        # Fill test, then val, group by group, up to the wanted share of this label's sequences; a label
        # needs 3+ groups for a test share and 2+ remaining groups for a val share.
        want_test = test_frac * total if allowed == "any" and len(groups) >= 3 else 0.0
        have = {"test": 0, "val": 0}
        for i, g in enumerate(groups):
            left = len(groups) - i
            if have["test"] < want_test and left > 2:
                part = "test"
            elif have["val"] < val_frac * (total - have["test"]) and left > 1 and len(groups) >= 2:
                part = "val"
            else:
                part = "train"
            if part != "train":
                have[part] += size[g]
            assign[g] = part
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for s in samples:
        split[assign[s.group]].append(s.id)
    return split


def subset(samples: list[Sample], ids: list[str] | set[str]) -> list[Sample]:
    keep = set(ids)
    return [s for s in samples if s.id in keep]


# --- synthetic "other": standing still / fidgeting / walking in and out, for the idle class --------------
# Front-view standing skeleton in torso units (shoulder-mid to hip-mid = 1), hips at the origin, y down, the
# person's left on image right; z = towards the person's front (used for limb swing and turning).
_STAND = np.array([
    (0.0, -1.38), (0.06, -1.45), (-0.06, -1.45), (0.13, -1.40), (-0.13, -1.40),
    (0.33, -1.0), (-0.33, -1.0), (0.38, -0.52), (-0.38, -0.52), (0.40, -0.07), (-0.40, -0.07),
    (0.17, 0.0), (-0.17, 0.0), (0.18, 0.82), (-0.18, 0.82), (0.19, 1.62), (-0.19, 1.62),
], np.float64)
_STAND_Z = np.array([0.12, 0.1, 0.1, 0.0, 0.0] + [0.0] * 12, np.float64)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _arm_exercise(rng: np.random.Generator, t: np.ndarray, xy: np.ndarray, z: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Standing upper-body gym moves (curl, front/lateral raise, overhead press) that are not our classes."""
    move = str(rng.choice(["curl", "front_raise", "lateral_raise", "press"]))
    phase = 0.5 - 0.5 * np.cos(2 * np.pi * t / rng.uniform(40, 100) + rng.uniform(0, 6))
    c = np.zeros_like(phase)
    if move == "curl":  # directions as (outward, down, forward)
        a = phase * rng.uniform(1.8, 2.5)
        upper, fore = np.stack([c, c + 1, c], -1), np.stack([c, np.cos(a), np.sin(a)], -1)
    elif move == "front_raise":
        a = phase * rng.uniform(1.3, 1.7)
        upper = fore = np.stack([c, np.cos(a), np.sin(a)], -1)
    elif move == "lateral_raise":
        a = 0.1 + phase * rng.uniform(1.2, 1.6)
        upper = fore = np.stack([np.sin(a), np.cos(a), c], -1)
    else:
        w = phase[:, None]
        upper = _unit((1 - w) * np.array([1.0, 0.15, 0.1]) + w * np.array([0.25, -1.0, 0.0]))
        fore = _unit((1 - w) * np.array([0.0, -1.0, 0.1]) + w * np.array([0.05, -1.0, 0.0]))
    alternate = rng.random() < 0.3
    for side, (sh, el, wr) in enumerate(((5, 7, 9), (6, 8, 10))):
        u, f = upper, fore
        if alternate and side:
            u, f = np.roll(upper, len(t) // 2, 0), np.roll(fore, len(t) // 2, 0)
        out = 1.0 if side == 0 else -1.0  # person's left is +x in the front-view template
        base = xy[:, sh]
        elbow = base + 0.48 * np.stack([out * u[:, 0], u[:, 1]], -1)
        wrist = elbow + 0.45 * np.stack([out * f[:, 0], f[:, 1]], -1)
        xy[:, el], xy[:, wr] = elbow, wrist
        z[:, el], z[:, wr] = 0.48 * u[:, 2], 0.48 * u[:, 2] + 0.45 * f[:, 2]
    return xy, z


def synthetic_other(rng: np.random.Generator, length: int, kind: str | None = None) -> np.ndarray:
    """A (length, 17, 3) pixel sequence of a person standing, fidgeting, turning, walking across/in/out or
    doing a standing arm exercise that is not one of our classes (curl, raise, overhead press).

    Crude kinematics (sinusoidal limb swing), randomised body proportions, yaw, size and position; meant as
    extra negatives for the ``other`` class next to Penn's non-gym clips, not as realistic motion.
    """
    kinds = ("stand", "fidget", "walk_across", "walk_in_out", "arm_exercise")
    kind = kind or str(rng.choice(kinds, p=[0.15, 0.15, 0.15, 0.15, 0.4]))
    t = np.arange(length, dtype=np.float64)
    body = _STAND * rng.uniform(0.85, 1.15, (17, 1)) * np.array([rng.uniform(0.85, 1.2), 1.0])
    base_z = np.broadcast_to(_STAND_Z, (length, 17)).copy()
    xy = np.broadcast_to(body, (length, 17, 2)).copy()
    z = base_z
    yaw = rng.uniform(-np.pi / 2, np.pi / 2) + np.cumsum(rng.normal(0, 0.01, length))
    size = rng.uniform(50, 200)
    centre = np.array([rng.uniform(150, 500), rng.uniform(180, 320)]) + np.zeros((length, 2))
    scale = np.ones(length)
    sway = 0.03 * np.sin(2 * np.pi * t / rng.uniform(60, 150) + rng.uniform(0, 6))
    xy[..., 0] += sway[:, None]
    if kind in ("walk_across", "walk_in_out"):
        period = rng.uniform(28, 40)  # frames per stride (about 1 s at 30 fps)
        ph = 2 * np.pi * t / period + rng.uniform(0, 6)
        s = np.sin(ph)[:, None]
        z = z.copy()
        legs_l, legs_r = [13, 15], [14, 16]
        z[:, legs_l] += s * np.array([0.25, 0.45])
        z[:, legs_r] -= s * np.array([0.25, 0.45])
        z[:, [7, 9]] -= s * np.array([0.15, 0.3])
        z[:, [8, 10]] += s * np.array([0.15, 0.3])
        xy[:, [13, 14], 1] -= 0.05 * np.abs(s)  # knees lift a little
        xy[:, :, 1] -= 0.03 * np.abs(np.sin(ph))[:, None]  # vertical bob
        speed = rng.uniform(0.02, 0.05) * rng.choice([-1, 1])  # torso lengths per frame
        if kind == "walk_across":
            yaw = np.full(length, np.sign(speed) * np.pi / 2 + rng.normal(0, 0.2))
            centre[:, 0] += np.cumsum(np.full(length, speed * size))
        else:
            yaw = np.full(length, (0.0 if speed > 0 else np.pi) + rng.normal(0, 0.3))
            scale = np.exp(np.cumsum(np.full(length, speed * 0.1)))
    elif kind == "fidget":
        for arm in rng.choice([(7, 9), (8, 10)], size=rng.integers(1, 3)):
            el, wr = int(arm[0]), int(arm[1])
            n_moves = rng.integers(1, 4)
            target = np.zeros((length, 2))
            for _ in range(n_moves):
                a, b = sorted(rng.integers(0, length, 2))
                goal = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-1.5, -0.3)])
                ramp = np.clip(np.minimum(t - a, b - t) / 10.0, 0, 1)[:, None]
                target = np.where(ramp > 0, goal * ramp + target * (1 - ramp), target)
            xy[:, wr] += target * (np.abs(target).sum(1, keepdims=True) > 0)
            xy[:, el] += target * 0.5
    elif kind == "arm_exercise":
        xy, z = _arm_exercise(rng, t, xy, z.copy())
    # Project: rotate about the vertical axis, x' = x cos(yaw) + z sin(yaw).
    xs = xy[..., 0] * np.cos(yaw)[:, None] + z * np.sin(yaw)[:, None]
    out = np.zeros((length, 17, 3), np.float32)
    px = np.stack([xs, xy[..., 1]], -1) * (size * scale)[:, None, None] + centre[:, None, :]
    out[..., :2] = px
    out[..., 2] = 1.0
    # Faces seen from behind / the far side of a profile lose eyes/ears, like a real engine would.
    away = np.abs(yaw) > np.pi * 0.6
    out[away, 1:5] = 0
    return out


def synthetic_other_samples(n: int, seed: int = 0, length: tuple[int, int] = (60, 240)) -> list[Sample]:
    rng = np.random.default_rng(seed)
    return [Sample(id=f"synthetic/other{i}", label=OTHER_LABEL, keypoints=synthetic_other(rng, int(rng.integers(*length))),
                   group=f"synthetic/other{i}", source="synthetic") for i in range(n)]
