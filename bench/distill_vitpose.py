"""Distil a ViTPose-S network from the bundled BlazePose teacher on real clips (stand-in TRAINED weights).

    python bench/distill_vitpose.py prepare                 # teacher keypoints + crops -> out/distill/*.npz
    python bench/distill_vitpose.py train --minutes 24 --lr 5e-4 --depth 6   # -> out/distill/vitpose-s-distilled/
    python bench/distill_vitpose.py eval                    # PCK@5 %/10 % of the box vs the teacher, held out

No official ViTPose weights can be had here, and random weights give flat, ambiguous heatmaps, which makes INT8
agreement numbers meaningless. This trains the real ViTPose-S architecture (``realtime.pose.vitpose``: width 384,
12 heads, depth 12 unless ``--depth``) to reproduce BlazePose-full's COCO-17 keypoints as Gaussian heatmaps
(64x48, sigma 2) on top-down crops (``topdown.preprocess`` at the teacher's person box, jittered). The result is a
stand-in with peaked heatmaps and trained activation ranges, NOT a real ViTPose: its accuracy is bounded by
BlazePose and by a few minutes of single-core training. On one core, depth 12 did not leave the all-zero-heatmap
plateau within ~300 steps (2.3 s each); depth 6 (1.2 s a step), sin-cos position init and a spatial cross-entropy
term did (24 min: PCK@10 % of the box 0.71 vs the teacher on the held-out clips).

Held out (never trained on): the deadlift ``bad*`` clips, which ``bench/int8_accuracy.py`` evaluates on.
Crops/targets/weights derive from third-party clips: they stay under ``out/distill/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from realtime.pose import topdown, vitpose  # noqa: E402
from realtime.pose.topdown import HEATMAP_HW, INPUT_HW, MEAN_RGB, STD_RGB  # noqa: E402

DATA = Path(os.environ.get("REALTIME_SHARED", REPO.parent / "shared")) / "data"
OUT = REPO / "out" / "distill"
MIN_SCORE = 0.5  # teacher joints below this get zero loss weight (BlazePose visibility x presence)
SIGMA = 2.0
# COCO-17 left/right pairs, for horizontal-flip augmentation.
FLIP_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]


def train_videos() -> list[Path]:
    d = DATA / "deadlift_bichraix" / "videos" / "good"
    return [*sorted(d.glob("*.mp4")), *sorted((DATA / "workouttracker_reps" / "videos").rglob("*.mp4")),
            DATA / "pose_trainer" / "sample_bicep_curl.mp4"]


def heldout_videos() -> list[Path]:
    """All deadlift ``bad*`` clips: int8_accuracy.py evaluates on those with keypoint CSVs."""
    return sorted((DATA / "deadlift_bichraix" / "videos" / "bad").glob("*.mp4"))


def jitter(box: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    x1, y1, x2, y2 = box.astype(np.float64)
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2 + rng.uniform(-amount, amount) * w, (y1 + y2) / 2 + rng.uniform(-amount, amount) * h
    s = 1.0 + rng.uniform(-amount, amount)
    return np.array([cx - s * w / 2, cy - s * h / 2, cx + s * w / 2, cy + s * h / 2], np.float32)


def to_heatmap_px(keypoints: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(17, 2) frame px -> heatmap px through the crop affine and UDP scaling (as decode_heatmaps inverts)."""
    crop = keypoints[:, :2] @ affine[:, :2].T + affine[:, 2]
    return crop * np.array([(HEATMAP_HW[1] - 1.0) / (INPUT_HW[1] - 1.0), (HEATMAP_HW[0] - 1.0) / (INPUT_HW[0] - 1.0)])


