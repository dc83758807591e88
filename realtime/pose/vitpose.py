"""ViTPose (Xu et al. 2022) as a top-down pose engine: model configs, weights loading/conversion, ONNX export, estimator.

The network is transformers' ``VitPoseForPoseEstimation``; cropping and heatmap decoding are in ``realtime.pose.topdown``
and the inference runtime is a ``realtime.backends`` backend. Weights are accepted as a Hugging Face directory or
model id, an official mmpose ``.pth`` checkpoint (converted here), or an ``.onnx`` export (ONNX Runtime/TensorRT).
Pickled checkpoints are only read with ``torch.load(weights_only=True)``: no code in a file is ever run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from realtime.backends.engine_cache import engines_dir
from realtime.errors import RealtimeError, WeightsError
from realtime.pose.topdown import HEATMAP_HW, INPUT_HW
from realtime.types import NUM_JOINTS

log = logging.getLogger(__name__)

VARIANTS: frozenset[str] = frozenset({"s", "b", "l", "h"})
# Official ViTPose sizes: hidden size, depth, attention heads (MLP ratio 4, patch 16, 256x192 input).
ARCHS: dict[str, tuple[int, int, int]] = {"s": (384, 12, 12), "b": (768, 12, 12), "l": (1024, 24, 16), "h": (1280, 32, 16)}
TINY_ARCH = (32, 2, 2)  # random test/CI model; not a real ViTPose size
SIZE_NAMES = {"s": "small", "b": "base", "l": "large", "h": "huge"}
PATCH = 16
# Heads cannot be read from weight shapes; they follow from the hidden size for every known config.
_HEADS_BY_HIDDEN = {hidden: heads for hidden, _, heads in (*ARCHS.values(), TINY_ARCH)}
_VARIANT_BY_HIDDEN = {hidden: v for v, (hidden, _, _) in ARCHS.items()}
WEIGHTS_ENV = "REALTIME_VITPOSE_WEIGHTS"
_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DOWNLOAD_HINT = (
    "the official ViTPose weights must be downloaded (internet), e.g. `usyd-community/vitpose-base-simple` from the "
    "Hugging Face hub or an official ViTPose .pth; pass it with --weights PATH_OR_ID (or set REALTIME_VITPOSE_WEIGHTS)"
)


# --------------------------------------------------------------------------------------------- model configs


def _config(hidden: int, depth: int, heads: int, mlp_ratio: int = 4, simple_decoder: bool = True,
            qkv_bias: bool = True, num_experts: int = 1, part_features: int = 0):
    from transformers import VitPoseBackboneConfig, VitPoseConfig

    backbone = VitPoseBackboneConfig(
        image_size=list(INPUT_HW), patch_size=[PATCH, PATCH], hidden_size=hidden, num_hidden_layers=depth,
        num_attention_heads=heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, layer_norm_eps=1e-6,  # mmpose ViT eps
        num_experts=num_experts, part_features=part_features, out_indices=[depth], attn_implementation="sdpa",
    )
    return VitPoseConfig(backbone_config=backbone, num_labels=NUM_JOINTS, use_simple_decoder=simple_decoder)


def _new_model(config):
    from transformers import VitPoseForPoseEstimation

    model = VitPoseForPoseEstimation(config)
    model.eval().requires_grad_(False)
    return model


def build_vitpose(variant: str, tiny: bool = False, *, simple_decoder: bool = True):
    """A ViTPose model with random weights (``tiny``: hidden 32, depth 2, for fast tests)."""
    check_variant_name(variant)
    hidden, depth, heads = TINY_ARCH if tiny else ARCHS[variant]
    return _new_model(_config(hidden, depth, heads, simple_decoder=simple_decoder))


def heatmaps(model, batch):
    """Run the network: (N, 3, 256, 192) tensor/array -> (N, 17, 64, 48) float tensor (no autograd)."""
    import torch

    if not isinstance(batch, torch.Tensor):
        batch = torch.from_numpy(np.ascontiguousarray(batch, np.float32))
    param = next(model.parameters())
    with torch.inference_mode():
        return model(pixel_values=batch.to(param.device, param.dtype)).heatmaps


def heatmap_module(model):
    """Wrap a ``VitPoseForPoseEstimation`` as a plain ``pixel_values -> heatmaps`` tensor module (for exporters)."""
    import torch

    class _Heatmaps(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.inner(pixel_values=pixel_values).heatmaps

    return _Heatmaps(model).eval()


def variant_of(model) -> str | None:
    """'s'|'b'|'l'|'h' from the model's hidden size, None for non-standard (e.g. tiny test) models."""
    return _VARIANT_BY_HIDDEN.get(int(model.config.backbone_config.hidden_size))


