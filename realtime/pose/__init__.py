"""Pose engines: one interface over ViTPose (top-down, any backend) and the bundled BlazePose."""

from __future__ import annotations

import logging
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
) -> tuple[PoseEstimator, str]:
    """Build the engine the user asked for; returns it and a one-line reason for the choice.

    Engines return raw keypoints; display/analysis smoothing is the pipeline's job (realtime.pose.smoothing).
    """
    validate_pose_options(pose_model, backend, precision)  # a typo is exit 2 on every path, BlazePose's too
    if pose_model not in POSE_MODELS:
        raise RealtimeError(f"unknown --pose-model {pose_model!r}; choose one of {', '.join(POSE_MODELS)}")
    if pose_model == "auto":
        from realtime.pose import vitpose

        found = weights or vitpose.find_local_weights()
        if found:
            pose_model, weights = "vitpose-" + vitpose.guess_variant(found), found
            reason = f"ViTPose weights found at {found}"
        else:
            pose_model = "blazepose-full"
            reason = "no ViTPose weights present (--weights); using the bundled BlazePose"
    else:
        reason = f"--pose-model {pose_model}"
    if pose_model.startswith("blazepose"):
        from realtime.pose.blazepose import BlazePoseEstimator

        ignored = [f"--{name} {value}" for name, value, default in (("backend", backend, "auto"),
                                                                     ("precision", precision, "auto"))
                   if value != default]
        if ignored:  # say so rather than silently running something other than what was asked
            verb = "applies" if len(ignored) == 1 else "apply"
            reason += f"; {' and '.join(ignored)} {verb} to ViTPose only, BlazePose runs float32 on the CPU (LiteRT)"
        return BlazePoseEstimator(variant=pose_model.split("-")[1], pick=pick), reason
    from realtime.pose.vitpose_estimator import create_vitpose_estimator

    estimator = create_vitpose_estimator(
        variant=pose_model.split("-")[1], backend=backend, weights=weights, precision=precision,
        pick=pick, rebuild=rebuild,
    )
    return estimator, reason