def prepare_split(videos: list[Path], out: Path, amount: float, stride: int, seed: int) -> None:
    """Run the teacher over every frame (it tracks), keep every ``stride``-th found pose as crop + target."""
    from realtime.pose.blazepose import BlazePoseEstimator
    from realtime.sources.decode import decode_upright

    rng = np.random.default_rng(seed)
    # What create_pose_estimator("blazepose-full") builds, pinned to 1 thread (the other core is busy).
    teacher = BlazePoseEstimator(variant="full", num_threads=1)
    crops, affines, kps, hm_xy, weights, sizes, ids = [], [], [], [], [], [], []
    for video in videos:
        teacher.reset()
        n0 = len(crops)
        for i, image in enumerate(decode_upright(video, threads=None)):
            res = teacher.estimate(image)
            if res.keypoints is None or res.box is None or i % stride:
                continue
            box = jitter(res.box, rng, amount) if amount > 0 else res.box
            batch, aff = topdown.preprocess(image, box[None])
            # back to the exact uint8 pixels warpAffine produced (8x smaller cache than float32)
            rgb = (batch[0].transpose(1, 2, 0) * STD_RGB + MEAN_RGB).round().clip(0, 255).astype(np.uint8)
            xy = to_heatmap_px(res.keypoints, aff[0])
            inside = ((xy >= -0.5) & (xy <= np.array([HEATMAP_HW[1], HEATMAP_HW[0]]) - 0.5)).all(1)
            crops.append(rgb)
            affines.append(aff[0])
            kps.append(res.keypoints)
            hm_xy.append(xy.astype(np.float32))
            weights.append(((res.keypoints[:, 2] >= MIN_SCORE) & inside).astype(np.float32))
            b = res.box
            sizes.append(float(max(b[2] - b[0], b[3] - b[1])))
            ids.append(f"{video.name}:{i}")
        print(f"{video.name}: {len(crops) - n0} crops", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, crops=np.stack(crops), affines=np.stack(affines), keypoints=np.stack(kps), hm_xy=np.stack(hm_xy),
             weights=np.stack(weights), sizes=np.array(sizes, np.float32), ids=np.array(ids))
    print(f"wrote {len(crops)} crops to {out}", flush=True)


def gaussian_targets(xy, torch):
    """(B, 17, 2) heatmap px -> (B, 17, 64, 48) unnormalised Gaussians (peak 1, sigma ``SIGMA``)."""
    h, w = HEATMAP_HW
    ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    d2 = (xs - xy[..., 0, None, None]) ** 2 + (ys - xy[..., 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * SIGMA**2))


def to_input(crops_u8: np.ndarray, torch):
    x = torch.from_numpy(crops_u8).float()
    x = (x - torch.from_numpy(MEAN_RGB)) / torch.from_numpy(STD_RGB)
    return x.permute(0, 3, 1, 2).contiguous()


def init_sincos_positions(model, torch) -> None:
    """Fixed-style 2D sin-cos position embeddings (MAE, which ViTPose starts from) as the initial values.

    The default 0.02-std random init hides where a token is under its content, so a model trained from scratch
    first spends hundreds of steps learning even a mean-pose prior; sin-cos gives position at step 0.
    """
    pos = model.backbone.embeddings.position_embeddings  # (1, 1 + 16 * 12, D); forward adds pos[0] to all
    dim = pos.shape[-1]
    gh, gw = INPUT_HW[0] // vitpose.PATCH, INPUT_HW[1] // vitpose.PATCH
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim // 4))

    def one_d(positions: np.ndarray) -> np.ndarray:
        out = positions.reshape(-1)[:, None] * omega[None]
        return np.concatenate([np.sin(out), np.cos(out)], 1)

    yy, xx = np.meshgrid(np.arange(gh, dtype=np.float64), np.arange(gw, dtype=np.float64), indexing="ij")
    table = np.concatenate([one_d(yy), one_d(xx)], 1)  # row-major tokens, as the patch conv flattens them
    with torch.no_grad():
        pos.zero_()
        pos[0, 1:] = torch.from_numpy(table).float()