def check_variant_name(variant: str) -> None:
    if variant not in VARIANTS:
        raise RealtimeError(f"unknown ViTPose variant {variant!r}; choose one of s, b, l, h")


# ------------------------------------------------------------------------------------ mmpose checkpoints

_HEAD_CLASSIC = {"deconv_layers.0.": "deconv1.", "deconv_layers.1.": "batchnorm1.", "deconv_layers.3.": "deconv2.",
                 "deconv_layers.4.": "batchnorm2.", "final_layer.": "conv."}
_BLOCK_PARTS = {"norm1.": "layernorm_before.", "norm2.": "layernorm_after.", "attn.proj.": "attention.output.dense."}


def convert_mmpose_state_dict(sd: dict) -> dict:
    """Official ViTPose/mmpose key layout -> ``VitPoseForPoseEstimation`` names (tensors are not copied).

    ``attn.qkv`` is split into query/key/value. ViTPose+ (multi-dataset MoE) checkpoints are reduced to their COCO
    model, as upstream ``tools/model_split.py`` does: expert 0 is appended to each ``mlp.fc2`` and the other experts
    and the ``associate_keypoint_heads`` are dropped. Unknown keys are kept, so loading reports them.
    """
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    out: dict = {}
    for key, value in sd.items():
        if key.startswith("associate_keypoint_heads.") or key == "backbone.cls_token":
            continue  # other datasets' heads / unused class token
        if key.startswith("keypoint_head."):
            rest = key.removeprefix("keypoint_head.")
            for old, new in _HEAD_CLASSIC.items():
                if rest.startswith(old):
                    rest = new + rest.removeprefix(old)
                    break
            out["head." + rest] = value
            continue
        match = re.match(r"backbone\.blocks\.(\d+)\.(.+)$", key)
        if match:
            layer, rest = f"backbone.encoder.layer.{match[1]}.", match[2]
            if rest.startswith("attn.qkv."):
                suffix = rest.removeprefix("attn.qkv.")
                for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                    out[f"{layer}attention.attention.{name}.{suffix}"] = part
                continue
            for old, new in _BLOCK_PARTS.items():
                if rest.startswith(old):
                    rest = new + rest.removeprefix(old)
                    break
            out[layer + rest] = value
            continue
        renamed = {"backbone.pos_embed": "backbone.embeddings.position_embeddings",
                   "backbone.patch_embed.proj.weight": "backbone.embeddings.patch_embeddings.projection.weight",
                   "backbone.patch_embed.proj.bias": "backbone.embeddings.patch_embeddings.projection.bias",
                   "backbone.last_norm.weight": "backbone.layernorm.weight",
                   "backbone.last_norm.bias": "backbone.layernorm.bias"}.get(key, key)
        out[renamed] = value
    return _merge_experts(out)


def _merge_experts(sd: dict, expert: int = 0) -> dict:
    """MoE MLP (shared fc2 + per-dataset expert rows) -> plain fc2 for one dataset (0 = COCO); HF key layout."""
    import torch

    if not any(".mlp.experts." in k for k in sd):
        return sd
    merged = {k: v for k, v in sd.items() if ".mlp.experts." not in k}
    for key in [k for k in sd if re.search(r"\.mlp\.fc2\.(weight|bias)$", k)]:
        expert_key = key.replace(".mlp.fc2.", f".mlp.experts.{expert}.")
        if expert_key not in sd:
            raise WeightsError(f"MoE checkpoint lacks {expert_key}; cannot build its COCO model")
        merged[key] = torch.cat([sd[key], sd[expert_key]], dim=0)
    return merged


