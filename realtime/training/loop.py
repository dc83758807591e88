"""Training the exercise classifier: the group-wise sampler, augmentation batches and the training loop."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from realtime.classify.classifier import (
    IN_CHANNELS,
    default_normalisation,
    features,
    load_model,
    make_normaliser,
)
from realtime.classify.tcn import CausalTCN
from realtime.classify.ticks import MODEL_RATE
from realtime.errors import DataError
from realtime.training import augment
from realtime.training.augment import Augmenter
from realtime.training.datasets import Sample, synthetic_other
from realtime.training.evaluation import run_eval, summarise
from realtime.types import NUM_JOINTS, OTHER_LABEL

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    min_len: int = 24  # frames per training sequence (drawn uniformly)
    max_len: int = 224
    channels: int = 64
    levels: int = 6
    kernel_size: int = 3
    dropout: float = 0.1
    label_smoothing: float = 0.05
    synthetic_other: bool = True  # add generated standing/walking people and empty frames as ``other``
    p_prefix: float = 0.3  # chance an exercise sequence starts with an ``other`` stretch
    p_suffix: float = 0.15
    p_loop: float = 0.6  # chance a short clip is looped (forward/backward) to fill a long sequence
    other_weight: float = 2.0  # ``other`` is drawn this many times as often as each exercise (broadest class)
    p_hold: float = 0.5  # chance an "other" prefix/suffix is the exercise's own first/last pose held still
    p_squat_arms: float = 0.4  # chance a squat gets its arms re-posed (forward, goblet, hips, crossed, overhead)
    # ``--shallow-squats`` (the ensemble's second member): squats made shallower (30-80 % of their depth) with this
    # chance, and "counterbalance" arms (raised forward as the hips go down) among the re-posed arms
    p_squat_depth: float = 0.0
    squat_counterbalance: bool = False
    eval_every: int = 250
    seed: int = 0
    threads: int = 1  # torch threads for the model (more than the free cores makes it much slower)
    workers: int = 1  # background processes drawing/augmenting batches (0 = in the training loop)
    augment: dict = field(default_factory=lambda: asdict(Augmenter()))


class SequenceSampler:
    """Draws augmented, normalised training sequences with per-frame labels (class- and source-balanced)."""

    def __init__(self, samples: list[Sample], classes: tuple[str, ...], cfg: TrainConfig,
                 rng: np.random.Generator) -> None:
        self.classes, self.cfg, self.rng = classes, cfg, rng
        self.index = {c: i for i, c in enumerate(classes)}
        self.by_class: dict[str, list[Sample]] = {c: [] for c in classes}
        for s in samples:
            if s.label in self.by_class and len(s) > 0:
                self.by_class[s.label].append(s)
        self.all = [s for v in self.by_class.values() for s in v]
        # Within a class every data set gets the same share, so a big single-style source (e.g. UI-PRMD's
        # rehab squats, many views per rep) cannot crowd out the others (Penn's barbell squats).
        self.pick_p: dict[str, np.ndarray] = {}
        for c, pool in self.by_class.items():
            sources = [s.source for s in pool]
            counts = Counter(sources)
            w = np.array([1.0 / counts[src] for src in sources])
            self.pick_p[c] = w / w.sum() if len(w) else w
        self.has_other = OTHER_LABEL in self.index
        missing = [c for c, v in self.by_class.items() if not v and not (c == OTHER_LABEL and cfg.synthetic_other)]
        if missing:
            raise DataError(f"no training sequences for class(es) {', '.join(missing)}; add clips or drop the class")
        self.augmenter = Augmenter(**cfg.augment)
        w = np.array([cfg.other_weight if c == OTHER_LABEL else 1.0 for c in classes])
        self.class_p = w / w.sum()
        self.norm = default_normalisation()

    def _clip(self, s: Sample) -> np.ndarray:
        kp = s.keypoints
        if s.label == "squat" and self.cfg.p_squat_depth > 0 and self.rng.random() < self.cfg.p_squat_depth:
            kp = augment.squat_depth(kp, self.rng)
        out = self.augmenter(kp, self.rng, base_speed=s.fps / MODEL_RATE)
        if s.label == "squat" and self.rng.random() < self.cfg.p_squat_arms:
            out = augment.squat_arms(out, self.rng, counterbalance=self.cfg.squat_counterbalance)
        return out

    def _real_frame(self) -> np.ndarray:
        """A random frame (with most joints seen) of a random training sequence of any class."""
        for _ in range(10):
            s = self.all[self.rng.integers(len(self.all))]
            f = s.keypoints[self.rng.integers(len(s))]
            if (f[:, 2] > 0).sum() >= 10:
                break
        return f

    def _other(self, length: int) -> np.ndarray:
        """An ``other`` stretch: a real idle/non-gym clip, a synthetic person, a real pose held still or with
        the arms doing a curl/raise/press, or nobody at all."""
        rng = self.rng
        real = self.by_class.get(OTHER_LABEL, [])
        u = rng.random()
        if real and (u < 0.3 or not self.cfg.synthetic_other):
            seq = self._clip(real[rng.integers(len(real))])
            return self._fit(seq, length)
        if not self.cfg.synthetic_other:
            return np.zeros((length, NUM_JOINTS, 3), np.float32)
        if u < 0.6:
            return self.augmenter(synthetic_other(rng, length), rng)
        if u < 0.9:
            seq = None
            if u >= 0.72:
                for _ in range(5):
                    seq = augment.animate_arms(self._real_frame(), length, rng)
                    if seq is not None:
                        break
            if seq is None:
                seq = augment.hold(self._real_frame(), length, rng)
            return self.augmenter(seq, rng)
        return np.zeros((length, NUM_JOINTS, 3), np.float32)

    def _edge(self, seq: np.ndarray, length: int, first: bool) -> np.ndarray:
        """"other" before/after an exercise: its own first/last pose held still, or any other stretch."""
        if len(seq) and self.rng.random() < self.cfg.p_hold and self.cfg.synthetic_other:
            frame = seq[0] if first else seq[-1]
            if (frame[:, 2] > 0).sum() >= 8:
                return augment.hold(frame, length, self.rng)
        return self._other(length)

    def _fit(self, seq: np.ndarray, length: int) -> np.ndarray:
        """Loop (ping-pong) a clip up to ``length`` frames when allowed, then take a random crop."""
        if len(seq) < length and self.rng.random() < self.cfg.p_loop:
            parts, n = [seq], len(seq)
            while n < length + len(seq):
                parts.append(parts[-1][::-1])
                n += len(seq)
            seq = np.concatenate(parts)
        if len(seq) > length:
            off = self.rng.integers(0, len(seq) - length + 1)
            seq = seq[off:off + length]
        return seq

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        rng, cfg = self.rng, self.cfg
        cls = self.classes[rng.choice(len(self.classes), p=self.class_p)]
        length = int(rng.integers(cfg.min_len, cfg.max_len + 1))
        if cls == OTHER_LABEL:
            segs = [(self._other(length), cls)]
        else:
            pool = self.by_class[cls]
            main = self._fit(self._clip(pool[rng.choice(len(pool), p=self.pick_p[cls])]), length)
            segs = [(main, cls)]
            if self.has_other and rng.random() < cfg.p_prefix:
                segs.insert(0, (self._edge(main, int(rng.integers(10, 91)), True), OTHER_LABEL))
            if self.has_other and rng.random() < cfg.p_suffix:
                segs.append((self._edge(main, int(rng.integers(10, 61)), False), OTHER_LABEL))
        kp = np.concatenate([s for s, _ in segs])[: cfg.max_len]
        labels = np.concatenate([np.full(len(s), self.index[c]) for s, c in segs])[: cfg.max_len]
        x = features(kp, make_normaliser(self.norm))
        return x, labels

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self.draw() for _ in range(n)]
        t = max(len(x) for x, _ in items)
        xb = np.zeros((n, IN_CHANNELS, t), np.float32)
        yb = np.full((n, t), -100, np.int64)  # padding on the right, ignored by the loss
        for i, (x, y) in enumerate(items):
            xb[i, :, : len(x)] = x.T
            yb[i, : len(y)] = y
        return torch.from_numpy(xb), torch.from_numpy(yb)


class _Batches(torch.utils.data.IterableDataset):
    """Endless stream of training batches; each worker has its own seeded sampler (deterministic order)."""

    def __init__(self, samples: list[Sample], classes: tuple[str, ...], cfg: TrainConfig) -> None:
        super().__init__()
        self.samples, self.classes, self.cfg = samples, classes, cfg

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info else 0
        if info:
            torch.set_num_threads(1)
        sampler = SequenceSampler(self.samples, self.classes, self.cfg,
                                  np.random.default_rng([self.cfg.seed, worker]))
        while True:
            yield sampler.batch(self.cfg.batch_size)


def _init_from(model: CausalTCN, classes: tuple[str, ...], init: str) -> None:
    """Copy matching weights from another checkpoint (head rows by class name)."""
    src, meta = load_model(init, members=False)  # an ensemble's first member
    src_state, dst_state = src.state_dict(), model.state_dict()
    copied = 0
    for k, v in src_state.items():
        if k.startswith("head."):
            continue
        if k in dst_state and dst_state[k].shape == v.shape:
            dst_state[k] = v.clone()
            copied += 1
    src_classes = list(meta["classes"])
    for i, c in enumerate(classes):
        if c in src_classes and src.channels == model.channels:
            j = src_classes.index(c)
            dst_state["head.weight"][i] = src_state["head.weight"][j]
            dst_state["head.bias"][i] = src_state["head.bias"][j]
    model.load_state_dict(dst_state)
    log.info("initialised %d tensors from %s", copied, init)


def train_model(train: list[Sample], val: list[Sample], classes: tuple[str, ...], cfg: TrainConfig,
                progress: Callable[[int, dict], None] | None = None, init: str | None = None,
                ) -> tuple[CausalTCN, dict]:
    """Train a CausalTCN; keeps the weights with the best validation clip accuracy (last one if no val)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    SequenceSampler(train, classes, cfg, rng)  # checks every class has data before any worker starts
    batches = iter(torch.utils.data.DataLoader(_Batches(train, classes, cfg), batch_size=None,
                                               num_workers=cfg.workers, prefetch_factor=4 if cfg.workers else None))
    model = CausalTCN(IN_CHANNELS, len(classes), cfg.channels, cfg.levels, cfg.kernel_size, cfg.dropout)
    if init:
        _init_from(model, classes, init)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, min(200, cfg.steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    val = [s for s in val if s.label in classes]
    meta = {"classes": list(classes), "normalisation": default_normalisation()}
    history: list[dict] = []
    best: tuple[float, dict] | None = None
    loss_avg = None
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        model.train()
        x, y = next(batches)
        logits = model(x)
        loss = F.cross_entropy(logits, y, ignore_index=-100, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
        info = {"step": step, "loss": round(loss_avg, 4)}
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if val:
                s = summarise(run_eval(model, meta, val), classes)
                info.update(val_clip_acc=s["clip_accuracy"], val_frame_acc=s["frame_accuracy"])
                score = s["clip_accuracy"] + 0.5 * s["frame_accuracy"]
                if best is None or score >= best[0]:
                    best = (score, {k: v.clone() for k, v in model.state_dict().items()})
            info["elapsed_s"] = round(time.perf_counter() - t0, 1)
            history.append(info)
            log.info("step %d %s", step, info)
        if progress:
            progress(step, info)
    if best is not None:
        model.load_state_dict(best[1])
    model.eval()
    return model, {"history": history, "train_seconds": round(time.perf_counter() - t0, 1)}


