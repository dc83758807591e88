"""StreamingClassifier: checkpoint round trip, refusal of bad checkpoints, streaming == full window, speed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from realtime.classify.classifier import (
    DEFAULT_WEIGHTS,
    IN_CHANNELS,
    StreamingClassifier,
    load,
    load_model,
    save_checkpoint,
)
from realtime.classify.tcn import CausalTCN
from realtime.errors import WeightsError
from realtime.types import EXERCISES, OTHER_LABEL, Prediction

CLASSES = ("squat", "pushup", "snatch", OTHER_LABEL)


def _random_stream(t: int, seed: int = 0) -> list[np.ndarray | None]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(100, 300, (17, 2))
    frames: list[np.ndarray | None] = []
    for i in range(t):
        kp = np.zeros((17, 3), np.float32)
        kp[:, :2] = base + 20 * np.sin(i / 7 + np.arange(17))[:, None] + rng.normal(0, 2, (17, 2))
        kp[:, 2] = rng.uniform(0.1, 1.0, 17)
        frames.append(None if i % 37 == 5 else kp)
    return frames


@pytest.fixture()
def ckpt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = CausalTCN(IN_CHANNELS, len(CLASSES), channels=24, levels=6)
    return save_checkpoint(model, CLASSES, {"training": {"note": "random weights"}}, tmp_path / "m.safetensors")


def test_round_trip_and_prediction(ckpt: Path):
    clf = load(str(ckpt))
    assert clf.classes == CLASSES
    assert clf.metadata["architecture"]["channels"] == 24 and clf.receptive_field == 149
    pred = clf.push(_random_stream(1)[0])
    assert isinstance(pred, Prediction) and pred.label in CLASSES and pred.classes == CLASSES
    assert pred.probs.shape == (4,) and pred.probs.dtype == np.float32
    assert abs(float(pred.probs.sum()) - 1) < 1e-5 and 0 <= pred.confidence <= 1
    assert clf.push(None).probs.shape == (4,)
    with pytest.raises(ValueError):
        clf.push(np.zeros((18, 3)))


def test_streaming_equals_full_sequence_and_window(ckpt: Path):
    clf = StreamingClassifier.load(ckpt)
    frames = _random_stream(400, seed=1)
    probs = []
    for i, f in enumerate(frames):
        probs.append(clf.push(f).probs)
        if i in (10, 149, 150, 257, 399):
            # re-running the model over the last 150 (normalised) frames gives the same newest output
            np.testing.assert_allclose(clf.window_probs(), probs[-1], atol=1e-5)
    seq = np.stack([np.zeros((17, 3), np.float32) if f is None else f for f in frames])
    np.testing.assert_allclose(np.stack(probs), clf.predict_sequence(seq), atol=1e-5)
    clf.reset()
    assert clf.frames == 0
    np.testing.assert_allclose(clf.push(frames[0]).probs, probs[0], atol=1e-6)


def test_display_smoothing_keeps_model_probs(ckpt: Path):
    clf = load(ckpt)
    raw = StreamingClassifier.load(ckpt, smoothing=1.0, margin=0.0)  # no smoothing: label = argmax
    for f in _random_stream(60, seed=2):
        a, b = clf.push(f), raw.push(f)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
        assert b.label == CLASSES[int(np.argmax(b.probs))]


def test_missing_file_is_weights_error(tmp_path: Path):
    with pytest.raises(WeightsError, match="not found"):
        load(str(tmp_path / "nope.safetensors"))


def test_corrupt_file_is_weights_error(ckpt: Path):
    ckpt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightsError, match="corrupt"):
        load(ckpt)


def test_missing_or_bad_metadata(ckpt: Path):
    meta = ckpt.with_suffix(".json")
    meta.write_text("{not json")
    with pytest.raises(WeightsError, match="unreadable"):
        load(ckpt)
    meta.unlink()
    with pytest.raises(WeightsError, match="missing"):
        load(ckpt)


def test_classes_not_matching_weights(ckpt: Path):
    meta_path = ckpt.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["classes"] = ["squat", "pushup", "deadlift", OTHER_LABEL]  # same count, different names
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="trained for classes"):
        load(ckpt)
    meta["classes"] = ["squat", OTHER_LABEL]  # wrong count for the architecture
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="does not match"):
        load(ckpt)


def test_wrong_architecture(ckpt: Path):
    meta_path = ckpt.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["architecture"]["channels"] = 32
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="does not match the architecture"):
        load(ckpt)
    meta["architecture"]["type"] = "LSTM"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="not CausalTCN"):
        load(ckpt)


def test_pt_state_dict_loads_without_pickle(ckpt: Path, tmp_path: Path):
    model, meta = load_model(ckpt)
    pt = tmp_path / "m2.pt"
    torch.save(model.state_dict(), pt)
    pt.with_suffix(".json").write_text(ckpt.with_suffix(".json").read_text())
    again, _ = load_model(pt)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    torch.save({"not": "tensors"}, pt)
    with pytest.raises(WeightsError):
        load_model(pt)


@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="shipped checkpoint not present")
def test_shipped_checkpoint_loads_and_streams():
    """The shipped model's metadata is complete and its streaming step equals its full-window forward.

    Its per-frame cost is measured by ``run_live.py --bench`` (the "classifier" stage), not asserted here.
    """
    clf = load()
    assert clf.classes[-1] == OTHER_LABEL
    assert set(clf.classes[:-1]) <= set(EXERCISES)
    assert clf.receptive_field <= clf.window_length
    meta = clf.metadata
    for key in ("classes", "architecture", "normalisation", "joint_layout", "window_length", "training", "metrics"):
        assert key in meta
    assert not any(d["kind"] == "posetrainer" for d in meta["training"]["data"])  # GPL data never trains it
    frames = _random_stream(300, seed=3)
    for f in frames:
        out = clf.push(f)
    assert out.probs.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(clf.window_probs(), out.probs, atol=1e-5)


def test_ensemble_averages_its_members_live_and_in_batch(tmp_path: Path):
    from realtime.classify.tcn import TCNEnsemble
    from realtime.training.train import main as train_main

    torch.manual_seed(1)
    a = save_checkpoint(CausalTCN(IN_CHANNELS, len(CLASSES), channels=16, levels=6), CLASSES, {}, tmp_path / "a.safetensors")
    b = save_checkpoint(CausalTCN(IN_CHANNELS, len(CLASSES), channels=24, levels=6), CLASSES, {}, tmp_path / "b.safetensors")
    assert train_main(["ensemble", str(a), str(b)]) == 0
    model, meta = load_model(a)
    assert isinstance(model, TCNEnsemble) and len(model.members) == 2 and meta["ensemble"] == ["b.safetensors"]
    frames = _random_stream(200, seed=4)
    seq = np.stack([np.zeros((17, 3), np.float32) if f is None else f for f in frames])
    alone = [StreamingClassifier(load_model(p, members=False)[0], meta, gate=False).predict_sequence(seq) for p in (a, b)]
    ens = StreamingClassifier.load(a, gate=False)
    live = np.stack([ens.push(f).probs for f in frames])
    np.testing.assert_allclose(live, (alone[0] + alone[1]) / 2, atol=1e-5)
    np.testing.assert_allclose(ens.predict_sequence(seq), live, atol=1e-5)
    np.testing.assert_allclose(ens.window_probs(), live[-1], atol=1e-5)
    assert train_main(["ensemble", str(a)]) == 0  # no members: back to one model
    assert isinstance(load_model(a)[0], CausalTCN)


def test_ensemble_member_with_other_classes_is_refused_and_nothing_changes(tmp_path: Path):
    from realtime.training.train import main as train_main

    a = save_checkpoint(CausalTCN(IN_CHANNELS, 4, channels=16, levels=6), CLASSES, {}, tmp_path / "a.safetensors")
    c = save_checkpoint(CausalTCN(IN_CHANNELS, 3, channels=16, levels=6), ("squat", "pushup", OTHER_LABEL), {},
                        tmp_path / "c.safetensors")
    before = a.with_suffix(".json").read_text()
    assert train_main(["ensemble", str(a), str(c)]) == 2
    assert a.with_suffix(".json").read_text() == before


def test_shipped_classifier_is_an_ensemble_of_two():
    model, meta = load_model()
    assert len(model.members) == 2 and meta["ensemble"] == ["classifier_shallow.safetensors"]


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_checkpoint_files_honour_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        path = save_checkpoint(CausalTCN(IN_CHANNELS, len(CLASSES), channels=8, levels=2), CLASSES, {},
                               tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    want = 0o666 & ~mask  # safetensors alone writes 0600 whatever the umask
    assert stat.S_IMODE(path.stat().st_mode) == want
    assert stat.S_IMODE(path.with_suffix(".json").stat().st_mode) == want