def _config_from_state_dict(sd: dict, source: str):
    """Architecture from the shapes of a HF-layout ViTPose state dict (raises WeightsError when it is not one)."""
    try:
        proj = sd["backbone.embeddings.patch_embeddings.projection.weight"]
        pos = sd["backbone.embeddings.position_embeddings"]
        fc1 = sd["backbone.encoder.layer.0.mlp.fc1.weight"]
        head = sd["head.conv.weight"]
    except KeyError as exc:
        raise WeightsError(f"{source}: not a ViTPose checkpoint (no {exc.args[0]} after conversion)") from None
    hidden = int(proj.shape[0])
    if tuple(proj.shape[1:]) != (3, PATCH, PATCH):
        raise WeightsError(f"{source}: patch embedding {tuple(proj.shape)} is not ViTPose's 16x16 RGB patches")
    patches = (INPUT_HW[0] // PATCH) * (INPUT_HW[1] // PATCH)
    if pos.shape[1] != patches + 1:
        raise WeightsError(f"{source}: position embedding for {pos.shape[1] - 1} patches; only 256x192 input models "
                           f"({patches} patches) are supported")
    if hidden not in _HEADS_BY_HIDDEN:
        raise WeightsError(f"{source}: hidden size {hidden} is not ViTPose-S/B/L/H (384/768/1024/1280)")
    if int(head.shape[0]) != NUM_JOINTS:
        raise WeightsError(f"{source}: head predicts {head.shape[0]} keypoints, not COCO's 17 (use a COCO checkpoint)")
    depth = 1 + max(int(m[1]) for k in sd if (m := re.match(r"backbone\.encoder\.layer\.(\d+)\.", k)))
    return _config(hidden, depth, _HEADS_BY_HIDDEN[hidden], mlp_ratio=int(fc1.shape[0]) // hidden,
                   simple_decoder="head.deconv1.weight" not in sd,
                   qkv_bias="backbone.encoder.layer.0.attention.attention.query.bias" in sd)


def _model_from_state_dict(sd: dict, source: str):
    """Build the matching model and load ``sd`` strictly (mmpose or HF key layout)."""
    if any(k.removeprefix("module.").startswith(("backbone.blocks.", "backbone.patch_embed.")) for k in sd):
        sd = convert_mmpose_state_dict(sd)
    else:
        sd = _merge_experts({k.removeprefix("module."): v for k, v in sd.items()})
    model = _new_model(_config_from_state_dict(sd, source))
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise WeightsError(f"{source}: tensor shapes do not fit a ViTPose model ({_first_line(exc)})") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise WeightsError(f"{source}: not a ViTPose checkpoint we can convert ({what})")
    return model.float().eval().requires_grad_(False)


def _numpy_safe_globals() -> list:
    """numpy array/scalar/dtype rebuilders, under their numpy 1.x and 2.x pickle names."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    allowed: list = [np.dtype, np.ndarray]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtypes by class, e.g. numpy.dtypes.Float64DType
    allowed += [getattr(dtypes, name) for name in getattr(dtypes, "__all__", ())]
    for name in ("_reconstruct", "scalar"):
        allowed += [(getattr(multiarray, name), f"numpy.{pkg}.multiarray.{name}") for pkg in ("core", "_core")]
    return allowed


def _refused_global(exc: Exception) -> str | None:
    """The class/function a weights-only unpickling refused to build, from torch's message (None: not that)."""
    match = re.search(r"Unsupported global: GLOBAL (\S+)|but got <class '([^']+)'>", str(exc))
    return (match[1] or match[2]) if match else None


def _torch_load(path: Path) -> dict:
    """``torch.load(weights_only=True)``; numpy arrays in mmpose ``meta`` are allowed, nothing else is unpickled."""
    import pickle

    import torch

    def load() -> object:
        return torch.load(path, map_location="cpu", weights_only=True)

    try:
        try:
            obj = load()
        except pickle.UnpicklingError as exc:
            if not (_refused_global(exc) or "").startswith("numpy"):
                raise
            # mmpose checkpoints may carry numpy values in "meta"; these rebuild data and cannot run code.
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                obj = load()
    except pickle.UnpicklingError as exc:
        name = _refused_global(exc)
        if name:
            raise WeightsError(f"{path}: holds a pickled {name} object, refused for safety (only tensors and numpy "
                               f"data are loaded); re-save just its state_dict") from None
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?)") from None
    except Exception as exc:  # zip/EOF errors of a truncated or non-PyTorch file
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): "
                           f"{_first_line(exc)[:160]}") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "module"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(hasattr(v, "shape") for v in obj.values()):
        raise WeightsError(f"{path}: no tensor state_dict inside (expected an mmpose/PyTorch ViTPose checkpoint)")
    return obj


