"""Pose engines: one interface over ViTPose (top-down, any backend) and the bundled BlazePose."""

from __future__ import annotations

import logging
import os
from typing import Protocol, runtime_checkable

import numpy as np

from realtime.errors import RealtimeError
from realtime.pose.options import BACKENDS as BACKENDS
from realtime.pose.options import POSE_MODELS as POSE_MODELS
from realtime.pose.options import PRECISIONS as PRECISIONS
from realtime.pose.options import validate_pose_options as validate_pose_options
from realtime.types import PoseResult

log = logging.getLogger(__name__)


@runtime_checkable
class PoseEstimator(Protocol):
    """Frame in, the lifter's COCO-17 pose out."""

    name: str  # what runs, e.g. "vitpose-b/onnxruntime[cpu,fp32]" or "blazepose-full"

    def estimate(self, image: np.ndarray) -> PoseResult:
        """(H, W, 3) uint8 BGR -> the followed person's pose (``keypoints`` None when nobody is in view)."""
        ...

    def reset(self) -> None:
        """Forget tracking state (new source, reconnect)."""
        ...

    def close(self) -> None: ...


def create_pose_estimator(
    pose_model: str = "auto",
    backend: str = "auto",
    weights: str | None = None,
    precision: str = "auto",
    pick: str = "largest",
    rebuild: bool = False,
    **options,
) -> tuple[PoseEstimator, str]:
    """One camera's engine, owning its models: the estimator and a one-line reason for the choice.

    Engines return raw keypoints; display/analysis smoothing is the pipeline's job (realtime.pose.smoothing).
    """
    engine = create_pose_engine(pose_model, backend, weights, precision, rebuild, max_batch=1, **options)
    estimator = engine.estimator(pick)
    close = estimator.close

    def close_all() -> None:
        close()
        engine.close()

    estimator.close = close_all  # the single estimator owns the engine
    return estimator, engine.reason


def resolve_pose_model(pose_model: str, weights: str | None, backend: str = "auto") -> tuple[str, str | None, str]:
    """``--pose-model auto`` -> the concrete model, the weights and why (ViTPose when weights are present)."""
    if pose_model not in POSE_MODELS:
        raise RealtimeError(f"unknown --pose-model {pose_model!r}; choose one of {', '.join(POSE_MODELS)}")
    if pose_model != "auto":
        return pose_model, weights, f"--pose-model {pose_model}"
    from realtime.pose import vitpose

    found = weights or vitpose.find_local_weights()
    if found:
        return "vitpose-" + vitpose.guess_variant(found), found, f"ViTPose weights found at {found}"
    if backend == "triton":
        return "vitpose-b", None, "--backend triton serves ViTPose"
    return "blazepose-full", None, "no ViTPose weights present (--weights); using the bundled BlazePose"


def create_pose_engine(
    pose_model: str = "auto",
    backend: str = "auto",
    weights: str | None = None,
    precision: str = "auto",
    rebuild: bool = False,
    *,
    max_batch: int = 16,
    max_wait_ms: float = 4.0,
    cameras: int = 1,
    **options,
):
    """The analyzer's pose engine (``realtime.pose.shared.SharedPoseEngine``): models loaded once, shared by every
    camera; ViTPose crops from all cameras are batched (``max_batch``, ``max_wait_ms``); BlazePose gets one interpreter
    pair per core, up to the number of ``cameras``."""
    validate_pose_options(pose_model, backend, precision)  # a typo is exit 2 on every path, BlazePose's too
    from realtime.pose.batching import Batcher, FairGate
    from realtime.pose.shared import GatedDetector, SharedPoseEngine

    pose_model, weights, reason = resolve_pose_model(pose_model, weights, backend)
    if pose_model.startswith("blazepose"):
        from realtime.pose.blazepose import BlazePoseEstimator, BlazePoseModels, BlazePosePool

        ignored = [f"--{name} {value}" for name, value, default in (("backend", backend, "auto"),
                                                                     ("precision", precision, "auto"))
                   if value != default]
        if ignored:  # say so rather than silently running something other than what was asked
            verb = "applies" if len(ignored) == 1 else "apply"
            reason += f"; {' and '.join(ignored)} {verb} to ViTPose only, BlazePose runs float32 on the CPU (LiteRT)"
        from realtime.pose.detector import default_threads

        variant = pose_model.split("-")[1]
        cores = default_threads()
        # REALTIME_BLAZEPOSE_COPIES overrides how many interpreter pairs serve the cameras (1: one pair, all threads).
        copies = max(1, int(os.environ.get("REALTIME_BLAZEPOSE_COPIES") or min(cameras, cores)))
        # One camera: one interpreter pair on every core. Several: a pair per core, one thread each.
        models = BlazePoseModels(variant) if copies == 1 else BlazePosePool(variant, copies, max(1, cores // copies))
        return SharedPoseEngine(
            f"blazepose-{variant}", reason,
            lambda pick: BlazePoseEstimator(variant=variant, pick=pick, models=models),
            closers=(models.close,),
        )
    from realtime.pose.detector import BlazePersonDetector
    from realtime.pose.vitpose_estimator import VitPoseEstimator, create_vitpose_runtime

    variant = pose_model.split("-")[1]
    runtime, suffix = create_vitpose_runtime(variant, backend, weights, precision, rebuild, **options)
    detector = GatedDetector(BlazePersonDetector(), FairGate())
    # A Triton server batches across cameras and hosts itself: each camera sends its own request there.
    batcher = None if runtime.name.startswith("triton") else Batcher(runtime, max_batch, max_wait_ms)
    network = batcher if batcher is not None else runtime
    name = f"vitpose-{variant}/{runtime.name}{suffix}"

    def make(pick: str | int) -> VitPoseEstimator:
        estimator = VitPoseEstimator(network, variant, pick=pick, detector=detector, owns_backend=False)
        estimator.name = name
        return estimator

    return SharedPoseEngine(name, reason, make, batcher=batcher,
                            closers=(network.close, detector.close))
