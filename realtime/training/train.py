"""``train`` / ``evaluate`` / ``extract``: build, measure and feed the exercise classifier.

    python -m realtime.training.train extract VIDEOS/ clips_npz/          # VIDEOS/<class>/*.mp4 -> clips_npz/<class>/*.npz
    python -m realtime.training.train train --data npz=clips_npz --out my.safetensors
    python -m realtime.training.train evaluate --model my.safetensors --data npz=clips_npz --out report/

(``python run_live.py train|evaluate|extract ...`` is the same, via ``add_parsers``.)

Training draws random windows from group-wise splits (never splitting a person/source), augments them like a
live pose engine would distort them (``realtime.training.augment``), optionally glues "other" stretches before/after an
exercise (walking in, standing, nobody in view) and trains the causal TCN with a per-frame loss, so the model
names the exercise early in a stream. Batches are padded on the right and the padding is masked: the model is
causal, so right padding cannot change the outputs of the real frames.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from realtime.classify.classifier import (
    FACE_JOINTS,
    IN_CHANNELS,
    default_normalisation,
    features,
    label_smoother,
    load_model,
    make_normaliser,
    metadata_path,
    predict_steps,
    save_checkpoint,
)
from realtime.classify.tcn import CausalTCN, TCNEnsemble
from realtime.classify.ticks import MODEL_RATE
from realtime.errors import DataError, RealtimeError
from realtime.training import augment
from realtime.training.augment import Augmenter
from realtime.training.datasets import DATASETS, Sample, load_data, parse_spec, split_samples, subset, synthetic_other
from realtime.types import EXERCISES, NUM_JOINTS, OTHER_LABEL

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def class_order(labels: set[str] | list[str]) -> tuple[str, ...]:
    """Known exercises in ``EXERCISES`` order, then any new class alphabetically, ``other`` last."""
    labels = set(labels)
    known = [c for c in EXERCISES if c in labels]
    extra = sorted(labels - set(EXERCISES) - {OTHER_LABEL})
    return tuple(known + extra + ([OTHER_LABEL] if OTHER_LABEL in labels else []))


def split_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".split.json")


# --- training --------------------------------------------------------------------------------------------

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


# --- evaluation ------------------------------------------------------------------------------------------

@dataclass
class ClipResult:
    id: str
    source: str
    true: int
    pred: int  # argmax of the mean probabilities over the clip
    confidence: float
    last_pred: int  # displayed label at the last frame
    frames: int
    fps: float
    raw_correct: np.ndarray  # (T,) per-frame argmax == true
    shown_correct: np.ndarray  # (T,) displayed (smoothed) label == true
    delay_s: float  # time until the displayed label becomes right and stays right (>= 1 s or to the end)
    flips: int  # displayed label changes after the first second
    raw_flips: int


def run_eval(model: CausalTCN, metadata: dict, samples: list[Sample],
             progress: Callable[[], None] | None = None, gate: bool = True) -> list[ClipResult]:
    """Stream every sample from a fresh state (batch-equivalent) and collect per-clip results (``gate``: with the
    plausibility rules, as the live classifier applies them)."""
    classes = list(metadata["classes"])
    smoother = label_smoother(classes)  # the live display's smoother
    out = []
    for s in samples:
        if s.label not in classes or len(s) == 0:
            continue
        y = classes.index(s.label)
        # on the model's time base, as live: a frame shows the prediction (and the smoothed label) of its last step
        per_step, last_step = predict_steps(model, metadata, s.keypoints, gate=gate, fps=s.fps)
        probs = per_step[last_step]
        raw = probs.argmax(1)
        shown = smoother.run(per_step)[last_step]
        mean = probs.mean(0)
        hold = max(1, int(round(s.fps)))  # "stays right" = for 1 s or until the clip ends
        ok = shown == y
        delay = math.inf
        run = 0
        for t in range(len(ok) - 1, -1, -1):  # run[t] = consecutive correct frames starting at t
            run = run + 1 if ok[t] else 0
            if ok[t] and (run >= hold or t + run == len(ok)):
                delay = t / s.fps
        # earliest qualifying t wins because the loop goes backwards and overwrites
        steady = slice(hold, None)
        out.append(ClipResult(
            id=s.id, source=s.source, true=y, pred=int(mean.argmax()), confidence=float(mean.max()),
            last_pred=int(shown[-1]), frames=len(s), fps=s.fps, raw_correct=raw == y, shown_correct=ok,
            delay_s=delay, flips=int((np.diff(shown[steady]) != 0).sum()) if len(s) > hold + 1 else 0,
            raw_flips=int((np.diff(raw[steady]) != 0).sum()) if len(s) > hold + 1 else 0,
        ))
        if progress:
            progress()
    return out


def _prf(conf: np.ndarray) -> list[dict]:
    rows = []
    for i in range(len(conf)):
        tp = conf[i, i]
        p = tp / conf[:, i].sum() if conf[:, i].sum() else float("nan")
        r = tp / conf[i].sum() if conf[i].sum() else float("nan")
        f1 = 2 * p * r / (p + r) if conf[i].sum() and conf[:, i].sum() and (p + r) > 0 else float("nan")
        rows.append({"precision": p, "recall": r, "f1": f1, "support": int(conf[i].sum())})
    return rows


def summarise(results: list[ClipResult], classes: tuple[str, ...] | list[str], max_seconds: float = 5.0) -> dict:
    """Clip/frame accuracy, per-class precision/recall/F1, confusion matrix and streaming measures."""
    n = len(classes)
    conf = np.zeros((n, n), int)
    for r in results:
        conf[r.true, r.pred] += 1
    total = len(results)
    frames = sum(r.frames for r in results)
    nbins = int(max_seconds * MODEL_RATE)
    raw_hits, shown_hits, counts = np.zeros(nbins), np.zeros(nbins), np.zeros(nbins)
    for r in results:
        # bin by time since the start (seconds * 30) so clips of other frame rates line up
        t = (np.arange(r.frames) / r.fps * MODEL_RATE).astype(int)
        keep = t < nbins
        np.add.at(counts, t[keep], 1)
        np.add.at(raw_hits, t[keep], r.raw_correct[keep])
        np.add.at(shown_hits, t[keep], r.shown_correct[keep])
    delays = np.array([r.delay_s for r in results]) if results else np.zeros(0)
    exercise = [r for r in results if classes[r.true] != OTHER_LABEL]
    steady_min = sum(max(0.0, r.frames / r.fps - 1.0) for r in exercise) / 60
    prf = _prf(conf)
    one_s = [r.shown_correct[min(r.frames, int(round(r.fps))) - 1] for r in results if r.frames >= r.fps]
    return {
        "clips": total,
        "frames": frames,
        "clip_accuracy": float(np.trace(conf) / total) if total else float("nan"),
        "exercise_clip_accuracy": float(np.mean([r.pred == r.true for r in exercise])) if exercise else float("nan"),
        "last_frame_accuracy": float(np.mean([r.last_pred == r.true for r in results])) if total else float("nan"),
        "frame_accuracy": float(sum(r.raw_correct.sum() for r in results) / frames) if frames else float("nan"),
        "per_class": {c: prf[i] for i, c in enumerate(classes) if prf[i]["support"] or conf[:, i].sum()},
        "confusion": conf.tolist(),
        "classes": list(classes),
        "streaming": {
            "seconds": (np.arange(nbins) / MODEL_RATE).tolist(),
            "raw_accuracy": np.divide(raw_hits, counts, out=np.full(nbins, np.nan), where=counts > 0).tolist(),
            "shown_accuracy": np.divide(shown_hits, counts, out=np.full(nbins, np.nan), where=counts > 0).tolist(),
            "clips_at": counts.tolist(),
            "median_delay_s": float(np.median(delays)) if len(delays) else float("nan"),
            "right_within_1s": float(np.mean(delays <= 1.0)) if len(delays) else float("nan"),
            "never_right": int(np.isinf(delays).sum()),
            "shown_right_at_1s": float(np.mean(one_s)) if one_s else float("nan"),
            "flips_per_min": (sum(r.flips for r in exercise) / steady_min) if steady_min > 0 else float("nan"),
            "raw_flips_per_min": (sum(r.raw_flips for r in exercise) / steady_min) if steady_min > 0 else float("nan"),
            "steady_minutes": steady_min,
        },
    }


def _fmt(v: float, pct: bool = True) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f} %" if pct else f"{v:.2f}"


def plot_confusion(summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.array(summary["confusion"])
    classes = summary["classes"]
    used = [i for i in range(len(classes)) if conf[i].sum() or conf[:, i].sum()]
    conf = conf[np.ix_(used, used)]
    names = [classes[i] for i in used]
    rows = conf.sum(1, keepdims=True)
    frac = np.divide(conf, rows, out=np.zeros(conf.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.0 + 0.62 * len(names)), max(4.0, 0.8 + 0.55 * len(names))), dpi=110)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if conf[i, j]:
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted (clip)")
    ax.set_ylabel("true")
    ax.set_title(textwrap.fill(title, 60), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_streaming(summaries: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name, s in summaries.items():
        st = s["streaming"]
        sec = np.array(st["seconds"])
        ok = np.array(st["clips_at"]) >= 5  # hide the tail where few clips are that long
        ax.plot(sec[ok], np.array(st["shown_accuracy"])[ok] * 100, label=f"{name} (shown label)")
        ax.plot(sec[ok], np.array(st["raw_accuracy"])[ok] * 100, "--", alpha=0.6, label=f"{name} (raw argmax)")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("seconds since the exercise started (stream start)")
    ax.set_ylabel("frames labelled right (%)")
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(textwrap.fill(title, 90), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(results: list[ClipResult], classes: tuple[str, ...], out: Path, title: str,
                 model_info: dict | None = None) -> dict:
    """Write report.md / report.json / confusion_*.png / streaming.png / misclassified.csv into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[ClipResult]] = {}
    for r in results:
        groups.setdefault(r.source or "data", []).append(r)
    summaries = {name: summarise(rs, classes) for name, rs in sorted(groups.items())}
    if len(summaries) > 1:
        summaries["all"] = summarise(results, classes)
    for name, s in summaries.items():
        plot_confusion(s, out / f"confusion_{name}.png", f"{title}: {name} ({s['clips']} clips)")
    plot_streaming({k: v for k, v in summaries.items() if k != "all"}, out / "streaming.png", title)
    wrong = sorted((r for r in results if r.pred != r.true), key=lambda r: (r.source, r.id))
    with open(out / "misclassified.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "source", "true", "predicted", "confidence", "frames"])
        for r in wrong:
            w.writerow([r.id, r.source, classes[r.true], classes[r.pred], f"{r.confidence:.3f}", r.frames])
    lines = [f"# {title}", ""]
    if model_info:
        members = "".join(f" + `{m}`" for m in model_info.get("ensemble") or [])
        lines += [f"Model: `{model_info.get('path', '')}`{members}{' (probabilities averaged)' if members else ''} "
                  f"({len(classes)} classes: {', '.join(classes)}), "
                  f"receptive field {model_info.get('receptive_field', '?')} frames."
                  + {True: " Plausibility rules on (as live).", False: " Network alone (plausibility rules off)."}
                  .get(model_info.get("plausibility_rules"), ""), ""]
    lines += ["| data | clips | clip accuracy | exercise clips only | last-frame accuracy | frame accuracy | "
              "right within 1 s | median delay | label flips / min (steady) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        st = s["streaming"]
        lines.append(f"| {name} | {s['clips']} | {_fmt(s['clip_accuracy'])} | {_fmt(s['exercise_clip_accuracy'])} | "
                     f"{_fmt(s['last_frame_accuracy'])} | "
                     f"{_fmt(s['frame_accuracy'])} | {_fmt(st['right_within_1s'])} | "
                     f"{_fmt(st['median_delay_s'], False)} s | {_fmt(st['flips_per_min'], False)} |")
    lines += ["", "Clip accuracy: argmax of the per-frame probabilities averaged over the clip. Last-frame: the "
              "displayed (smoothed) label at the clip's last frame. Right within 1 s: the displayed label is right "
              "within 1 s of the stream start and then stays right for 1 s (or to the clip end). Flips: displayed "
              "label changes per minute after the first second of exercise clips.", ""]
    for name, s in summaries.items():
        lines += [f"## {name}", "", f"![confusion](confusion_{name}.png)", "",
                  "| class | precision | recall | F1 | clips |", "|---|---|---|---|---|"]
        for c, row in s["per_class"].items():
            lines.append(f"| {c} | {_fmt(row['precision'])} | {_fmt(row['recall'])} | {_fmt(row['f1'])} | "
                         f"{row['support']} |")
        lines.append("")
    lines += ["## Streaming", "", "![streaming accuracy](streaming.png)", "", "## Misclassified clips", ""]
    if wrong:
        lines += ["| id | true | predicted | confidence |", "|---|---|---|---|"]
        lines += [f"| {r.id} | {classes[r.true]} | {classes[r.pred]} | {r.confidence:.2f} |" for r in wrong]
    else:
        lines.append("None.")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps({"title": title, "model": model_info or {},
                                                 "summaries": summaries}, indent=1, default=float) + "\n")
    return summaries


def _brief(s: dict) -> dict:
    st = s["streaming"]
    return {"clips": s["clips"], "clip_accuracy": round(s["clip_accuracy"], 4),
            "exercise_clip_accuracy": None if math.isnan(s["exercise_clip_accuracy"]) else round(
                s["exercise_clip_accuracy"], 4),
            "frame_accuracy": round(s["frame_accuracy"], 4), "right_within_1s": round(st["right_within_1s"], 4),
            "median_delay_s": round(st["median_delay_s"], 3) if math.isfinite(st["median_delay_s"]) else None,
            "flips_per_min": round(st["flips_per_min"], 3) if math.isfinite(st["flips_per_min"]) else None}


# --- extraction ------------------------------------------------------------------------------------------

def iter_video(path: Path):
    """Yield (BGR uint8 frame, fps) for every frame of a video, upright per its display matrix."""
    import av

    from realtime.sources.decode import iter_upright, stream_fps

    try:
        container = av.open(str(path))
    except Exception as exc:  # noqa: BLE001 - PyAV raises many error types for unreadable files
        raise DataError(f"cannot open video {path} ({type(exc).__name__}); is it a video file?") from None
    with container:
        if not container.streams.video:
            raise DataError(f"{path} has no video stream")
        stream = container.streams.video[0]
        fps = stream_fps(stream, MODEL_RATE)
        try:
            for img in iter_upright(container, stream):
                yield img, fps
        except av.error.FFmpegError as exc:
            log.warning("%s: decoding stopped early (%s)", path, exc)


def extract_folder(video_dir: Path, out_dir: Path, estimator, progress: Callable[[str], None] | None = None,
                   max_frames: int | None = None) -> list[dict]:
    """``video_dir/<class>/<video>`` -> ``out_dir/<class>/<video>.npz`` (``reconstruction`` T x 17 x 3, ``fps``)
    plus ``out_dir/manifest.csv``. Frames without a person are stored as zeros (score 0)."""
    videos = sorted(p for p in video_dir.glob("*/*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())
    if not videos:
        raise DataError(f"no videos in {video_dir}/<class>/ (expected one folder per class with "
                        f"{', '.join(VIDEO_EXTS)} files)")
    rows = []
    for video in videos:
        label = video.parent.name
        estimator.reset()
        kps, fps = [], MODEL_RATE
        for img, video_fps in iter_video(video):
            fps = video_fps
            pose = estimator.estimate(img)
            kp = pose.keypoints
            kps.append(np.zeros((NUM_JOINTS, 3), np.float32) if kp is None else np.asarray(kp, np.float32))
            if max_frames and len(kps) >= max_frames:
                break
        if not kps:
            log.warning("%s: no frames decoded, skipped", video)
            continue
        rec = np.stack(kps).astype(np.float32)
        target = out_dir / label / (video.stem + ".npz")
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(target, reconstruction=rec, fps=np.float32(fps))
        seen = float((rec[..., 2] > 0).any(1).mean())
        rows.append({"npz": target.relative_to(out_dir).as_posix(), "class": label, "video": str(video),
                     "frames": len(rec), "fps": round(fps, 3), "person_frames": round(seen, 3),
                     "group": video.stem.split("__")[0] if "__" in video.stem else video.stem,
                     "pose_engine": getattr(estimator, "name", "")})
        if progress:
            progress(video.name)
    with open(out_dir / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["npz"])
        w.writeheader()
        w.writerows(rows)
    return rows


# --- CLI -------------------------------------------------------------------------------------------------

def _progress():
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=False,
                    console=Console(stderr=True))  # progress is not a result: stderr


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, unless it has none (None, a flag) or its help names it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text or action.nargs == 0:
            return text
        return super()._get_help_string(action)


def add_parsers(subparsers) -> None:
    """Add ``train``, ``evaluate``, ``extract`` and ``ensemble`` sub-commands (each sets ``func``)."""
    from realtime.logs import add_verbose_argument
    from realtime.pose.options import BACKENDS, POSE_MODELS

    kinds = ", ".join(DATASETS)
    fmt = DefaultsHelpFormatter
    cfg = TrainConfig()
    p = subparsers.add_parser("train", help="train the exercise classifier on keypoint data", formatter_class=fmt,
                              description="Train the causal TCN exercise classifier. Data: --data KIND=PATH, "
                                          f"KIND one of {kinds}.")
    p.add_argument("--data", action="append", required=True, metavar="KIND=PATH",
                   help="training data (repeatable), e.g. penn=../shared/data/penn_action or npz=my_clips")
    p.add_argument("--out", default="classifier.safetensors", help="output .safetensors (+ .json, .split.json)")
    p.add_argument("--classes", nargs="+", help="train only these classes (default: every label found)")
    p.add_argument("--init", help="start from this checkpoint (matching layers and class rows are copied)")
    p.add_argument("--no-synthetic-other", action="store_true",
                   help="do not add generated standing/walking/empty 'other' sequences")
    p.add_argument("--val-frac", type=float, default=0.15,
                   help="share of each class's groups (people/clips) held out for validation")
    p.add_argument("--test-frac", type=float, default=0.25, help="share of each class held out for testing "
                   "(data sets with an official split keep it)")
    p.add_argument("--report", help="also evaluate the test split and write the report into this folder")
    for name, what in (("steps", "training steps (batches)"), ("batch-size", "sequences per batch"),
                       ("channels", "TCN channels per layer"), ("levels", "TCN levels (receptive field doubles "
                                                                            "with each)"),
                       ("seed", "random seed of the split, sampling and initialisation"),
                       ("eval-every", "validate every N steps (the best validation checkpoint is kept)"),
                       ("threads", "torch threads (more than the free cores is much slower)"),
                       ("workers", "background processes drawing batches (0 = in the training loop)")):
        p.add_argument(f"--{name}", type=int, default=getattr(cfg, name.replace("-", "_")), metavar="N", help=what)
    p.add_argument("--lr", type=float, default=cfg.lr, help="AdamW learning rate")
    p.add_argument("--shallow-squats", action="store_true",
                   help="also train on squats made shallower and with counterbalance arms (the recipe of the "
                        "shipped ensemble's second member)")
    p.set_defaults(func=cmd_train)
    add_verbose_argument(p)

    p = subparsers.add_parser("evaluate", help="measure a classifier on keypoint data", formatter_class=fmt,
                              description="Classification report, confusion matrix, misclassified clips and "
                                          "streaming measures (delay, flips) for a classifier checkpoint.")
    p.add_argument("--model", help="checkpoint .safetensors (default: the shipped model)")
    p.add_argument("--data", action="append", required=True, metavar="KIND=PATH", help=f"KIND one of {kinds}")
    p.add_argument("--split", default="test", choices=("test", "val", "train", "all"),
                   help="which part of the model's split to use (clips the model never saw count as test)")
    p.add_argument("--out", default="classifier_report", help="report folder")
    p.add_argument("--title", default="Exercise classifier evaluation", help="report title")
    p.add_argument("--no-gate", action="store_true",
                   help="the network alone, without the plausibility rules the live classifier applies")
    p.set_defaults(func=cmd_evaluate)
    add_verbose_argument(p)

    p = subparsers.add_parser("extract", help="run the pose engine over class folders of videos", formatter_class=fmt,
                              description="VIDEOS/<class>/*.mp4 -> OUT/<class>/*.npz (key 'reconstruction', "
                                          "T x 17 x 3 COCO-17 x, y, score) + OUT/manifest.csv, ready for "
                                          "`train --data npz=OUT`. Name videos <person>__<n>.mp4 to keep a "
                                          "person on one side of the train/test split.")
    p.add_argument("videos", help="folder with one sub-folder of videos per class")
    p.add_argument("out", help="output folder")
    p.add_argument("--pose-model", default="auto", choices=POSE_MODELS, metavar="MODEL",
                   help=f"{'|'.join(POSE_MODELS)}: pose engine (as in the live run); auto: ViTPose when its weights are present, else the "
                        "bundled BlazePose")
    p.add_argument("--backend", default="auto", help=f"ViTPose backend: {'|'.join(BACKENDS)}")
    p.add_argument("--weights", help="ViTPose weights (default: bundled BlazePose when none are found)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop each video after N frames (default: all)")
    p.set_defaults(func=cmd_extract)
    add_verbose_argument(p)

    p = subparsers.add_parser("ensemble", help="make a checkpoint average its probabilities with other checkpoints",
                              description="Writes the members into MODEL's .json (paths relative to it): loading "
                                          "MODEL then gives the ensemble. Members need the same classes and input.")
    p.add_argument("model", help="checkpoint .safetensors that becomes the ensemble")
    p.add_argument("members", nargs="*", help="other checkpoints (.safetensors); none = undo")
    p.set_defaults(func=cmd_ensemble)
    add_verbose_argument(p)


MIN_TRAIN_PER_CLASS = 5  # fewer real training sequences of a class than this: the split is too small to learn from


def split_warning(train: list[Sample], val: list[Sample], test: list[Sample], val_frac: float,
                  test_frac: float) -> str | None:
    """One line saying which split is empty or too small (``val`` without the synthetic sequences), else None."""
    labels = sorted({s.label for s in (*train, *val, *test)})
    problems = []
    few = [f"{c} {n}" for c in labels if (n := sum(s.label == c for s in train)) < MIN_TRAIN_PER_CLASS]
    if few:
        problems.append(f"train has few sequences ({', '.join(few)}; want {MIN_TRAIN_PER_CLASS}+ per class)")
    if val_frac > 0 and not val:
        problems.append("val is empty (a class needs 2+ groups, i.e. people or clips, outside test)")
    if test_frac > 0 and not test:
        problems.append("test is empty (a class needs 3+ groups for a test share; --report will have nothing)")
    if not problems:
        return None
    return (f"too little data for a train/val/test split: {'; '.join(problems)}; add clips of more people "
            f"(train {len(train)} / val {len(val)} / test {len(test)} real sequences)")


def _load_split(model_path: Path) -> dict | None:
    path = split_path(model_path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())["splits"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"split file {path} is unreadable ({exc}); delete it or re-train") from None


def cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    samples = load_data(args.data, for_training=True)
    if args.classes:
        unknown = set(args.classes) - {s.label for s in samples}
        if unknown:
            raise DataError(f"--classes {', '.join(sorted(unknown))} not found in the data")
        samples = [s for s in samples if s.label in args.classes]
    labels = {s.label for s in samples}
    if not args.no_synthetic_other:
        labels.add(OTHER_LABEL)
    classes = class_order(labels)
    if len(classes) < 2:
        raise DataError(f"need at least two classes to train, found {', '.join(classes)}; add another class folder "
                        f"or keep the synthetic 'other' class")
    split = split_samples(samples, args.val_frac, args.test_frac, args.seed)
    train, val, test = (subset(samples, split[k]) for k in ("train", "val", "test"))
    warning = split_warning(train, val, test, args.val_frac, args.test_frac)
    if warning:
        log.warning(warning)
    if not args.no_synthetic_other:
        from realtime.training.datasets import synthetic_other_samples

        val = val + synthetic_other_samples(20, seed=args.seed + 1000)  # fixed, never trained on
    counts = {c: sum(s.label == c for s in train) for c in classes}
    console.print(f"classes: {', '.join(f'{c} ({counts[c]})' for c in classes)}")
    console.print(f"split by group: train {len(train)} / val {len(val)} / test {len(test)} sequences")
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, channels=args.channels,
                      levels=args.levels, eval_every=args.eval_every, seed=args.seed, threads=args.threads,
                      workers=args.workers,
                      synthetic_other=not args.no_synthetic_other,
                      p_squat_depth=0.4 if args.shallow_squats else 0.0, squat_counterbalance=args.shallow_squats)
    with _progress() as bar:
        task = bar.add_task("training", total=cfg.steps, info="")

        def tick(step: int, info: dict) -> None:
            shown = {k: v for k, v in info.items() if k != "step"}
            text = " ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in shown.items())
            bar.update(task, completed=step, info=text)
            if "elapsed_s" in info and not bar.console.is_terminal:  # logs/CI: one line per evaluation
                print(f"step {step}/{cfg.steps} {text}", file=sys.stderr, flush=True)

        model, hist = train_model(train, val, classes, cfg, tick, init=args.init)
    out = Path(args.out)
    meta = {
        "training": {
            "data": [{"kind": k, "path": str(p), "terms": DATASETS[k].licence} for k, p in map(parse_spec, args.data)],
            "synthetic_other": cfg.synthetic_other, "sequences": {"train": len(train), "val": len(val),
                                                                   "test": len(test)},
            "train_counts": counts, "config": asdict(cfg), "seed": args.seed, "train_seconds": hist["train_seconds"],
            "history": hist["history"], "split_file": split_path(out).name,
            "init": args.init, "ignored_joints": list(FACE_JOINTS),
        },
        "metrics": {},
    }
    if val:
        meta["metrics"]["val"] = _brief(summarise(run_eval(model, {"classes": classes, "normalisation":
                                                                      default_normalisation()}, val), classes))
    split_path(out).parent.mkdir(parents=True, exist_ok=True)
    split_path(out).write_text(json.dumps({"seed": args.seed, "val_frac": args.val_frac, "test_frac": args.test_frac,
                                           "grouping": "by Sample.group (person / source / clip)",
                                           "splits": split}, indent=0) + "\n")
    save_checkpoint(model, classes, meta, out)
    if test:
        results = run_eval(model, {"classes": classes, "normalisation": default_normalisation()}, test)
        if args.report:
            sums = write_report(results, classes, Path(args.report), "Test split",
                                {"path": str(out), "receptive_field": model.receptive_field})
        else:
            groups: dict[str, list[ClipResult]] = {}
            for r in results:
                groups.setdefault(r.source, []).append(r)
            sums = {k: summarise(v, classes) for k, v in groups.items()}
        meta["metrics"]["test"] = {k: _brief(v) for k, v in sums.items()}
        save_checkpoint(model, classes, meta, out)
    console.print(f"saved {out} (+ {out.with_suffix('.json').name}, {split_path(out).name})")
    console.print(json.dumps(meta["metrics"], indent=1))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from realtime.classify.classifier import DEFAULT_WEIGHTS

    model_path = Path(args.model) if args.model else DEFAULT_WEIGHTS
    model, meta = load_model(model_path)
    classes = tuple(meta["classes"])
    samples = load_data(args.data)
    split = _load_split(model_path)
    if split is not None and args.split != "all":
        seen = {i for ids in split.values() for i in ids}
        wanted = set(split.get(args.split, []))
        samples = [s for s in samples if s.id in wanted or (args.split == "test" and s.id not in seen)]
    skipped = [s for s in samples if s.label not in classes]
    if skipped:
        log.warning("%d sequences have labels the model does not know (%s); skipped", len(skipped),
                    ", ".join(sorted({s.label for s in skipped})))
    samples = [s for s in samples if s.label in classes]
    if not samples:
        raise DataError(f"no sequences to evaluate (split {args.split!r}, model classes {', '.join(classes)})")
    with _progress() as bar:
        task = bar.add_task("evaluating", total=len(samples), info="")
        results = run_eval(model, meta, samples, progress=lambda: bar.advance(task), gate=not args.no_gate)
    shown_path = model_path.resolve()
    if shown_path.is_relative_to(Path.cwd()):
        shown_path = shown_path.relative_to(Path.cwd())
    sums = write_report(results, classes, Path(args.out), args.title,
                        {"path": str(shown_path), "receptive_field": model.receptive_field, "split": args.split,
                         "plausibility_rules": not args.no_gate, "ensemble": list(meta.get("ensemble") or [])})
    for name, s in sums.items():
        print(f"{name}: {json.dumps(_brief(s))}")
    print(f"report written to {args.out}/report.md")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    model_path = Path(args.model)
    load_model(model_path, members=False)  # a readable checkpoint, before its metadata is touched
    meta_file = metadata_path(model_path)
    before = meta_file.read_text()
    meta = json.loads(before)
    meta["ensemble"] = [os.path.relpath(Path(m), model_path.parent) for m in args.members]
    if not meta["ensemble"]:
        del meta["ensemble"]
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    try:
        model, _ = load_model(model_path)
    except RealtimeError:
        meta_file.write_text(before)  # keep the checkpoint usable as it was
        raise
    size = len(model.members) if isinstance(model, TCNEnsemble) else 1
    print(f"{model_path}: {size} member(s)")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from realtime import pose

    pose.validate_pose_options(args.pose_model, args.backend, "auto", args.weights)
    video_dir, out_dir = Path(args.videos), Path(args.out)
    if not video_dir.is_dir():
        raise DataError(f"video folder {video_dir} not found; expected <folder>/<class>/<video>.mp4")
    estimator, reason = pose.create_pose_estimator(args.pose_model, args.backend, args.weights)
    print(f"pose engine: {getattr(estimator, 'name', type(estimator).__name__)} ({reason})", file=sys.stderr)
    n = sum(1 for p in video_dir.glob("*/*") if p.suffix.lower() in VIDEO_EXTS)
    try:
        with _progress() as bar:
            task = bar.add_task("extracting", total=n, info="")
            rows = extract_folder(video_dir, out_dir, estimator,
                                  progress=lambda name: bar.update(task, advance=1, info=name),
                                  max_frames=args.max_frames)
    finally:
        estimator.close()
    print(f"wrote {len(rows)} clips + manifest.csv to {out_dir}; next: train --data npz={out_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from realtime.logs import add_verbose_argument, count_verbose, setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging(count_verbose(argv))
    parser = argparse.ArgumentParser(prog="python -m realtime.training.train", description=__doc__.split("\n")[0])
    add_verbose_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RealtimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["ClipResult", "SequenceSampler", "TrainConfig", "add_parsers", "class_order", "extract_folder",
           "iter_video", "main", "run_eval", "split_path", "summarise", "train_model", "write_report"]