# ------------------------------------------------------------------------ Hugging Face dirs and model ids


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _load_hf_dir(path: Path):
    config_file = path / "config.json"
    if not config_file.is_file():
        raise WeightsError(f"{path}: no config.json; expected a Hugging Face ViTPose directory (save_pretrained)")
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{config_file}: unreadable JSON ({_first_line(exc)})") from None
    if model_type != "vitpose":
        raise WeightsError(f"{path}: config.json is a {model_type!r} model, not 'vitpose'")
    if not any((path / f).exists() for f in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")):
        raise WeightsError(f"{path}: no model.safetensors; the download is incomplete")
    from transformers import VitPoseConfig, VitPoseForPoseEstimation
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no per-tensor progress bar on the live app's terminal
    try:
        config = VitPoseConfig.from_pretrained(path)
        config.backbone_config._attn_implementation = "sdpa"
        model, info = VitPoseForPoseEstimation.from_pretrained(path, config=config, output_loading_info=True)
    except Exception as exc:  # corrupt safetensors, shape mismatches, ...
        raise WeightsError(f"{path}: cannot load the ViTPose weights ({_first_line(exc)[:200]})") from None
    missing = [k for k in info.get("missing_keys", ()) if not k.endswith("num_batches_tracked")]
    if missing or info.get("mismatched_keys"):
        bad = sorted(missing or [str(k) for k in info["mismatched_keys"]])
        raise WeightsError(f"{path}: weights do not match its config.json (e.g. {bad[0]})")
    model.float().eval().requires_grad_(False)  # hub files may be stored in fp16
    if model.config.backbone_config.num_experts > 1:  # ViTPose+ hub models: keep the COCO expert only
        model = _model_from_state_dict(model.state_dict(), str(path))
    if model.config.num_labels != NUM_JOINTS:
        raise WeightsError(f"{path}: head predicts {model.config.num_labels} keypoints, not COCO's 17")
    return model


def _cached_snapshot(repo_id: str) -> Path | None:
    """The local Hugging Face cache's snapshot of ``repo_id`` with its weights, without any network access."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in ("model.safetensors", "model.safetensors.index.json"):
        try:
            found = try_to_load_from_cache(repo_id, name)
        except Exception:  # malformed repo id
            return None
        if isinstance(found, str) and (Path(found).parent / "config.json").exists():
            return Path(found).parent
    return None


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """TCP connect to the hub within ``timeout`` s (DNS included: getaddrinfo has no timeout of its own)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme != "http" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _hub_snapshot(repo_id: str) -> Path:
    """Local directory for a hub model id: the cache when present, else a download; fails fast when offline."""
    cached = _cached_snapshot(repo_id)
    if cached is not None:
        return cached
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")  # behind a proxy, probe the proxy
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    if offline or not _reachable(proxy or endpoint):
        why = "HF_HUB_OFFLINE is set" if offline else f"{urlparse(endpoint).hostname} is unreachable"
        raise WeightsError(f"cannot download {repo_id}: {why} and it is not in the local Hugging Face cache; "
                           f"download it where there is internet and pass --weights DIR")
    from huggingface_hub import snapshot_download

    log.info("downloading %s from the Hugging Face hub", repo_id)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"], etag_timeout=10))
    except Exception as exc:
        raise WeightsError(f"cannot download {repo_id}: {_first_line(exc)[:200]}") from None


def looks_like_hub_id(weights: str) -> bool:
    """``owner/name`` without a weights-file suffix: a Hugging Face hub model id, not a local path."""
    return bool(_HUB_ID.match(weights)) and not weights.lower().endswith((*_TORCH_SUFFIXES, ".onnx", ".safetensors"))


def resolve_weights(weights: str) -> str:
    """Local path for ``weights`` (a path as is, a hub id -> cached/downloaded snapshot dir); WeightsError if none."""
    path = Path(weights).expanduser()
    if path.exists():
        return str(path)
    if looks_like_hub_id(weights):
        return str(_hub_snapshot(weights))
    raise WeightsError(f"weights not found: {weights} (a file, a Hugging Face directory or a hub model id)")


# ------------------------------------------------------------------------------------------- public loaders


def load_vitpose_model(weights: str, variant: str | None = None):
    """Load ViTPose weights as an eval-mode float32 ``VitPoseForPoseEstimation`` on the CPU.

    ``weights``: a Hugging Face directory, a hub model id (downloaded/cached; fails fast offline), an official
    mmpose ``.pth``, or a ``.safetensors``/``.pth`` state dict in either key layout. ``variant`` (s/b/l/h), when
    given, must match the file. Raises a one-line WeightsError for missing, corrupt or wrong-architecture files.
    """
    if variant is not None:
        check_variant_name(variant)
    path = Path(resolve_weights(weights))
    suffix = path.suffix.lower()
    if path.is_dir():
        model = _load_hf_dir(path)
    elif suffix in _TORCH_SUFFIXES:
        model = _model_from_state_dict(_torch_load(path), str(path))
    elif suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except Exception as exc:
            raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(exc)[:160]})") from None
        model = _model_from_state_dict(state, str(path))
    elif suffix == ".onnx":
        raise WeightsError(f"{path} is an ONNX export: it runs directly on --backend onnxruntime, not as a PyTorch "
                           f"model (use the .pth/Hugging Face weights for --backend torch)")
    else:
        raise WeightsError(f"{path}: not a checkpoint (unknown weights format {suffix or '(no suffix)'}); "
                           f"use a Hugging Face dir/id, an mmpose .pth, .safetensors or .onnx")
    found = variant_of(model)
    if variant is not None and found is not None and found != variant:
        raise WeightsError(f"{weights} holds ViTPose-{found.upper()} weights, not ViTPose-{variant.upper()}; "
                           f"use --pose-model vitpose-{found}")
    return model


