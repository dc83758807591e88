"""Pose options checked up front, before any source is opened or any engine is built: a typo is exit 2 at once."""

from __future__ import annotations

from pathlib import Path

from realtime.errors import RealtimeError, WeightsError

POSE_MODELS: tuple[str, ...] = (
    "auto", "blazepose-lite", "blazepose-full", "vitpose-s", "vitpose-b", "vitpose-l", "vitpose-h",
)
BACKENDS: tuple[str, ...] = ("auto", "tensorrt", "torch2trt", "torch", "onnxruntime", "triton")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "int8")
RANDOM_WEIGHTS = "random"  # --weights random: the real architecture with random weights (benchmarks only)


def _check(option: str, value: str, allowed: tuple[str, ...], allow_list: bool) -> None:
    items = [v.strip() for v in value.split(",")] if allow_list else [value]
    for item in items:
        if item not in allowed:
            raise RealtimeError(f"unknown {option} {item!r}; choose one of {', '.join(allowed)}")


def validate_pose_options(pose_model: str = "auto", backend: str = "auto", precision: str = "auto",
                          weights: str | None = None, *, allow_lists: bool = False) -> None:
    """Raise a one-line ``RealtimeError`` for an unknown --pose-model/--backend/--precision or missing --weights.

    Cheap (no model is loaded, no network): call it before opening any source. ``allow_lists``: comma lists of
    models and backends (``--bench`` compares them). Weights that exist but are broken are reported by the
    engine when it loads them ("not a checkpoint").
    """
    _check("--pose-model", pose_model, POSE_MODELS, allow_lists)
    _check("--backend", backend, BACKENDS, allow_lists)
    _check("--precision", precision, PRECISIONS, False)
    if weights and weights != RANDOM_WEIGHTS and not Path(weights).expanduser().exists():
        from realtime.pose.vitpose import looks_like_hub_id

        if not looks_like_hub_id(weights):
            raise WeightsError(f"weights not found: {weights} (a file, a Hugging Face directory or a hub model id)")


__all__ = ["BACKENDS", "POSE_MODELS", "PRECISIONS", "validate_pose_options"]
