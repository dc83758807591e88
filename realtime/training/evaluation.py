"""Evaluating a classifier checkpoint: per-clip streaming results, summaries, the report and its plots."""

from __future__ import annotations

import csv
import json
import logging
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realtime.classify.classifier import (
    label_smoother,
    predict_steps,
)
from realtime.classify.tcn import CausalTCN
from realtime.classify.ticks import MODEL_RATE
from realtime.training.datasets import Sample
from realtime.types import OTHER_LABEL

log = logging.getLogger(__name__)


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


def brief(s: dict) -> dict:
    st = s["streaming"]
    return {"clips": s["clips"], "clip_accuracy": round(s["clip_accuracy"], 4),
            "exercise_clip_accuracy": None if math.isnan(s["exercise_clip_accuracy"]) else round(
                s["exercise_clip_accuracy"], 4),
            "frame_accuracy": round(s["frame_accuracy"], 4), "right_within_1s": round(st["right_within_1s"], 4),
            "median_delay_s": round(st["median_delay_s"], 3) if math.isfinite(st["median_delay_s"]) else None,
            "flips_per_min": round(st["flips_per_min"], 3) if math.isfinite(st["flips_per_min"]) else None}


