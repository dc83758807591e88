"""Causal temporal convolutional network (TCN) with per-frame logits, and its incremental streaming form.

Layout: input (N, C_in, T) with C_in = 17 joints x (x, y, score) = 51 and time as the convolution axis;
output (N, num_classes, T): one prediction per frame, each using only the current and past frames.

Receptive field. Every residual block has two dilated causal convolutions of kernel k and dilation d, so
the network sees ``1 + 2 (k - 1) sum(d)`` frames. Dilations double per level (1, 2, 4, ...) and the last one
is clipped so the field stays <= ``max_receptive_field`` (default 150 = the window): with k = 3 and six
levels the dilations are (1, 2, 4, 8, 16, 6) and the field is 149 frames (~5 s at 30 fps).

Because the field is <= the window, the prediction for the newest frame of a stream equals the last output
of the model re-run on just the last 150 frames (zero padding never reaches it). ``StreamingTCN`` produces
exactly that, at O(layers) cost per frame, by keeping for each convolution a ring buffer of its last
(k - 1) d + 1 inputs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def default_dilations(levels: int, kernel_size: int = 3, max_receptive_field: int | None = 150) -> tuple[int, ...]:
    """Doubling dilations, the last ones clipped so that the receptive field stays <= max_receptive_field."""
    dil: list[int] = []
    budget = None if max_receptive_field is None else (max_receptive_field - 1) // (2 * (kernel_size - 1))
    for i in range(levels):
        d = 2**i
        if budget is not None:
            d = min(d, budget - sum(dil))
            if d < 1:
                raise ValueError(f"{levels} levels of kernel {kernel_size} do not fit a receptive field of "
                                 f"{max_receptive_field}; use fewer levels")
        dil.append(d)
    return tuple(dil)


def receptive_field(dilations: tuple[int, ...] | list[int], kernel_size: int) -> int:
    return 1 + 2 * (kernel_size - 1) * int(sum(dilations))


class CausalConv1d(nn.Conv1d):
    """Conv1d that pads on the left only, so output t depends on inputs <= t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left_pad = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left_pad, 0)))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = CausalConv1d(channels, channels, kernel_size, dilation)
        self.conv2 = CausalConv1d(channels, channels, kernel_size, dilation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.relu(self.conv1(x)))
        h = self.drop(F.relu(self.conv2(h)))
        return F.relu(x + h)


class CausalTCN(nn.Module):
    """1x1 input projection -> residual dilated causal blocks -> 1x1 per-frame classifier head."""

    def __init__(
        self,
        in_channels: int = 51,
        num_classes: int = 10,
        channels: int = 64,
        levels: int = 6,
        kernel_size: int = 3,
        dropout: float = 0.1,
        dilations: tuple[int, ...] | list[int] | None = None,
        max_receptive_field: int | None = 150,
    ) -> None:
        super().__init__()
        if kernel_size < 2:
            raise ValueError("kernel_size must be >= 2")
        self.dilations = tuple(int(d) for d in dilations) if dilations else default_dilations(
            levels, kernel_size, max_receptive_field)
        self.in_channels, self.num_classes, self.channels = in_channels, num_classes, channels
        self.kernel_size, self.dropout = kernel_size, dropout
        self.inp = nn.Conv1d(in_channels, channels, 1)
        self.blocks = nn.ModuleList(ResidualBlock(channels, kernel_size, d, dropout) for d in self.dilations)
        self.head = nn.Conv1d(channels, num_classes, 1)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.dilations, self.kernel_size)

    def config(self) -> dict:
        """Constructor arguments; ``CausalTCN(**model.config())`` rebuilds the architecture."""
        return {"in_channels": self.in_channels, "num_classes": self.num_classes, "channels": self.channels,
                "kernel_size": self.kernel_size, "dropout": self.dropout, "dilations": list(self.dilations)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, T) -> per-frame logits (N, num_classes, T)."""
        h = F.relu(self.inp(x))
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Class probabilities (float32) from logits along ``axis``."""
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


class _Ring:
    """Last (k - 1) d + 1 inputs of one convolution; ``taps`` returns them in kernel order, flattened."""

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        self.length = (kernel_size - 1) * dilation + 1
        self.buf = np.zeros((self.length, channels), np.float32)
        # For write position p, tap j (weight index j) reads input t - (k - 1 - j) d.
        offs = (np.arange(kernel_size)[::-1] * dilation)
        self.index = [(p - offs) % self.length for p in range(self.length)]
        self.pos = 0

    def push_taps(self, x: np.ndarray) -> np.ndarray:
        self.buf[self.pos] = x
        taps = self.buf[self.index[self.pos]].reshape(-1)
        self.pos = (self.pos + 1) % self.length
        return taps

    def reset(self) -> None:
        self.buf[:] = 0
        self.pos = 0


