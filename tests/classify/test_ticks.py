"""The classifier's 30 Hz time base: frames of any rate become the model steps they stand for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from realtime.classify.classifier import IN_CHANNELS, StreamingClassifier, save_checkpoint
from realtime.classify.tcn import CausalTCN
from realtime.classify.ticks import TickClock, step_counts
from realtime.types import OTHER_LABEL


@pytest.mark.parametrize("fps, expected", [(30, 1.0), (29.97, 30 / 29.97), (60, 0.5), (59.94, 30 / 59.94),
                                            (25, 1.2), (24, 1.25), (15, 2.0), (5, 6.0)])
def test_steps_follow_the_clock_at_any_rate(fps, expected):
    counts = step_counts(int(fps * 60), fps)  # one minute
    assert counts[0] == 1
    assert abs(counts[1:].mean() - expected) < 0.01  # the first frame starts the clock: one step
    if fps == 60:  # exactly every other frame, never two in a row or a gap of two
        assert counts.tolist()[:8] == [1, 0, 1, 0, 1, 0, 1, 0]
    if fps == 30:
        assert set(counts.tolist()) == {1}


def test_jitter_gaps_and_restarts():
    clock = TickClock()
    rng = np.random.default_rng(0)
    t = np.arange(300) / 30 + rng.uniform(-0.01, 0.01, 300)  # a webcam's timestamps jitter by ±1/3 frame
    assert [clock.steps(x) for x in t] == [1] * 300
    assert clock.steps(t[-1] + 10.0) == 30  # a stalled feed is held for 1 s, not replayed for 10
    assert clock.steps(0.0) == 1  # the clock went back (a restarted stream): start again
    assert clock.steps(1 / 30) == 1
    with pytest.raises(ValueError):
        clock.steps(float("nan"))


def _stream(n: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    base = rng.uniform(100, 300, (17, 2))
    kp = np.zeros((n, 17, 3), np.float32)
    for i in range(n):
        kp[i, :, :2] = base + 30 * np.sin(i / 9 + np.arange(17))[:, None]
        kp[i, :, 2] = 0.9
    return kp


@pytest.fixture()
def clf(tmp_path: Path) -> StreamingClassifier:
    torch.manual_seed(0)
    model = CausalTCN(IN_CHANNELS, 3, channels=16, levels=6)
    return StreamingClassifier.load(save_checkpoint(model, ("squat", "pushup", OTHER_LABEL), {}, tmp_path / "m.safetensors"))


def test_60fps_source_sees_what_a_30fps_source_sees(clf: StreamingClassifier):
    """The same movement filmed at 60 fps: every other frame updates the model, the rest repeat its answer."""
    at30 = _stream(120)
    ref = [clf.push(k, i / 30).probs for i, k in enumerate(at30)]
    clf.reset()
    at60 = np.repeat(at30, 2, axis=0)  # each 30 fps pose twice (the 60 fps frames between)
    out = [clf.push(k, i / 60) for i, k in enumerate(at60)]
    np.testing.assert_allclose(np.stack([p.probs for p in out[::2]]), np.stack(ref), atol=1e-6)
    assert all(out[i] is out[i - 1] for i in range(1, 240, 2))
    assert clf.frames == 120


def test_slow_source_holds_each_frame_and_batch_form_matches(clf: StreamingClassifier):
    """A pose engine that keeps up with 10 fps: each frame is held for 3 steps; predict_sequence(fps=) agrees."""
    at10 = _stream(50)
    live = np.stack([clf.push(k, i / 10).probs for i, k in enumerate(at10)])
    assert clf.frames == 1 + 3 * 49
    held = np.concatenate([at10[:1], np.repeat(at10[1:], 3, axis=0)])
    clf.reset()
    steps = np.stack([clf.push(k).probs for k in held])  # no t: one step per call
    np.testing.assert_allclose(live, steps[[0] + [3 * i for i in range(1, 50)]], atol=1e-6)
    np.testing.assert_allclose(live, clf.predict_sequence(at10, fps=10), atol=1e-5)