def train(a: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = np.load(OUT / "train.npz")
    crops, hm_xy, weights = data["crops"], data["hm_xy"], data["weights"]
    n = len(crops)
    hidden, depth, heads = vitpose.ARCHS["s"]
    depth = a.depth or depth
    model = vitpose._new_model(vitpose._config(hidden, depth, heads))
    if a.sincos:
        init_sincos_positions(model, torch)
    model.train().requires_grad_(True)
    decay = [p for name, p in model.named_parameters() if p.ndim > 1 and "embeddings" not in name]
    rest = [p for name, p in model.named_parameters() if not (p.ndim > 1 and "embeddings" not in name)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999))
    flip = np.arange(17)
    for i, j in FLIP_PAIRS:
        flip[i], flip[j] = j, i
    rng = np.random.default_rng(0)
    budget = a.minutes * 60.0
    dest = OUT / "vitpose-s-distilled"
    start = time.time()
    step, order, pos, last_save, ema = 0, rng.permutation(n), 0, start, None
    print(f"train: {n} crops, ViTPose hidden {hidden} depth {depth} heads {heads}, batch {a.batch}, lr {a.lr}, "
          f"{a.minutes} min, bf16 autocast {a.bf16}, sin-cos positions {a.sincos}", flush=True)
    while time.time() - start < budget:
        if pos + a.batch > n:
            order, pos = rng.permutation(n), 0
        idx = np.sort(order[pos : pos + a.batch])
        pos += a.batch
        x_u8, xy, w = crops[idx].copy(), hm_xy[idx].copy(), weights[idx].copy()
        flipped = rng.random(len(idx)) < 0.5  # horizontal flip; UDP: crop x -> W-1-x, heatmap x -> w-1-x
        x_u8[flipped] = x_u8[flipped, :, ::-1]
        xy[flipped, :, 0] = HEATMAP_HW[1] - 1 - xy[flipped, :, 0]
        xy[flipped], w[flipped] = xy[flipped][:, flip], w[flipped][:, flip]
        x = to_input(x_u8, torch)
        target = gaussian_targets(torch.from_numpy(xy), torch)
        wt = torch.from_numpy(w)[..., None, None]
        frac = (time.time() - start) / budget  # schedule on wall time: linear warm-up, then cosine to 2 %
        lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            pred = model(pixel_values=x).heatmaps
        pred = pred.float()
        mse = (((pred - target) ** 2) * wt).mean() * 1000.0  # x1000: readable numbers (and sets the CE balance)
        # From scratch, MSE alone sits for hundreds of steps near the all-zero map; a spatial cross-entropy (softmax
        # over the 64x48 pixels of beta * heatmap vs the normalised Gaussian) gives a localising gradient at once and
        # agrees with MSE at the optimum (a peak of 1 over ~0 is already a sharp softmax at beta 10).
        logp = torch.log_softmax(pred.flatten(2) * a.ce_beta, -1)
        dist = target.flatten(2) / target.flatten(2).sum(-1, keepdim=True).clamp_min(1e-6)
        ce = (-(dist * logp).sum(-1) * wt[..., 0, 0]).sum() / wt.sum().clamp_min(1.0)
        loss = mse + a.ce_weight * ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema = float(loss.detach()) if ema is None else 0.95 * ema + 0.05 * float(loss.detach())
        if step % 20 == 0:
            print(f"step {step} samples {step * a.batch} min {(time.time() - start) / 60:.1f} lr {lr:.2e} "
                  f"loss {float(loss):.3f} ema {ema:.3f} mse {float(mse):.3f} ce {float(ce):.3f}", flush=True)
        if time.time() - last_save > 300:
            save(model, dest, step, a, start)
            last_save = time.time()
    save(model, dest, step, a, start)
    print(f"done: {step} steps, {step * a.batch} samples, {(time.time() - start) / 60:.1f} min", flush=True)


