"""Training / evaluation / extraction end to end on small synthetic data (incl. a new "snatch" class)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ffmpeg_upright, white_corner, write_video

from realtime.classify.classifier import IN_CHANNELS, load
from realtime.training import augment
from realtime.training.datasets import Sample, read_npz_folder, split_samples, subset
from realtime.training.train import (
    SequenceSampler,
    TrainConfig,
    add_parsers,
    class_order,
    iter_video,
    main,
    run_eval,
    split_warning,
    summarise,
    train_model,
)
from realtime.types import OTHER_LABEL, PoseResult

_BASE = np.array([
    (0, -1.4), (0.06, -1.45), (-0.06, -1.45), (0.13, -1.4), (-0.13, -1.4), (0.33, -1), (-0.33, -1),
    (0.38, -0.5), (-0.38, -0.5), (0.4, -0.07), (-0.4, -0.07), (0.17, 0), (-0.17, 0), (0.18, 0.82),
    (-0.18, 0.82), (0.19, 1.62), (-0.19, 1.62)], np.float32)


def _clip(kind: str, rng: np.random.Generator, t: int) -> np.ndarray:
    """Squat-like (hips go down) or snatch-like (bar from the shins to overhead, deep catch) pixel keypoints."""
    ph = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(t) / rng.uniform(35, 60) + rng.uniform(0, 6))
    xy = np.broadcast_to(_BASE, (t, 17, 2)).copy()
    if kind == "squat":
        xy[:, :13, 1] += 0.7 * ph[:, None]
        xy[:, 13:15, 0] *= 1 + ph[:, None]
        xy[:, 7:11, 1] -= 0.4 * ph[:, None]  # arms forward
    else:  # bar from the shins to overhead, caught in a deep squat, then stand up
        lift = np.clip(2 * ph - 0.6, 0, 1)
        dip = 0.8 * np.sin(np.pi * ph)
        xy[:, :13, 1] += dip[:, None]
        xy[:, 13:15, 0] *= 1 + dip[:, None]
        xy[:, 9:11, 1] = 0.6 + dip[:, None] - 3.0 * lift[:, None]
        xy[:, 7:9, 1] = 0.1 + dip[:, None] - 1.6 * lift[:, None]
    size, centre = rng.uniform(60, 150), rng.uniform(150, 400, 2)
    kp = np.zeros((t, 17, 3), np.float32)
    kp[..., :2] = xy * size + centre + rng.normal(0, 0.02 * size, (t, 17, 2))
    kp[..., 2] = rng.uniform(0.5, 1.0, (t, 17))
    return kp


def _samples(seed: int = 0, people: int = 6, clips: int = 3) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for kind in ("squat", "snatch"):
        for p in range(people):
            for c in range(clips):
                out.append(Sample(f"{kind}/p{p}_{c}", kind, _clip(kind, rng, int(rng.integers(40, 160))),
                                  group=f"{kind}/p{p}"))
    return out


def _write_npz(root: Path, samples: list[Sample]) -> None:
    for s in samples:
        kind, name = s.id.split("/")
        person, clip = name.split("_")
        path = root / kind / f"{person}__{clip}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, reconstruction=s.keypoints)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 200, "batch_size": 16, "channels": 32, "levels": 5, "max_len": 96,
                          "eval_every": 100, "workers": 0, "threads": 1, "lr": 1e-2, **kw})


def test_synthetic_snatch_class_reaches_high_accuracy():
    samples = _samples()
    split = split_samples(samples, val_frac=0.2, test_frac=0.3, seed=0)
    train, val, test = (subset(samples, split[k]) for k in ("train", "val", "test"))
    classes = class_order({"squat", "snatch", OTHER_LABEL})
    assert classes == ("squat", "snatch", OTHER_LABEL)
    model, hist = train_model(train, val, classes, _cfg())
    assert hist["history"][-1]["step"] == 200
    s = summarise(run_eval(model, {"classes": classes}, test), classes)
    assert s["clips"] == len(test) and s["clip_accuracy"] >= 0.9, s["clip_accuracy"]
    assert s["frame_accuracy"] >= 0.75


def test_untrained_model_is_not_accurate():
    """The accuracy test above can fail: a model with no training steps is near chance on the same data."""
    samples = _samples()
    classes = ("squat", "snatch", OTHER_LABEL)
    model, _ = train_model(samples, [], classes, _cfg(steps=1, eval_every=1, lr=1e-9))
    s = summarise(run_eval(model, {"classes": classes}, samples), classes)
    assert s["clip_accuracy"] < 0.8


def test_sampler_labels_and_padding():
    samples = _samples(people=2, clips=1)
    classes = ("squat", "snatch", OTHER_LABEL)
    sampler = SequenceSampler(samples, classes, _cfg(p_prefix=1.0, p_suffix=0.0), np.random.default_rng(0))
    for _ in range(20):
        x, y = sampler.draw()
        assert x.shape == (len(y), IN_CHANNELS) and np.isfinite(x).all()
        if y[-1] != 2:  # an exercise sequence: "other" prefix first, then the exercise
            assert y[0] == 2 and set(np.unique(y)) == {2, int(y[-1])}
    xb, yb = sampler.batch(8)
    assert xb.shape[:2] == (8, IN_CHANNELS) and yb.shape == (8, xb.shape[2])
    assert (yb == -100).any() or len({int((yb[i] >= 0).sum()) for i in range(8)}) == 1


def test_cli_train_save_load_evaluate(tmp_path: Path):
    data = tmp_path / "clips"
    _write_npz(data, _samples(seed=1, people=4, clips=2))
    out = tmp_path / "model" / "clf.safetensors"
    rc = main(["train", "--data", f"npz={data}", "--out", str(out), "--steps", "12", "--channels", "16",
               "--levels", "3", "--eval-every", "6", "--workers", "0", "--report", str(tmp_path / "rep")])
    assert rc == 0
    split = json.loads(out.with_name("clf.split.json").read_text())["splits"]
    groups = {s.id: s.group for s in read_npz_folder(data)}
    parts = {}
    for part, ids in split.items():
        for i in ids:
            parts.setdefault(groups[i], set()).add(part)
    assert all(len(p) == 1 for p in parts.values()) and split["test"]
    clf = load(str(out))
    assert clf.classes == ("squat", "snatch", OTHER_LABEL)
    assert clf.metadata["training"]["data"][0]["kind"] == "npz" and "test" in clf.metadata["metrics"]
    assert clf.push(_clip("snatch", np.random.default_rng(0), 1)[0]).label in clf.classes
    rep = tmp_path / "eval"
    assert main(["evaluate", "--model", str(out), "--data", f"npz={data}", "--out", str(rep)]) == 0
    for name in ("report.md", "report.json", "confusion_npz.png", "streaming.png", "misclassified.csv"):
        assert (rep / name).stat().st_size > 0
    summary = json.loads((rep / "report.json").read_text())["summaries"]["npz"]
    assert summary["clips"] == len(split["test"])
    assert "precision" in next(iter(summary["per_class"].values()))
    assert "Plausibility rules on" in (rep / "report.md").read_text()
    assert json.loads((rep / "report.json").read_text())["model"]["plausibility_rules"] is True
    plain = tmp_path / "eval_plain"
    assert main(["evaluate", "--model", str(out), "--data", f"npz={data}", "--out", str(plain), "--no-gate"]) == 0
    assert "plausibility rules off" in (plain / "report.md").read_text()
    # the second member's recipe: shallow squats and counterbalance arms, recorded with the weights
    second = tmp_path / "model" / "clf_shallow.safetensors"
    assert main(["train", "--data", f"npz={data}", "--out", str(second), "--steps", "4", "--channels", "16",
                 "--levels", "3", "--eval-every", "4", "--workers", "0", "--shallow-squats"]) == 0
    config = json.loads(second.with_suffix(".json").read_text())["training"]["config"]
    assert config["p_squat_depth"] == 0.4 and config["squat_counterbalance"] is True
    assert json.loads(out.with_suffix(".json").read_text())["training"]["config"]["p_squat_depth"] == 0.0


def test_cli_errors_exit_2(tmp_path: Path, capsys):
    assert main(["train", "--data", f"npz={tmp_path / 'missing'}", "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "none.safetensors"), "--data", f"npz={tmp_path}"]) == 2
    only_one = tmp_path / "one"
    _write_npz(only_one, [s for s in _samples(people=2, clips=1) if s.label == "squat"])
    assert main(["train", "--data", f"npz={only_one}", "--no-synthetic-other", "--out",
                 str(tmp_path / "m.safetensors")]) == 2
    assert "two classes" in capsys.readouterr().err


class _FakeEstimator:
    name = "fake"

    def __init__(self) -> None:
        self.calls = 0
        self.shapes: list[tuple[int, ...]] = []

    def estimate(self, image: np.ndarray) -> PoseResult:
        self.calls += 1
        self.shapes.append(image.shape)
        if self.calls % 4 == 0:
            return PoseResult(keypoints=None)
        kp = np.zeros((17, 3), np.float32)
        kp[:, :2] = float(image.mean())
        kp[:, 2] = 0.9
        return PoseResult(keypoints=kp)

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_train_and_extract_help_document_every_option_with_its_default():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_parsers(sub)
    for name in ("train", "evaluate", "extract"):
        p = sub.choices[name]
        undocumented = [a.option_strings or a.dest for a in p._actions if a.dest != "help" and not a.help]
        assert not undocumented, f"{name}: {undocumented}"
    assert "(default: 3000)" in sub.choices["train"].format_help()  # --steps
    assert "(default: 0.15)" in sub.choices["train"].format_help()  # --val-frac
    assert "(default: auto)" in sub.choices["extract"].format_help()  # --pose-model, --backend


def test_split_warning_names_the_empty_and_small_splits():
    samples = _samples(people=1, clips=1)
    split = split_samples(samples, 0.15, 0.25, 0)
    train, val, test = (subset(samples, split[k]) for k in ("train", "val", "test"))
    text = split_warning(train, val, test, 0.15, 0.25)
    assert text and "\n" not in text and "test is empty" in text and "val is empty" in text
    assert "squat 1" in text and "snatch 1" in text
    samples = _samples(people=6, clips=3)
    split = split_samples(samples, 0.15, 0.25, 0)
    assert split_warning(*(subset(samples, split[k]) for k in ("train", "val", "test")), 0.15, 0.25) is None


def test_train_on_two_clips_warns_once_on_stderr(tmp_path: Path, capsys):
    data = tmp_path / "clips"
    _write_npz(data, _samples(seed=1, people=1, clips=1))  # one squat clip, one snatch clip
    rc = main(["train", "--data", f"npz={data}", "--out", str(tmp_path / "m.safetensors"), "--steps", "2",
               "--channels", "8", "--levels", "2", "--eval-every", "1", "--workers", "0"])
    assert rc == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if "too little data" in line]
    assert len(lines) == 1 and lines[0].startswith("WARNING") and "test is empty" in lines[0]
    assert "too little data" not in captured.out and "split by group: train 2" in captured.out


def test_extract_with_fake_estimator(tmp_path: Path, monkeypatch):
    import realtime.pose

    write_video(tmp_path / "videos" / "snatch" / "anna__1.mp4", 8, (64, 48), 25, codec="mpeg4", step=10)
    write_video(tmp_path / "videos" / "squat" / "bob.mp4", 5, (64, 48), 25, codec="mpeg4", step=10)
    (tmp_path / "videos" / "squat" / "notes.txt").write_text("not a video")
    fake = _FakeEstimator()
    monkeypatch.setattr(realtime.pose, "create_pose_estimator", lambda *a, **k: (fake, "test"))
    out = tmp_path / "npz"
    assert main(["extract", str(tmp_path / "videos"), str(out)]) == 0
    assert fake.calls == 13 and fake.shapes[0] == (48, 64, 3)
    samples = {s.id: s for s in read_npz_folder(out)}
    anna = samples["npz/snatch/anna__1.npz"]
    assert anna.keypoints.shape == (8, 17, 3) and anna.group == "npz/snatch/anna"
    assert np.all(anna.keypoints[3] == 0) and np.all(anna.keypoints[0, :, 2] > 0)  # None -> empty frame
    with np.load(out / "snatch" / "anna__1.npz") as z:
        assert abs(float(z["fps"]) - 25) < 0.01
    manifest = (out / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 3 and manifest[0].startswith("npz,class,video,frames")


@pytest.mark.parametrize("rotate", [90, 270])
def test_iter_video_honours_rotation(tmp_path: Path, rotate: int):
    src = write_video(tmp_path / "src.mp4", 3, (64, 32), 25, codec="mpeg4", pattern="corner")
    rot = write_video(tmp_path / "rot.mp4", 3, (64, 32), 25, codec="mpeg4", pattern="corner", rotate=rotate)
    frames = [f for f, _ in iter_video(rot)]
    reference = ffmpeg_upright(rot)
    assert len(frames) == 3 and frames[0].shape == reference.shape == (64, 32, 3)  # displayed upright (portrait)
    assert white_corner(frames[0]) == white_corner(reference)  # turned the way ffmpeg turns it
    assert [f.shape for f, _ in iter_video(src)][0] == (32, 64, 3)


def test_augmentations_keep_shape_and_meaning():
    rng = np.random.default_rng(0)
    kp = _clip("squat", rng, 60)
    m = augment.mirror(kp)
    np.testing.assert_allclose(augment.mirror(m), kp, atol=1e-3)
    np.testing.assert_array_equal(m[:, 10, 1], kp[:, 9, 1])  # the mirrored left wrist is a right wrist
    assert np.mean(m[:, 5, 0] > m[:, 6, 0]) > 0.9  # a front view stays a front view (left on image right)
    assert len(augment.time_warp(kp, 0.5)) == 120 and len(augment.time_warp(kp, 1.5)) == 40
    dropped = augment.drop_frames(kp, rng, 0.2)
    assert (dropped[..., 2].sum(1) == 0).any()
    aug = augment.Augmenter()
    for _ in range(20):
        a = aug(kp, rng)
        assert a.ndim == 3 and a.shape[1:] == (17, 3) and np.isfinite(a).all()
        assert 60 / 1.5 <= len(a) <= 60 / 0.65
        assert np.all(a[a[..., 2] == 0][:, :2] == 0)


def test_real_body_edits():
    rng = np.random.default_rng(1)
    kp = _clip("squat", rng, 50)
    held = augment.hold(kp[0], 40, rng)
    assert held.shape == (40, 17, 3) and np.abs(held[:, :, :2] - kp[0, :, :2]).max() < 0.3 * augment.body_size(kp)
    re = augment.squat_arms(kp, rng)
    np.testing.assert_array_equal(re[:, 11:], kp[:, 11:])  # hips and legs untouched
    assert not np.allclose(re[:, 7:11, :2], kp[:, 7:11, :2])
    # shallower squats: the standing frame stays, the hips travel 30-80 % as far
    shallow = augment.squat_depth(kp, rng)
    hips, hips_shallow = kp[:, 11:13, 1].mean(1), shallow[:, 11:13, 1].mean(1)
    top = int(np.argmin(hips))
    np.testing.assert_allclose(shallow[top], kp[top], atol=1e-4)
    assert 0.25 < np.ptp(hips_shallow) / np.ptp(hips) < 0.85
    # counterbalance arms: hanging at the top of the rep, raised towards the shoulders at the bottom
    for _ in range(40):  # the pose is drawn at random; counterbalance is one of seven
        cb = augment.squat_arms(kp, rng, counterbalance=True)
        bottom = int(np.argmax(hips))
        wrist_below_shoulder = cb[:, 9:11, 1].mean(1) - cb[:, 5:7, 1].mean(1)
        if wrist_below_shoulder[top] - wrist_below_shoulder[bottom] > 0.5 * augment.body_size(kp):
            break
    else:
        raise AssertionError("no counterbalance arms in 40 draws")
    arms = augment.animate_arms(kp[0], 60, rng)
    assert arms is not None and arms.shape == (60, 17, 3)
    assert np.ptp(arms[:, 9:11, :2], axis=0).max() > 0.3 * augment.body_size(kp)  # the hands move
    lying = kp[0].copy()
    lying[:, :2] = kp[0][:, [1, 0]]  # swap x and y: the torso is horizontal
    assert augment.animate_arms(lying, 30, rng) is None
