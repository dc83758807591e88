"""Top-down ViTPose as a ``PoseEstimator``: person box (tracker) -> crop -> backend -> DARK decode.

``create_vitpose_estimator`` picks the backend (``realtime.backends.select``) and loads or exports the network
through ``realtime.pose.vitpose``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from realtime.errors import BackendUnavailable, WeightsError
from realtime.pose import vitpose
from realtime.pose.topdown import decode_heatmaps, preprocess
from realtime.types import PoseResult

log = logging.getLogger(__name__)



class VitPoseEstimator:
    """Top-down ViTPose: person box (tracker) -> crop -> backend -> DARK decode; implements ``PoseEstimator``."""

    # Mean keypoint score below which the crop is taken to hold nobody. Not tuned on real ViTPose weights (none
    # reachable here); ViTPose peaks are ~0.7-0.9 on visible joints.
    MIN_MEAN_SCORE = 0.2

    def __init__(self, backend, variant: str, pick: str = "largest", min_mean_score: float | None = None,
                 detector=None, owns_backend: bool = True) -> None:
        from realtime.pose.tracking import create_tracker

        self.backend = backend
        self.tracker = create_tracker(pick, detector)
        self._owns_backend = owns_backend  # False when the network is shared by several cameras
        self.min_mean_score = self.MIN_MEAN_SCORE if min_mean_score is None else min_mean_score
        self.name = f"vitpose-{variant}/{backend.name}"
        self._infer_frame = getattr(backend, "infer_frame", None)  # optional: crop on the device

    def estimate(self, image: np.ndarray) -> PoseResult:
        started = time.perf_counter()
        box, detected = self.tracker.next_box(image)
        detect_ms = (time.perf_counter() - started) * 1000.0 if detected else 0.0
        if box is None:
            return PoseResult(keypoints=None, infer_ms=detect_ms, detected=detected)
        keypoints, infer_ms = self._frame_keypoints(image, box)
        self.tracker.update(keypoints)
        present = float(keypoints[:, 2].mean()) >= self.min_mean_score
        return PoseResult(keypoints=keypoints if present else None, box=np.asarray(box, np.float32),
                          infer_ms=detect_ms + infer_ms, detected=detected, track_id=self.tracker.track_id)

    def estimate_batch(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
        """One (4,) xyxy box per image, all crops in one network call -> ((N, 17, 3) keypoints, network ms)."""
        crops = [preprocess(image, np.asarray(box, np.float32)[None]) for image, box in zip(images, boxes, strict=True)]
        batch = np.concatenate([c[0] for c in crops])
        affines = np.concatenate([c[1] for c in crops])
        started = time.perf_counter()
        maps = self.backend.infer(batch)
        infer_ms = (time.perf_counter() - started) * 1000.0
        return decode_heatmaps(maps, affines), infer_ms

    def _frame_keypoints(self, image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float]:
        """One frame's crop -> ((17, 3) keypoints, ms). Backends with ``infer_frame`` (TensorRT) crop on the GPU."""
        if self._infer_frame is None:
            keypoints, infer_ms = self.estimate_batch([image], [box])
            return keypoints[0], infer_ms
        started = time.perf_counter()
        maps, affines = self._infer_frame(image, np.asarray(box, np.float32)[None])
        infer_ms = (time.perf_counter() - started) * 1000.0
        return decode_heatmaps(maps, affines)[0], infer_ms

    def reset(self) -> None:
        self.tracker.reset()

    def close(self) -> None:
        if self._owns_backend:
            self.backend.close()


RANDOM_WEIGHTS = "random"  # --weights random: the real architecture, random weights (benchmarks only)


def create_vitpose_estimator(
    variant: str,
    backend: str = "auto",
    weights: str | None = None,
    precision: str = "auto",
    pick: str = "largest",
    rebuild: bool = False,
    **options,
) -> VitPoseEstimator:
    """ViTPose-``variant`` for one camera, owning its network (see ``create_vitpose_runtime``)."""
    runtime, suffix = create_vitpose_runtime(variant, backend, weights, precision, rebuild, **options)
    estimator = VitPoseEstimator(runtime, variant, pick=pick)
    estimator.name += suffix
    return estimator


def create_vitpose_runtime(
    variant: str,
    backend: str = "auto",
    weights: str | None = None,
    precision: str = "auto",
    rebuild: bool = False,
    **options,
) -> tuple[object, str]:
    """The ViTPose-``variant`` network on the chosen backend (``auto``: ``realtime.backends.select.choose_backend``)
    and a suffix for the engine's name.

    ``weights``: see ``load_vitpose_model``; an ``.onnx`` file goes to the backend as is. Without ``weights`` the
    local ones are used (``find_local_weights``). The PyTorch model is only loaded when the backend runs it or the
    ONNX export is not cached yet. ``rebuild`` deletes the cached ONNX export first (and asks the backend to
    rebuild its engine). ``options`` go to the backend's factory (``triton_url``, ``triton_model``, ...). The
    ``triton`` backend needs no weights here: the network lives on the server.
    """
    from realtime.backends import load_factory
    from realtime.backends.select import choose_backend, resolve_precision

    vitpose.check_variant_name(variant)
    name, reason = choose_backend(backend)
    precision = resolve_precision(precision, name)
    log.info("ViTPose-%s backend %s %s (%s)", variant.upper(), name, precision, reason)
    if name == "triton":
        return load_factory(name)(None, None, precision=precision, device=None, variant=variant, **options), ""
    weights = weights or vitpose.find_local_weights(variant)
    if not weights:
        raise WeightsError(f"no ViTPose-{variant.upper()} weights on this machine: {vitpose.DOWNLOAD_HINT}")
    if weights == RANDOM_WEIGHTS:
        # Speed measurements only (--bench): the real architecture with seeded random weights.
        import torch

        from realtime.backends.engine_cache import engines_dir

        torch.manual_seed(0)
        model = vitpose.build_vitpose(variant)
        onnx_path = engines_dir() / f"vitpose-{variant}_random_fp32_op17.onnx"
        if rebuild:
            onnx_path.unlink(missing_ok=True)
        runtime = load_factory(name)(model, onnx_path, precision=precision, device=None, variant=variant,
                                     rebuild=rebuild, **options)
        return runtime, " (random weights)"
    if weights.lower().endswith(".onnx"):
        if name in ("torch", "torch2trt"):
            raise BackendUnavailable(f"--backend {name} needs PyTorch weights, not the ONNX file {weights}; "
                                     f"use --backend onnxruntime or tensorrt")
        model, onnx_path = None, Path(weights)
        if not onnx_path.is_file():
            raise WeightsError(f"weights not found: {weights}")
    else:
        local = vitpose.resolve_weights(weights)
        onnx_path = vitpose.onnx_cache_path(local, variant)
        if rebuild and onnx_path.exists():
            log.info("--rebuild: removing %s", onnx_path)
            onnx_path.unlink()
            onnx_path.with_name(onnx_path.name + ".data").unlink(missing_ok=True)
        # ONNX-based backends with a cached export need no PyTorch model: skip loading it (seconds, GBs for H).
        needs_model = name in ("torch", "torch2trt") or not onnx_path.is_file()
        model = vitpose.load_vitpose_model(local, variant) if needs_model else None
    runtime = load_factory(name)(model, onnx_path, precision=precision, device=None, variant=variant, rebuild=rebuild,
                                 **options)
    return runtime, ""