def _variant_from_name(text: str) -> str | None:
    name = text.lower().replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    for variant, size in SIZE_NAMES.items():
        if re.search(rf"(?<![a-z]){size}(?![a-z])", name):
            return variant
    match = re.search(r"vit-?pose\+?[-_]?(?:plus[-_])?([sblh])(?![a-z])", name)
    return match[1] if match else None


_PATCH_KEYS = ("patch_embeddings.projection.weight", "patch_embed.proj.weight")  # (hidden, 3, 16, 16), any layout


def _hidden_from_file(path: Path) -> int | None:
    """Hidden size read from a weights file's config or patch-embedding shape, without building a model."""
    if path.is_dir():
        try:
            return int(json.loads((path / "config.json").read_text())["backbone_config"]["hidden_size"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                shapes = {k: f.get_slice(k).get_shape() for k in f.keys() if k.endswith(_PATCH_KEYS)}
        elif suffix in _TORCH_SUFFIXES:
            shapes = {k: list(v.shape) for k, v in _torch_load(path).items() if k.endswith(_PATCH_KEYS)}
        elif suffix == ".onnx":
            import onnx

            graph = onnx.load(str(path), load_external_data=False).graph
            shapes = {i.name: list(i.dims) for i in graph.initializer if i.name.endswith(_PATCH_KEYS)}
        else:
            return None
    except Exception:  # unreadable: the caller reports that it cannot tell
        return None
    return int(next(iter(shapes.values()))[0]) if shapes else None


def guess_variant(path_or_id: str) -> str:
    """'s'|'b'|'l'|'h' for a weights path or hub id: from its name, else from the file's tensor shapes."""
    named = _variant_from_name(path_or_id)
    if named:
        return named
    path = Path(path_or_id).expanduser()
    if path.exists():
        hidden = _hidden_from_file(path)
        if hidden in _VARIANT_BY_HIDDEN:
            return _VARIANT_BY_HIDDEN[hidden]
    problem = _unusable_weights(path_or_id)
    if problem is not None:  # "not found" / "not a checkpoint" say more than "cannot tell which size"
        raise problem
    raise WeightsError(f"cannot tell which ViTPose size {path_or_id} is; pass --pose-model vitpose-s|b|l|h")


def _unusable_weights(path_or_id: str) -> WeightsError | None:
    """Why ``path_or_id`` cannot be ViTPose weights (missing, unreadable, not a checkpoint), or None if it may be.

    Offline: a hub id is left to the loader; only a file whose size could not be read is opened (a broken file
    fails fast).
    """
    path = Path(path_or_id).expanduser()
    if not path.exists():
        if path_or_id == "random" or looks_like_hub_id(path_or_id):
            return None  # --weights random (benchmarks) or a hub model id
        return WeightsError(f"weights not found: {path_or_id} (a file, a Hugging Face directory or a hub model id)")
    if path.is_file() and path.suffix.lower() == ".onnx":
        try:
            import onnx

            onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a non-ONNX file
            return WeightsError(f"{path}: not a checkpoint: not a readable ONNX model ({_first_line(exc)[:120]})")
        return None
    try:
        load_vitpose_model(str(path))
    except WeightsError as exc:
        return exc
    return None


def _hub_candidates(variant: str) -> list[str]:
    size = SIZE_NAMES[variant]
    return [f"usyd-community/vitpose-{size}-simple", f"usyd-community/vitpose-{size}",
            f"usyd-community/vitpose-plus-{size}"]


def find_local_weights(variant: str | None = None) -> str | None:
    """ViTPose weights already on this machine (no network), or None.

    Looks at $REALTIME_VITPOSE_WEIGHTS, then Hugging Face dirs ``engines/vitpose-*/``, then the local Hugging Face
    cache for the usyd-community ViTPose models. Without ``variant``: B, then S, L, H.
    """
    order = [variant] if variant else ["b", "s", "l", "h"]
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        if variant is None:
            return env
        try:
            if guess_variant(env) == variant:
                return env
        except WeightsError:
            return env  # the user named it: let loading report what is wrong with it
    root = engines_dir()
    dirs = sorted(p for p in root.glob("vitpose-*") if (p / "config.json").is_file()) if root.is_dir() else []
    for want in order:
        for found in dirs:
            if _VARIANT_BY_HIDDEN.get(_hidden_from_file(found) or 0) == want:
                return str(found)
        for repo_id in _hub_candidates(want):
            snapshot = _cached_snapshot(repo_id)
            if snapshot is not None:
                return str(snapshot)
    return None


# -------------------------------------------------------------------------------------------- ONNX export


def weights_fingerprint(weights_id: str) -> str:
    """12 hex digits identifying a weights file/dir (names, sizes, mtimes) or, for an uncached hub id, the id."""
    path = Path(weights_id).expanduser()
    if not path.exists() and _HUB_ID.match(weights_id):
        path = _cached_snapshot(weights_id) or path
    digest = hashlib.sha256()
    if path.exists():
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            stat = file.stat()
            digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}|{stat.st_size}|"
                          f"{stat.st_mtime_ns}\n".encode())
    else:
        digest.update(weights_id.encode())
    return digest.hexdigest()[:12]


