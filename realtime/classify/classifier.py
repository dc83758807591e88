"""Live exercise classifier: COCO-17 keypoints in, one ``Prediction`` per frame out.

``StreamingClassifier.load()`` reads the shipped checkpoint (``realtime/models/classifier.safetensors`` and its
``classifier.json`` metadata, which names a second network: the shipped classifier is an ensemble of two whose
probabilities are averaged); ``push(keypoints, t)`` puts the frame on the model's 30 Hz time base
(``realtime.classify.ticks``), normalises it causally (``realtime.classify.window``), runs one incremental step of each causal TCN
(``realtime.classify.tcn.StreamingTCN``, ~0.2 ms per network on a CPU core) and returns the class probabilities. ``realtime.classify.plausibility`` then rules out any exercise whose defining movement has
not been seen (a deadlift without the hands ever reaching the knees, a clean & jerk without the bar overhead or on
the floor) and renormalises. The displayed ``label`` / ``confidence`` come from an exponential moving average
of those probabilities with a small switching margin (hysteresis) so the label does not flicker;
``Prediction.probs`` are unsmoothed (the model's own, after the plausibility rules; ``gate=False`` turns the
rules off).

Checkpoints are safetensors (or a ``.pt`` state dict read with ``torch.load(weights_only=True)``): no pickled
code is ever executed. Anything wrong with the files raises a one-line ``WeightsError``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from realtime.classify.plausibility import KinematicGate, apply_mask, gate_sequence
from realtime.classify.tcn import CausalTCN, TCNEnsemble, softmax, streaming
from realtime.classify.ticks import MODEL_RATE, TickClock, step_counts
from realtime.classify.window import (
    CLIP,
    MIN_SCORE,
    MOTION_ALPHA,
    SCALE_DECAY,
    SCALE_GROWTH,
    WINDOW_LENGTH,
    KeypointWindow,
    Normaliser,
)
from realtime.errors import WeightsError
from realtime.files import honour_umask
from realtime.types import NUM_JOINTS, OTHER_LABEL, Prediction

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "classifier.safetensors"
FORMAT = "realtime-gym-classifier/1"
FACE_JOINTS = (1, 2, 3, 4)  # eyes/ears: absent from Penn Action, so the shipped model never looks at them
IN_CHANNELS = NUM_JOINTS * 3 + 2

JOINT_LAYOUT = ("channels 0-50: COCO-17 joints in COCO order, channel = 3 * joint + (0: x, 1: y, 2: seen flag); x, y "
                "hip-centred and divided by the running torso length; unseen joints are (0, 0, 0). channels 51-52: "
                "body-centre motion x, y = hip centre minus its moving average, in torso lengths")


def default_normalisation(drop_joints: tuple[int, ...] = FACE_JOINTS) -> dict:
    return {"method": "hip-mid centre, running torso-length scale (realtime.classify.window.Normaliser)",
            "min_score": MIN_SCORE, "scale_decay": SCALE_DECAY, "scale_growth": SCALE_GROWTH, "clip": CLIP,
            "motion_alpha": MOTION_ALPHA, "drop_joints": list(drop_joints)}


def make_normaliser(norm: dict) -> Normaliser:
    return Normaliser(min_score=float(norm.get("min_score", MIN_SCORE)), decay=float(norm.get("scale_decay", SCALE_DECAY)),
                      growth=float(norm.get("scale_growth", SCALE_GROWTH)),
                      motion_alpha=float(norm.get("motion_alpha", MOTION_ALPHA)),
                      drop_joints=tuple(int(j) for j in norm.get("drop_joints", FACE_JOINTS)))


def features(keypoints: np.ndarray, normaliser: Normaliser) -> np.ndarray:
    """(T, 17, 3) pixel keypoints -> (T, 53) model input (continues ``normaliser``'s causal state)."""
    pose, motion = normaliser.transform(keypoints)
    return np.concatenate([pose.reshape(len(keypoints), NUM_JOINTS * 3), motion], 1)


@dataclass
class LabelSmoother:
    """Display smoothing: EMA of the probabilities; the label changes only when another class leads by ``margin``.

    ``rest_class`` (the index of ``other``) must lead for ``rest_hold`` steps in a row before it replaces an exercise
    that has been shown for more than ``rest_after`` steps: a lifter standing between two reps of a set is still
    doing that exercise, and the network, which sees the pause, says ``other`` there. A longer pause (the set is
    over) does show ``other``, ``rest_hold`` steps late; an exercise label that only flashed up is not held.
    """

    alpha: float = 0.3  # EMA weight of the newest frame (time constant ~3 frames)
    margin: float = 0.1
    rest_class: int = -1
    rest_hold: int = 0
    rest_after: int = 0
    _ema: np.ndarray | None = None
    _label: int = -1
    _rest_run: int = 0
    _shown: int = 0  # steps the current label has been shown

    def reset(self) -> None:
        self._ema, self._label, self._rest_run, self._shown = None, -1, 0, 0

    def update(self, probs: np.ndarray) -> tuple[int, float]:
        """Feed one frame's probabilities; returns (displayed class index, its smoothed probability)."""
        self._ema = probs.copy() if self._ema is None else self.alpha * probs + (1 - self.alpha) * self._ema
        allowed = probs > 0  # 0 = ruled out by the plausibility rules: never shown, even while its EMA fades
        if self._label >= 0 and not allowed[self._label]:
            self._label = -1
        best = int(np.argmax(np.where(allowed, self._ema, -1.0)))
        self._shown += 1
        if self._label < 0:
            self._label, self._shown = best, 1
        elif self._ema[best] > self._ema[self._label] + self.margin:
            pause = best == self.rest_class and self._label != self.rest_class and self._shown > self.rest_after
            self._rest_run = self._rest_run + 1 if pause else 0
            if not pause or self._rest_run >= self.rest_hold:
                self._label, self._rest_run, self._shown = best, 0, 1
        else:
            self._rest_run = 0
        return self._label, float(self._ema[self._label])

    def run(self, probs: np.ndarray) -> np.ndarray:
        """(T, C) probabilities -> (T,) displayed labels from a fresh state."""
        self.reset()
        return np.array([self.update(p)[0] for p in probs], int)


REST_HOLD_S = 1.5  # how long ``other`` must lead before it replaces an exercise on screen (a pause within a set)
REST_AFTER_S = 0.5  # ... once that exercise has been shown this long (a label that only flashed up is not held)


def label_smoother(classes: tuple[str, ...] | list[str], alpha: float = 0.3, margin: float = 0.1) -> LabelSmoother:
    """The display smoother for these classes, holding an exercise through pauses of up to ``REST_HOLD_S``."""
    rest = list(classes).index(OTHER_LABEL) if OTHER_LABEL in classes else -1
    return LabelSmoother(alpha=alpha, margin=margin, rest_class=rest, rest_hold=int(round(REST_HOLD_S * MODEL_RATE)),
                         rest_after=int(round(REST_AFTER_S * MODEL_RATE)))


# --- checkpoint files ----------------------------------------------------------------------------------

def metadata_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_checkpoint(model: CausalTCN, classes: tuple[str, ...] | list[str], metadata: dict, path: str | Path) -> Path:
    """Write ``path`` (.safetensors) + ``path.with_suffix('.json')``; classes/architecture are in both."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"checkpoint path {path} must end in .safetensors")
    if len(classes) != model.num_classes:
        raise WeightsError(f"{len(classes)} class names for a model with {model.num_classes} outputs")
    path.parent.mkdir(parents=True, exist_ok=True)
    arch = {"type": "CausalTCN", **model.config()}
    meta = {"format": FORMAT, "classes": list(classes), "architecture": arch,
            "receptive_field": model.receptive_field, "window_length": WINDOW_LENGTH, "fps": 30.0,
            "joint_layout": JOINT_LAYOUT, "normalisation": default_normalisation(), **metadata}
    meta["classes"], meta["architecture"] = list(classes), arch  # never overridden by ``metadata``
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": FORMAT, "classes": json.dumps(list(classes)),
                                          "architecture": json.dumps(arch)})
    honour_umask(path)  # safetensors creates the file 0600 whatever the umask
    metadata_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def _read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if path.suffix in (".pt", ".pth"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure here means an unusable file
            raise WeightsError(f"cannot read classifier checkpoint {path} ({type(exc).__name__}); "
                               f"re-train or re-download it") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise WeightsError(f"{path} is not a plain state dict of tensors; save it with safetensors")
        return state, {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for corrupt files
        raise WeightsError(f"classifier checkpoint {path} is corrupt or not safetensors ({type(exc).__name__}); "
                           f"re-train or reinstall it") from None
    return state, header


def load_model(path: str | Path | None = None, members: bool = True) -> tuple[CausalTCN | TCNEnsemble, dict]:
    """Read and check a checkpoint; returns the model (eval mode) and its metadata.

    A checkpoint whose metadata lists ``ensemble`` members (checkpoints next to it, same classes and input) loads
    as a ``TCNEnsemble`` of itself and them (``members=False``: itself alone).
    """
    path = Path(path) if path else DEFAULT_WEIGHTS
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise WeightsError(f"classifier weights not found at {path}; pass a .safetensors file written by "
                           f"`train` (or reinstall the package for the shipped model)")
    meta_file = metadata_path(path)
    try:
        meta = json.loads(meta_file.read_text())
    except FileNotFoundError:
        raise WeightsError(f"classifier metadata {meta_file} is missing; keep the .json next to the weights") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"classifier metadata {meta_file} is unreadable ({exc}); re-train or reinstall") from None
    classes = meta.get("classes")
    arch = dict(meta.get("architecture") or {})
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise WeightsError(f"{meta_file} has no class list; it is not a classifier checkpoint")
    if arch.pop("type", None) != "CausalTCN":
        raise WeightsError(f"{meta_file}: architecture is not CausalTCN; this build only runs CausalTCN checkpoints")
    if arch.get("num_classes") != len(classes) or arch.get("in_channels") != IN_CHANNELS:
        raise WeightsError(f"{meta_file}: architecture ({arch.get('in_channels')} in, {arch.get('num_classes')} out) "
                           f"does not match {IN_CHANNELS} inputs / {len(classes)} classes; re-train the checkpoint")
    state, header = _read_state(path)
    if "classes" in header and json.loads(header["classes"]) != classes:
        raise WeightsError(f"{path.name} was trained for classes {json.loads(header['classes'])} but {meta_file.name} "
                           f"lists {classes}; use the .json written with these weights")
    try:
        model = CausalTCN(**arch)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{meta_file}: bad architecture ({exc}); re-train the checkpoint") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:3]
        raise WeightsError(f"{path.name} does not match the architecture in {meta_file.name} (e.g. {diff}); "
                           f"use the .json written with these weights")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.eval()
    extra = meta.get("ensemble") or []
    if not members or not extra:
        return model, meta
    parts: list[CausalTCN] = [model]
    for rel in extra:
        member_path = path.parent / rel
        member, member_meta = load_model(member_path, members=False)
        if member_meta["classes"] != classes or member_meta.get("normalisation") != meta.get("normalisation") \
                or member_meta.get("fps") != meta.get("fps"):
            raise WeightsError(f"ensemble member {member_path.name} does not match {path.name} (classes, input "
                               f"normalisation or frame rate); re-train it with the same data")
        parts.append(member)
    return TCNEnsemble(parts).eval(), meta


# --- streaming classifier ------------------------------------------------------------------------------

class StreamingClassifier:
    """Frame-by-frame exercise classifier (one instance per video stream)."""

    def __init__(self, model: CausalTCN | TCNEnsemble, metadata: dict, smoothing: float = 0.3, margin: float = 0.1,
                 gate: bool = True) -> None:
        self.model = model.eval()
        self.metadata = metadata
        self.classes: tuple[str, ...] = tuple(metadata["classes"])
        self.window_length = int(metadata.get("window_length", WINDOW_LENGTH))
        self.receptive_field = model.receptive_field
        self._normaliser = make_normaliser(metadata.get("normalisation", {}))
        self._stream = streaming(model)
        self._smoother = label_smoother(self.classes, alpha=smoothing, margin=margin)
        self._window = KeypointWindow(self.window_length, (IN_CHANNELS,))  # model inputs, for ``window_probs``
        self._empty = np.zeros((1, NUM_JOINTS, 3), np.float32)
        self._gate = KinematicGate(self.classes) if gate else None
        self._mask = np.ones(len(self.classes), np.float32)
        self._clock = TickClock(float(metadata.get("fps", MODEL_RATE)))
        self._last: Prediction | None = None

    @classmethod
    def load(cls, path: str | Path | None = None, **kwargs) -> StreamingClassifier:
        """``path`` None -> the shipped model; see ``load_model`` for the checks."""
        model, meta = load_model(path)
        return cls(model, meta, **kwargs)

    def reset(self) -> None:
        """Forget the stream (new source / reconnect)."""
        self._normaliser.reset()
        self._stream.reset()
        self._smoother.reset()
        self._window.clear()
        if self._gate is not None:
            self._gate.reset()
        self._mask[:] = 1.0
        self._clock.reset()
        self._last = None

    def push(self, keypoints: np.ndarray | None, t: float | None = None) -> Prediction:
        """Add the newest frame's (17, 3) pixel keypoints; None = nobody in view.

        ``t`` (seconds) puts the frame on the model's 30 Hz time base (``realtime.classify.ticks``): a 60 fps source
        updates the model every other frame (the frames between return the previous prediction), a slow one
        holds each frame for the steps it stands for. Without ``t`` every call is one step (a 30 fps source).

        None is fed as an empty frame (every joint unseen), not skipped: the model was trained with short
        detector dropouts inside exercises and with empty stretches labelled ``other``, so a brief miss keeps
        the exercise while a long absence drifts to ``other``.
        """
        if keypoints is None:
            kp = self._empty
        else:
            kp = np.asarray(keypoints, np.float32)
            if kp.shape != (NUM_JOINTS, 3):
                raise ValueError(f"keypoints must be (17, 3) COCO-17 x, y, score; got {kp.shape}")
            kp = kp[None]
        steps = 1 if t is None else self._clock.steps(t)
        if steps == 0 and self._last is not None:
            return self._last
        for _ in range(steps):
            self._last = self._step(kp, keypoints is None)
        return self._last

    def _step(self, kp: np.ndarray, empty: bool) -> Prediction:
        """One model step on a (1, 17, 3) frame."""
        feat = features(kp, self._normaliser)[0]
        self._window.push(feat)
        probs = softmax(self._stream.step(feat))
        ruled_out: tuple[str, ...] = ()
        if self._gate is not None:
            self._mask = self._gate.update(None if empty else kp[0])
            probs = apply_mask(probs, self._mask, self.classes)
            ruled_out = self._gate.ruled_out
        idx, conf = self._smoother.update(probs)
        return Prediction(label=self.classes[idx], confidence=conf, probs=probs, classes=self.classes,
                          ruled_out=ruled_out)

    @property
    def frames(self) -> int:
        """Model steps since the last reset (= frames pushed without ``t``)."""
        return self._stream.frames

    def window_probs(self) -> np.ndarray:
        """Re-run the model on the last ``window_length`` frames and return its last (C,) probabilities.

        Equals the newest ``push`` result's ``probs`` (to float rounding) because the receptive field
        (``receptive_field`` frames) is <= the window (the newest plausibility mask is applied the same way); a
        check, not needed for live use.
        """
        win = self._window.array()
        if not len(win):
            raise ValueError("no frames pushed yet")
        with torch.no_grad():
            logits = self.model(torch.from_numpy(win.T[None].copy()))[0, :, -1].numpy()
        return apply_mask(softmax(logits), self._mask, self.classes)

    def predict_sequence(self, keypoints: np.ndarray, fps: float | None = None) -> np.ndarray:
        """Whole (T, 17, 3) pixel sequence from a fresh state -> (T, C) per-frame probabilities (batch form of
        ``reset`` + ``push(kp, i / fps)`` per frame; does not touch this instance's stream state)."""
        return predict_sequence(self.model, self.metadata, keypoints, gate=self._gate is not None, fps=fps)


def predict_steps(model: CausalTCN | TCNEnsemble, metadata: dict, keypoints: np.ndarray, gate: bool = True,
                  fps: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(T, 17, 3) pixel keypoints -> ((S, C) probabilities per model step, (T,) index of each frame's last step), as
    a fresh stream given ``push(kp, i / fps)`` would produce them (``fps`` None: one step per frame; a frame the time
    base skips shows the previous frame's step). ``gate``: with the plausibility rules."""
    keypoints = np.asarray(keypoints, np.float32)
    if fps is None:
        steps = np.ones(len(keypoints), np.int64)
    else:
        steps = step_counts(len(keypoints), fps, float(metadata.get("fps", MODEL_RATE)))
    last_step = np.cumsum(steps) - 1
    if len(keypoints) == 0:
        return np.zeros((0, model.num_classes), np.float32), last_step
    held = keypoints[np.repeat(np.arange(len(keypoints)), steps)]  # each frame held for the steps it stands for
    x = features(held, make_normaliser(metadata.get("normalisation", {})))
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x.T[None].copy()))[0].numpy().T
    probs = softmax(logits)
    if gate:
        classes = tuple(metadata["classes"])
        probs = apply_mask(probs, gate_sequence(classes, held), classes)
    return probs, last_step


def predict_sequence(model: CausalTCN | TCNEnsemble, metadata: dict, keypoints: np.ndarray, gate: bool = True,
                     fps: float | None = None) -> np.ndarray:
    """(T, 17, 3) pixel keypoints -> (T, C) per-frame probabilities, as a fresh stream would give them
    (``gate``: with the plausibility rules, as ``StreamingClassifier`` applies them by default; ``fps``: put the
    frames on the model's time base as ``push(kp, t)`` does, None = one step per frame)."""
    per_step, last_step = predict_steps(model, metadata, keypoints, gate, fps)
    return per_step[last_step]


def load(path: str | Path | None = None, **kwargs) -> StreamingClassifier:
    """Shortcut for ``StreamingClassifier.load`` (None -> the shipped model)."""
    return StreamingClassifier.load(path, **kwargs)
