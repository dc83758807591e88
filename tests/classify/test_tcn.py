"""Causal TCN: receptive field, causality and exact incremental streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from realtime.classify.tcn import CausalTCN, StreamingTCN, default_dilations, receptive_field


def _model(seed: int = 0, **kw) -> CausalTCN:
    torch.manual_seed(seed)
    return CausalTCN(**{"num_classes": 10, **kw}).eval()


def _full(model: CausalTCN, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x.T[None].copy()))[0].numpy().T


def test_default_receptive_field_fits_the_window():
    m = _model()
    assert m.dilations == (1, 2, 4, 8, 16, 6)
    assert m.receptive_field == 149 == receptive_field(m.dilations, 3)
    assert default_dilations(5) == (1, 2, 4, 8, 16)
    with pytest.raises(ValueError):
        default_dilations(40)


def test_output_shape_and_causality():
    m = _model()
    x = torch.randn(2, 51, 60)
    y = m(x)
    assert y.shape == (2, 10, 60)
    x2 = x.clone()
    x2[:, :, 40:] = torch.randn(2, 51, 20)  # change the future only
    with torch.no_grad():
        np.testing.assert_allclose(m(x2)[..., :40].numpy(), y[..., :40].detach().numpy(), atol=1e-6)


def test_receptive_field_is_exact():
    m = _model()
    with torch.no_grad():  # positive weights and inputs keep every ReLU open, so every path carries gradient
        for p in m.parameters():
            p.abs_().mul_(0.1)
    x = torch.rand(1, 51, 200, requires_grad=True)
    m(x)[0, 0, -1].backward()
    reach = (x.grad[0].abs().sum(0) > 0).nonzero().flatten()
    assert reach.min().item() == 200 - m.receptive_field and reach.max().item() == 199


def test_streaming_equals_full_sequence_and_last_window():
    m = _model(1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(420, 51)).astype(np.float32)
    stream = StreamingTCN(m)
    online = stream.run(x)
    np.testing.assert_allclose(online, _full(m, x), atol=1e-5)
    # Window-150 semantics: re-running the model on only the last 150 frames gives the same newest output,
    # because the receptive field (149) fits inside the window.
    for t in (150, 151, 223, 300, 419):
        last = _full(m, x[t - 149:t + 1])[-1]
        np.testing.assert_allclose(online[t], last, atol=1e-5)
    # ... which would not hold for a model whose field is larger than the window
    big = _model(2, dilations=(1, 2, 4, 8, 16, 32))
    assert big.receptive_field > 150
    ref = StreamingTCN(big).run(x)
    assert not np.allclose(ref[300], _full(big, x[151:301])[-1], atol=1e-5)


def test_streaming_reset_and_other_configs():
    m = _model(3, channels=16, kernel_size=4, levels=4, num_classes=3)
    x = np.random.default_rng(1).normal(size=(90, 51)).astype(np.float32)
    s = StreamingTCN(m)
    s.run(x[:50])
    s.reset()
    np.testing.assert_allclose(s.run(x), _full(m, x), atol=1e-5)
    assert s.frames == 90