def onnx_cache_path(weights_id: str, variant: str, opset: int = 17) -> Path:
    """Cached export location: ``engines/vitpose-{variant}_fp32_op{opset}_{weights hash}.onnx``."""
    return engines_dir() / f"vitpose-{variant}_fp32_op{opset}_{weights_fingerprint(weights_id)}.onnx"


def export_onnx(model, path: str | Path, opset: int = 17, dynamic_batch: bool = True, *, verify: bool = True,
                external_data: bool | None = None) -> Path:
    """Export ``pixel_values`` (N, 3, 256, 192) -> ``heatmaps`` (N, 17, 64, 48) to ``path`` and check it.

    Uses the TorchScript exporter (``dynamo=False``: fast, needs no onnxscript). The file appears atomically, so
    an interrupted export never leaves a broken cache entry. ``verify`` compares ONNX Runtime with PyTorch on a
    random batch. ``external_data`` (default: only above 1.8 GB, i.e. ViTPose-H) stores weights in ``<name>.data``.
    """
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = heatmap_module(model)
    param = next(model.parameters())
    dummy = torch.zeros(2 if dynamic_batch else 1, 3, *INPUT_HW, device=param.device, dtype=param.dtype)
    axes = {"pixel_values": {0: "batch"}, "heatmaps": {0: "batch"}} if dynamic_batch else None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        raw = Path(tmp) / "model.onnx"
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # exporter deprecation + expected tracer warnings (static 256x192 input)
            torch.onnx.export(module, (dummy,), str(raw), input_names=["pixel_values"], output_names=["heatmaps"],
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
        # The tracer labels the heatmap dims oddly (the height as "batch"); declare them as the static 64x48 they are.
        graph = onnx.load(str(raw), load_external_data=False)
        dims = graph.graph.output[0].type.tensor_type.shape.dim
        for dim, value in zip(dims[1:], (NUM_JOINTS, *HEATMAP_HW), strict=True):
            dim.dim_value = value
        onnx.save(graph, str(raw))
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        if external_data is None:
            external_data = size > 1_800_000_000
        staged = Path(tmp) / path.name
        if external_data or len(list(Path(tmp).iterdir())) > 1:
            proto = onnx.load(str(raw), load_external_data=True)
            onnx.save_model(proto, str(staged), save_as_external_data=bool(external_data),
                            all_tensors_to_one_file=True, location=path.name + ".data")
            if external_data:
                os.replace(Path(tmp) / (path.name + ".data"), path.parent / (path.name + ".data"))
        else:
            os.replace(raw, staged)
        os.replace(staged, path)
    log.info("exported ViTPose to %s in %.1f s", path, time.perf_counter() - started)
    if verify:
        try:
            _verify_onnx(module, path, batch=3 if dynamic_batch else 1)
        except Exception:
            path.unlink(missing_ok=True)
            raise
    return path


def _verify_onnx(module, path: Path, batch: int) -> None:
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, *INPUT_HW), dtype=np.float32)
    param = next(module.parameters())
    with torch.inference_mode():
        ref = module(torch.from_numpy(x).to(param.device, param.dtype)).float().cpu().numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(["heatmaps"], {"pixel_values": x})[0]
    err = float(np.abs(out - ref).max())
    if out.shape != (batch, NUM_JOINTS, *HEATMAP_HW) or err > 1e-3 * max(1.0, float(np.abs(ref).max())):
        raise RealtimeError(f"ONNX export {path} disagrees with PyTorch (shape {out.shape}, max error {err:.2e})")
    log.info("ONNX Runtime matches PyTorch on %s (max abs error %.1e)", path.name, err)