def _flat(conv: nn.Conv1d) -> tuple[np.ndarray, np.ndarray]:
    # torch weight (out, in, k) -> (out, k * in) matching the ring's [tap0 inputs, tap1 inputs, ...] layout.
    w = conv.weight.detach().cpu().float().numpy()
    return np.ascontiguousarray(w.transpose(0, 2, 1).reshape(w.shape[0], -1)), conv.bias.detach().cpu().float().numpy()


class StreamingTCN:
    """Frame-by-frame inference of a ``CausalTCN`` (eval mode) with cached activations.

    ``step(x)`` for one (C_in,) frame returns the (num_classes,) logits that ``model(sequence)[..., -1]``
    gives for the whole stream so far (and, because the receptive field is <= the window, for the last
    ``window`` frames alone). Cost per frame: one small matrix-vector product per convolution (numpy).
    """

    def __init__(self, model: CausalTCN) -> None:
        self.model = model
        self.receptive_field = model.receptive_field
        self._w_in, self._b_in = _flat(model.inp)
        self._w_head, self._b_head = _flat(model.head)
        self._layers = []
        for block, d in zip(model.blocks, model.dilations, strict=True):
            w1, b1 = _flat(block.conv1)
            w2, b2 = _flat(block.conv2)
            self._layers.append((w1, b1, _Ring(model.channels, model.kernel_size, d),
                                 w2, b2, _Ring(model.channels, model.kernel_size, d)))
        self.frames = 0

    def reset(self) -> None:
        for layer in self._layers:
            layer[2].reset()
            layer[5].reset()
        self.frames = 0

    def step(self, x: np.ndarray) -> np.ndarray:
        """One input frame (C_in,) -> logits (num_classes,) for it."""
        h = np.maximum(self._w_in @ np.asarray(x, np.float32).reshape(-1) + self._b_in, 0.0)
        for w1, b1, ring1, w2, b2, ring2 in self._layers:
            a = np.maximum(w1 @ ring1.push_taps(h) + b1, 0.0)
            a = np.maximum(w2 @ ring2.push_taps(a) + b2, 0.0)
            h = np.maximum(h + a, 0.0)
        self.frames += 1
        return self._w_head @ h + self._b_head

    def run(self, xs: np.ndarray) -> np.ndarray:
        """(T, C_in) -> (T, num_classes), continuing the current state."""
        return np.stack([self.step(x) for x in xs]) if len(xs) else np.zeros((0, self.model.num_classes), np.float32)


class TCNEnsemble(nn.Module):
    """Several ``CausalTCN`` members with the same inputs and classes; their probabilities are averaged.

    ``forward`` returns the log of the mean probabilities, so everything that applies a softmax to a model's
    output gets the ensemble's mean probabilities back.
    """

    def __init__(self, members: list[CausalTCN]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        if any(m.in_channels != first.in_channels or m.num_classes != first.num_classes for m in members):
            raise ValueError("ensemble members must share their inputs and classes")
        self.members = nn.ModuleList(members)
        self.in_channels, self.num_classes = first.in_channels, first.num_classes

    @property
    def receptive_field(self) -> int:
        return max(m.receptive_field for m in self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([F.softmax(m(x), dim=1) for m in self.members]).mean(0)
        return torch.log(probs.clamp_min(1e-12))


class StreamingEnsemble:
    """``StreamingTCN`` for a ``TCNEnsemble``: ``step`` returns the log of the members' mean probabilities."""

    def __init__(self, model: TCNEnsemble) -> None:
        self.model = model
        self.receptive_field = model.receptive_field
        self._members = [StreamingTCN(m) for m in model.members]

    @property
    def frames(self) -> int:
        return self._members[0].frames

    def reset(self) -> None:
        for m in self._members:
            m.reset()

    def step(self, x: np.ndarray) -> np.ndarray:
        probs = sum(softmax(m.step(x)) for m in self._members) / len(self._members)
        return np.log(np.maximum(probs, 1e-12)).astype(np.float32)


def streaming(model: CausalTCN | TCNEnsemble) -> StreamingTCN | StreamingEnsemble:
    """The frame-by-frame runner for a model or an ensemble."""
    return StreamingEnsemble(model) if isinstance(model, TCNEnsemble) else StreamingTCN(model)