def save(model, dest: Path, step: int, a: argparse.Namespace, start: float) -> None:
    model.eval()
    model.save_pretrained(str(dest))  # config.json + model.safetensors: what vitpose.load_vitpose_model reads
    (dest / "distill_info.json").write_text(json.dumps({
        "teacher": "blazepose-full (bundled MediaPipe)", "steps": step, "batch": a.batch, "samples": step * a.batch,
        "minutes": round((time.time() - start) / 60, 1), "lr": a.lr, "bf16_autocast": a.bf16,
        "depth": a.depth or vitpose.ARCHS["s"][1], "sincos_position_init": a.sincos,
        "loss": f"weighted MSE to Gaussians (sigma {SIGMA}) + {a.ce_weight} x spatial CE (beta {a.ce_beta})",
        "note": "distilled stand-in weights, not official ViTPose weights",
    }, indent=1))
    model.train()
    print(f"saved {dest} at step {step}", flush=True)


def evaluate(a: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(1)
    data = np.load(OUT / "heldout.npz")
    model = vitpose.load_vitpose_model(str(a.weights))
    maps = np.concatenate([vitpose.heatmaps(model, to_input(data["crops"][i : i + 8], torch)).numpy()
                           for i in range(0, len(data["crops"]), 8)])
    pred = topdown.decode_heatmaps(maps, data["affines"])
    teacher, sizes = data["keypoints"], data["sizes"]
    ok = teacher[..., 2] >= MIN_SCORE
    dist = np.linalg.norm(pred[..., :2] - teacher[..., :2], axis=-1)
    flat = maps.reshape(*maps.shape[:2], -1)
    z = (flat.max(-1) - flat.mean(-1)) / np.maximum(flat.std(-1), 1e-12)
    report = {
        "weights": str(a.weights), "heldout_clips": sorted({s.split(":")[0] for s in data["ids"]}),
        "heldout_crops": len(pred), "joints_scored": int(ok.sum()),
        "pck@0.05_vs_teacher": round(float((dist <= 0.05 * sizes[:, None])[ok].mean()), 4),
        "pck@0.10_vs_teacher": round(float((dist <= 0.10 * sizes[:, None])[ok].mean()), 4),
        "peak_value_median": round(float(np.median(pred[..., 2][ok])), 3),
        "peak_z_median": round(float(np.median(z)), 2),
    }
    print(json.dumps(report, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> int:
    from realtime.logs import add_verbose_argument, setup_logging

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare", help="teacher keypoints + crops for train (jittered) and held-out clips")
    pp.add_argument("--jitter", type=float, default=0.15)
    pp.add_argument("--heldout-stride", type=int, default=4)
    pt = sub.add_parser("train")
    pt.add_argument("--minutes", type=float, default=30.0)
    pt.add_argument("--batch", type=int, default=8)
    pt.add_argument("--lr", type=float, default=5e-4)
    pt.add_argument("--warmup", type=int, default=40)
    pt.add_argument("--ce-weight", type=float, default=20.0, help="weight of the spatial cross-entropy term")
    pt.add_argument("--ce-beta", type=float, default=10.0, help="softmax sharpness of that term")
    pt.add_argument("--depth", type=int, default=None, help="fewer blocks than ViTPose-S's 12 (CPU time)")
    pt.add_argument("--no-sincos", dest="sincos", action="store_false", help="random position-embedding init")
    pt.add_argument("--no-bf16", dest="bf16", action="store_false", help="fp32 instead of bf16 autocast")
    pe = sub.add_parser("eval")
    pe.add_argument("--weights", default=str(OUT / "vitpose-s-distilled"))
    pe.add_argument("--json", default=None)
    add_verbose_argument(p)
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    if not (DATA / "deadlift_bichraix").is_dir():
        print(f"error: real clips not found under {DATA}", file=sys.stderr)
        return 2
    if a.cmd == "prepare":
        prepare_split(train_videos(), OUT / "train.npz", a.jitter, stride=1, seed=0)
        prepare_split(heldout_videos(), OUT / "heldout.npz", 0.0, stride=a.heldout_stride, seed=1)
    elif a.cmd == "train":
        train(a)
    else:
        evaluate(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
