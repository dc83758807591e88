"""Data readers (real files from ../shared/data when present), npz format errors, leak-free splits."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from realtime.errors import DataError
from realtime.training.datasets import (
    Sample,
    load_data,
    read_deadlift,
    read_npz_folder,
    read_penn_action,
    read_pose_trainer,
    read_pushfit,
    read_ui_prmd,
    split_samples,
    synthetic_other,
    undo_square_letterbox,
)
from realtime.types import OTHER_LABEL

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _need(name: str) -> Path:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def _check_shapes(samples: list[Sample]) -> None:
    for s in samples:
        assert s.keypoints.ndim == 3 and s.keypoints.shape[1:] == (17, 3) and s.keypoints.dtype == np.float32
        assert np.isfinite(s.keypoints).all()
        missing = s.keypoints[..., 2] == 0
        assert np.all(s.keypoints[missing][:, :2] == 0)


def _no_leak(samples: list[Sample], split: dict[str, list[str]]) -> None:
    where: dict[str, set[str]] = {}
    by_id = {s.id: s for s in samples}
    for part, ids in split.items():
        for i in ids:
            where.setdefault(by_id[i].group, set()).add(part)
    assert all(len(parts) == 1 for parts in where.values())
    assert sorted(i for ids in split.values() for i in ids) == sorted(by_id)


def test_penn_action_mapping_and_official_split():
    root = _need("penn_action")
    samples = read_penn_action(root)
    with open(root / "index.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(samples) == len(rows)
    _check_shapes(samples[:200])
    labels = {s.label for s in samples}
    assert {"squat", "pushup", "clean_and_jerk", OTHER_LABEL} <= labels and "deadlift" not in labels
    assert all(np.all(s.keypoints[:, 1:5, 2] == 0) for s in samples)  # Penn has no eyes/ears
    # unlabelled joints sit at the image corner in the .mat files; they must come out as missing
    corner = [((s.keypoints[..., 0] <= 1.5) & (s.keypoints[..., 1] <= 1.5) & (s.keypoints[..., 2] > 0)).sum()
              for s in samples]
    assert sum(corner) == 0
    assert np.mean([(s.keypoints[..., 2] == 0).mean() for s in samples]) > 0.3  # 4 face joints + unlabelled
    # Left/right: facing the camera, the person's LEFT shoulder (COCO 5) is on the image right.
    front = [s for s in samples if s.meta["view"] == "front"]
    right_side = [np.mean(s.keypoints[:, 5, 0] > s.keypoints[:, 6, 0]) > 0.5 for s in front]
    assert np.mean(right_side) > 0.85
    split = split_samples(samples, seed=0)
    _no_leak(samples, split)
    official_test = {s.id for s in samples if s.split == "test"}
    assert set(split["test"]) == official_test


def test_deadlift_csv_missing_values():
    samples = read_deadlift(_need("deadlift_bichraix"))
    assert len(samples) >= 30 and {s.label for s in samples} == {"deadlift"}
    _check_shapes(samples)
    missing = np.mean(np.concatenate([s.keypoints[..., 2].ravel() for s in samples]) == 0)
    assert 0.05 < missing < 0.4  # README: ~20 % of the values are empty cells


def test_pushfit_groups_keep_source_runs_together():
    samples = read_pushfit(_need("pushup_form_pushfit"))
    assert len(samples) == 265 and {s.label for s in samples} == {"pushup"}
    _check_shapes(samples[:50])
    groups = {s.group for s in samples}
    assert 5 < len(groups) < 265
    by_name = {s.id: s for s in samples}
    assert by_name["pushfit/correct1"].group == by_name["pushfit/correct2"].group  # same source run
    split = split_samples(samples, seed=0)
    _no_leak(samples, split)
    assert split["train"] and split["test"]


def test_undo_square_letterbox_inverts_the_stored_squash():
    true_xy = np.array([[[100.0, 0.0], [1800.0, 1080.0], [960.0, 540.0]]])
    stored = true_xy.copy()
    stored[..., 1] = 0.5625 * true_xy[..., 1] + 236.25  # what the PushFit file holds for 1920x1080
    np.testing.assert_allclose(undo_square_letterbox(stored, 1920, 1080), true_xy, atol=1e-3)
    portrait = true_xy[..., ::-1].copy()
    stored_p = portrait.copy()
    stored_p[..., 0] = 0.5625 * portrait[..., 0] + 236.25  # portrait: the squash is on x
    np.testing.assert_allclose(undo_square_letterbox(stored_p, 1080, 1920), portrait, atol=1e-3)


def test_pushfit_reader_unsquashes_known_frame_sizes():
    root = _need("pushup_form_pushfit")
    with open(root / "labels.csv", newline="") as f:
        size = {r["name"]: (float(r["width"]), float(r["height"])) for r in csv.DictReader(f) if r["width"]}
    raw = np.load(root / "pushup_movenet_coco17.npz")
    off = np.r_[0, np.cumsum(raw["lengths"])]
    samples = read_pushfit(root)
    checked = 0
    for i, s in enumerate(samples):
        name = s.id.split("/", 1)[1]
        w, h = size.get(name, (0, 0))
        if w <= h:
            continue
        stored = raw["keypoints"][off[i]:off[i + 1], :, 1]
        seen = s.keypoints[..., 2] > 0
        expect = stored * w / h - (w - h) / 2
        np.testing.assert_allclose(s.keypoints[..., 1][seen], expect[seen], rtol=1e-4, atol=1e-2)
        checked += 1
    assert checked > 200


def test_ui_prmd_squats_from_several_views():
    samples = read_ui_prmd(_need("ui_prmd_deep_squat"), views_per_rep=2)
    assert len(samples) == 400 and {s.label for s in samples} == {"squat"}
    _check_shapes(samples[::40])
    assert len({s.group for s in samples}) == 10  # one group per subject
    again = read_ui_prmd(DATA / "ui_prmd_deep_squat", views_per_rep=2)
    np.testing.assert_array_equal(samples[7].keypoints, again[7].keypoints)  # seeded views
    yaws = [s.meta["yaw"] for s in samples]
    assert min(yaws) < -45 and max(yaws) > 45
    for s in samples[::25]:
        kp = s.keypoints
        assert (kp[:, 1:5, 2] == 0).all() and (kp[:, [0, *range(5, 17)], 2] == 1).all()
        # upright person: head above hips above ankles (image y grows downwards); Kinect loses a leg now and then
        hips = kp[:, [11, 12], 1].mean(1)
        assert (kp[:, 0, 1] < hips).all() and (hips < kp[:, [15, 16], 1].mean(1)).mean() > 0.9
        # a squat: the hips drop by a good share of the leg length during the rep
        leg = np.median(kp[:, [15, 16], 1].mean(1) - hips[:])
        assert hips.max() - hips.min() > 0.3 * leg
    split = split_samples(samples, seed=0)
    _no_leak(samples, split)


def test_pose_trainer_is_other_and_evaluation_only():
    root = _need("pose_trainer")
    samples = read_pose_trainer(root)
    assert len(samples) == 112 and {s.label for s in samples} == {OTHER_LABEL}
    _check_shapes(samples)
    raw = np.load(root / "poses_compressed" / "bicep" / "bicep_good_1.npy")
    s = next(x for x in samples if x.id == "posetrainer/bicep/bicep_good_1")
    ok = raw[:, 5, 2] > 0
    np.testing.assert_allclose(s.keypoints[ok, 5, :2], raw[ok, 5, :2])  # OpenPose l_shoulder -> COCO 5
    with pytest.raises(DataError, match="GPL"):
        load_data([f"posetrainer={root}"], for_training=True)


def _write(path: Path, arr: np.ndarray, key: str = "reconstruction") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{key: arr})


def test_npz_folder_formats_and_groups(tmp_path: Path):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (20, 17, 2)).astype(np.float32)
    xy[3, 4] = 0  # (0, 0) = missing in the 2-channel format
    _write(tmp_path / "squat" / "anna__1.npz", xy)
    _write(tmp_path / "squat" / "anna__2.npz", np.concatenate([xy, np.full((20, 17, 1), 0.7)], -1))
    _write(tmp_path / "snatch" / "bob.npz", xy)
    samples = read_npz_folder(tmp_path)
    assert sorted(s.label for s in samples) == ["snatch", "squat", "squat"]
    _check_shapes(samples)
    two = next(s for s in samples if s.id.endswith("anna__1.npz"))
    assert two.keypoints[3, 4, 2] == 0 and two.keypoints[0, 0, 2] == 1
    anna = {s.group for s in samples if "anna" in s.id}
    assert len(anna) == 1  # <person>__<n>.npz keeps a person together
    # manifest groups win
    (tmp_path / "manifest.csv").write_text("npz,group\nsnatch/bob.npz,carl\n")
    assert next(s for s in read_npz_folder(tmp_path) if "bob" in s.id).group == "npz/snatch/carl"


@pytest.mark.parametrize("arr", [np.zeros((10, 18, 2)), np.zeros((10, 17, 4)), np.zeros((17, 2)),
                                 np.zeros((0, 17, 3))])
def test_npz_bad_shape_is_data_error(tmp_path: Path, arr: np.ndarray):
    _write(tmp_path / "squat" / "x.npz", arr)
    with pytest.raises(DataError, match="expected"):
        read_npz_folder(tmp_path)


def test_npz_missing_key_or_not_npz(tmp_path: Path):
    _write(tmp_path / "squat" / "x.npz", np.zeros((5, 17, 2)), key="keypoints")
    with pytest.raises(DataError, match="reconstruction"):
        read_npz_folder(tmp_path)
    (tmp_path / "squat" / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        read_npz_folder(tmp_path)
    with pytest.raises(DataError, match="not found"):
        read_npz_folder(tmp_path / "nowhere")


def test_bad_spec():
    with pytest.raises(DataError, match="KIND=PATH"):
        load_data(["penn"])
    with pytest.raises(DataError, match="KIND=PATH"):
        load_data(["video=/x"])


def test_split_by_group_never_leaks():
    rng = np.random.default_rng(0)
    samples = []
    for label in ("a", "b", "c"):
        for person in range(int(rng.integers(2, 9))):
            for clip in range(int(rng.integers(1, 5))):
                samples.append(Sample(f"{label}/{person}/{clip}", label, np.zeros((3, 17, 3), np.float32),
                                      group=f"{label}/{person}"))
    for seed in range(5):
        split = split_samples(samples, val_frac=0.2, test_frac=0.3, seed=seed)
        _no_leak(samples, split)
        assert split == split_samples(samples, val_frac=0.2, test_frac=0.3, seed=seed)  # fixed seed
        for label in ("a", "b", "c"):
            assert any(i.startswith(label) for i in split["train"])


def test_synthetic_other_kinds():
    rng = np.random.default_rng(0)
    for kind in ("stand", "fidget", "walk_across", "walk_in_out", "arm_exercise"):
        seq = synthetic_other(rng, 50, kind)
        assert seq.shape == (50, 17, 3) and np.isfinite(seq).all()
        assert (seq[..., 2] > 0).mean() > 0.7
