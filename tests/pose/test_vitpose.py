"""ViTPose loading (HF dirs, hub ids, mmpose checkpoints), ONNX export/cache and the estimator, on tiny random models."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from realtime.errors import BackendUnavailable, WeightsError
from realtime.pose import vitpose, vitpose_estimator
from realtime.pose.topdown import HEATMAP_HW, INPUT_HW, box_to_center_scale
from realtime.types import PoseResult

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network, an empty Hugging Face cache and a private engines dir for every test."""
    import huggingface_hub.constants

    monkeypatch.setenv("REALTIME_ENGINES_DIR", str(tmp_path / "engines"))
    monkeypatch.delenv(vitpose.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values everywhere (norm weights and BN statistics too), so a mis-mapped tensor changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.3)
    return model


def tiny(simple_decoder: bool = True, seed: int = 0) -> torch.nn.Module:
    return randomize(vitpose.build_vitpose("b", tiny=True, simple_decoder=simple_decoder), seed)


def tiny_moe(experts: int = 6, part: int = 8, seed: int = 0) -> torch.nn.Module:
    """A ViTPose+ style model: MoE MLPs (shared fc2 rows + one expert per dataset), classic decoder."""
    hidden, depth, heads = vitpose.TINY_ARCH
    config = vitpose._config(hidden, depth, heads, simple_decoder=False, num_experts=experts, part_features=part)
    return randomize(vitpose._new_model(config), seed)


def batch(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 3, *INPUT_HW), dtype=np.float32))


def to_mmpose(model: torch.nn.Module) -> dict:
    """Inverse of the conversion, written from the official mmpose ViTPose layout: what a real .pth holds."""
    sd, cfg = model.state_dict(), model.config
    out = {"backbone.pos_embed": sd["backbone.embeddings.position_embeddings"]}
    for t in ("weight", "bias"):
        out[f"backbone.patch_embed.proj.{t}"] = sd[f"backbone.embeddings.patch_embeddings.projection.{t}"]
        out[f"backbone.last_norm.{t}"] = sd[f"backbone.layernorm.{t}"]
        for i in range(cfg.backbone_config.num_hidden_layers):
            src, dst = f"backbone.encoder.layer.{i}.", f"backbone.blocks.{i}."
            out[dst + f"attn.qkv.{t}"] = torch.cat([sd[src + f"attention.attention.{n}.{t}"]
                                                   for n in ("query", "key", "value")])
            out[dst + f"attn.proj.{t}"] = sd[src + f"attention.output.dense.{t}"]
            out[dst + f"norm1.{t}"] = sd[src + f"layernorm_before.{t}"]
            out[dst + f"norm2.{t}"] = sd[src + f"layernorm_after.{t}"]
            for layer in ("fc1", "fc2"):
                out[dst + f"mlp.{layer}.{t}"] = sd[src + f"mlp.{layer}.{t}"]
            for k in range(cfg.backbone_config.num_experts if cfg.backbone_config.num_experts > 1 else 0):
                out[dst + f"mlp.experts.{k}.{t}"] = sd[src + f"mlp.experts.{k}.{t}"]
    if cfg.use_simple_decoder:
        heads = {"final_layer": "conv"}
    else:
        heads = {"deconv_layers.0": "deconv1", "deconv_layers.1": "batchnorm1", "deconv_layers.3": "deconv2",
                 "deconv_layers.4": "batchnorm2", "final_layer": "conv"}
    for old, new in heads.items():
        for key, value in sd.items():
            if key.startswith(f"head.{new}."):
                out[f"keypoint_head.{old}." + key.removeprefix(f"head.{new}.")] = value
    return out


def save_mmpose(model: torch.nn.Module, path: Path, extra: dict | None = None) -> Path:
    """An mmcv-style checkpoint: state_dict + meta holding numpy values, as training runners write them."""
    state = {**to_mmpose(model), **(extra or {})}
    meta = {"epoch": 210, "best_score": np.float64(0.757), "hist": np.arange(3), "config": "model = dict(...)"}
    torch.save({"state_dict": state, "meta": meta}, path)
    return path


def assert_same_heatmaps(model: torch.nn.Module, reference: torch.Tensor, x: torch.Tensor) -> None:
    out = vitpose.heatmaps(model, x)
    assert out.shape == (len(x), 17, *HEATMAP_HW)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


def assert_one_line(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message and message
    for fragment in fragments:
        assert fragment in message, message


# ------------------------------------------------------------------------------------------------ models


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    return vitpose.build_vitpose("s")


@pytest.fixture(scope="module")
def small_dir(small_model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real-size ViTPose-S Hugging Face directory (random weights), saved once for the tests that need sizes."""
    path = tmp_path_factory.mktemp("vitpose-s") / "vitpose-s"
    small_model.save_pretrained(path)
    return path


def test_variant_configs_are_the_official_sizes(small_model: torch.nn.Module) -> None:
    sizes = {v: (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.mlp_ratio, c.out_indices)
             for v in sorted(vitpose.VARIANTS)
             for c in [vitpose._config(*vitpose.ARCHS[v]).backbone_config]}
    assert sizes == {"s": (384, 12, 12, 4, [12]), "b": (768, 12, 12, 4, [12]), "l": (1024, 24, 16, 4, [24]),
                     "h": (1280, 32, 16, 4, [32])}
    model = small_model
    assert model.config.backbone_config.layer_norm_eps == 1e-6 and model.config.use_simple_decoder
    assert model.config.backbone_config._attn_implementation == "sdpa"
    assert vitpose.variant_of(model) == "s" and vitpose.heatmaps(model, batch(1)).shape == (1, 17, *HEATMAP_HW)
    with pytest.raises(Exception, match="variant"):
        vitpose.build_vitpose("x")


@pytest.mark.parametrize("simple", [True, False])
def test_hugging_face_directory_round_trip(tmp_path: Path, simple: bool) -> None:
    source, x = tiny(simple), batch()
    source.save_pretrained(tmp_path / "hf")
    loaded = vitpose.load_vitpose_model(str(tmp_path / "hf"))
    assert not loaded.training and loaded.config.use_simple_decoder == simple
    assert_same_heatmaps(loaded, vitpose.heatmaps(source, x), x)


@pytest.mark.parametrize("simple", [True, False])
def test_mmpose_checkpoint_is_converted(tmp_path: Path, simple: bool) -> None:
    source, x = tiny(simple, seed=1), batch()
    path = save_mmpose(source, tmp_path / "vitpose-tiny.pth")
    loaded = vitpose.load_vitpose_model(str(path))
    assert loaded.config.use_simple_decoder == simple
    assert_same_heatmaps(loaded, vitpose.heatmaps(source, x), x)
    # DataParallel prefixes and a bare state dict (no "state_dict" wrapper) load too
    bare = tmp_path / "bare.pth"
    torch.save({"module." + k: v for k, v in to_mmpose(source).items()}, bare)
    assert_same_heatmaps(vitpose.load_vitpose_model(str(bare)), vitpose.heatmaps(source, x), x)


def test_convert_mmpose_state_dict_key_layout() -> None:
    converted = vitpose.convert_mmpose_state_dict(to_mmpose(tiny(False)))
    expected = set(tiny(False).state_dict())
    assert set(converted) == expected
    qkv = to_mmpose(tiny(False))["backbone.blocks.1.attn.qkv.weight"]
    torch.testing.assert_close(converted["backbone.encoder.layer.1.attention.attention.key.weight"],
                               qkv[vitpose.TINY_ARCH[0]:2 * vitpose.TINY_ARCH[0]])


def test_vitpose_plus_checkpoint_keeps_the_coco_expert(tmp_path: Path) -> None:
    source, x = tiny_moe(), batch()
    coco = source(pixel_values=x, dataset_index=torch.zeros(len(x), dtype=torch.long)).heatmaps.detach()
    other = source(pixel_values=x, dataset_index=torch.ones(len(x), dtype=torch.long)).heatmaps.detach()
    assert not torch.allclose(coco, other)  # the experts matter, so picking the right one is tested
    extra = {f"associate_keypoint_heads.{j}.final_layer.weight": torch.randn(14, 256, 1, 1) for j in range(5)}
    extra["backbone.cls_token"] = torch.zeros(1, 1, vitpose.TINY_ARCH[0])
    loaded = vitpose.load_vitpose_model(str(save_mmpose(source, tmp_path / "vitpose+_tiny.pth", extra)))
    assert loaded.config.backbone_config.num_experts == 1
    assert_same_heatmaps(loaded, coco, x)
    source.save_pretrained(tmp_path / "plus-hf")  # the hub's usyd-community/vitpose-plus-* layout
    assert_same_heatmaps(vitpose.load_vitpose_model(str(tmp_path / "plus-hf")), coco, x)


def test_safetensors_state_dict_in_either_layout(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source, x = tiny(seed=2), batch()
    save_file({k: v.contiguous() for k, v in to_mmpose(source).items()}, tmp_path / "mm.safetensors")
    save_file(source.state_dict(), tmp_path / "hf.safetensors")
    for name in ("mm.safetensors", "hf.safetensors"):
        assert_same_heatmaps(vitpose.load_vitpose_model(str(tmp_path / name)), vitpose.heatmaps(source, x), x)


# ------------------------------------------------------------------------------------- hub ids and errors


def test_hub_id_offline_fails_fast_with_one_line() -> None:
    started = time.monotonic()
    with pytest.raises(WeightsError) as error:
        vitpose.load_vitpose_model("usyd-community/vitpose-base-simple")
    assert time.monotonic() - started < 10
    assert_one_line(error, "usyd-community/vitpose-base-simple", "HF_HUB_OFFLINE", "--weights")


def test_hub_id_with_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    for proxy in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    started = time.monotonic()
    with pytest.raises(WeightsError) as error:
        vitpose.load_vitpose_model("usyd-community/vitpose-base-simple")
    assert time.monotonic() - started < 10
    assert_one_line(error, "unreachable", "--weights")


def fake_hub_cache(tmp_path: Path, repo_id: str, model: torch.nn.Module) -> Path:
    """The on-disk layout huggingface_hub's cache uses (refs/main -> snapshots/<revision>/...)."""
    import huggingface_hub.constants

    repo = Path(huggingface_hub.constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    revision = "0123456789abcdef0123456789abcdef01234567"
    model.save_pretrained(repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return repo / "snapshots" / revision


def test_hub_id_in_the_local_cache_loads_offline(tmp_path: Path) -> None:
    source, x = tiny(seed=3), batch()
    snapshot = fake_hub_cache(tmp_path, "usyd-community/vitpose-small-simple", source)
    assert_same_heatmaps(vitpose.load_vitpose_model("usyd-community/vitpose-small-simple"),
                         vitpose.heatmaps(source, x), x)
    assert vitpose.find_local_weights("s") == str(snapshot)
    assert vitpose.find_local_weights() == str(snapshot)
    assert vitpose.find_local_weights("b") is None


class NotATensor:
    """Any class a pickle could name: weights_only loading must refuse to build it."""


def bad_weights(tmp_path: Path, kind: str) -> str:
    if kind == "missing":
        return str(tmp_path / "nope" / "vitpose-b.pth")
    if kind == "garbage .pth":
        (tmp_path / "x.pth").write_bytes(b"\x00not a checkpoint" * 100)
        return str(tmp_path / "x.pth")
    if kind == "truncated .pth":
        save_mmpose(tiny(), tmp_path / "full.pth")
        (tmp_path / "cut.pth").write_bytes((tmp_path / "full.pth").read_bytes()[:5000])
        return str(tmp_path / "cut.pth")
    if kind == "pickled object":
        torch.save({"state_dict": {"a": torch.zeros(1)}, "meta": NotATensor()}, tmp_path / "obj.pth")
        return str(tmp_path / "obj.pth")
    if kind == "other network":
        torch.save(torch.nn.Linear(3, 4).state_dict(), tmp_path / "linear.pth")
        return str(tmp_path / "linear.pth")
    if kind == "wholebody head":
        model = vitpose._new_model(vitpose._config(*vitpose.TINY_ARCH))
        state = to_mmpose(model)
        state["keypoint_head.final_layer.weight"] = torch.zeros(133, vitpose.TINY_ARCH[0], 3, 3)
        state["keypoint_head.final_layer.bias"] = torch.zeros(133)
        torch.save({"state_dict": state}, tmp_path / "wholebody.pth")
        return str(tmp_path / "wholebody.pth")
    if kind == "corrupt safetensors dir":
        tiny().save_pretrained(tmp_path / "hf")
        (tmp_path / "hf" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{bad json")
        return str(tmp_path / "hf")
    if kind == "no weights in dir":
        tiny().save_pretrained(tmp_path / "hf")
        (tmp_path / "hf" / "model.safetensors").unlink()
        return str(tmp_path / "hf")
    if kind == "other architecture dir":
        (tmp_path / "bert").mkdir()
        (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
        return str(tmp_path / "bert")
    if kind == "unknown suffix":
        (tmp_path / "weights.txt").write_text("hello")
        return str(tmp_path / "weights.txt")
    if kind == "onnx":
        (tmp_path / "m.onnx").write_bytes(b"onnx")
        return str(tmp_path / "m.onnx")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, fragment", [
    ("missing", "not found"), ("garbage .pth", "not a readable PyTorch checkpoint"),
    ("truncated .pth", "not a readable PyTorch checkpoint"), ("pickled object", "refused"),
    ("other network", "not a ViTPose checkpoint"), ("wholebody head", "133 keypoints"),
    ("corrupt safetensors dir", "cannot load"), ("no weights in dir", "no model.safetensors"),
    ("other architecture dir", "'bert'"), ("unknown suffix", "unknown weights format"), ("onnx", "onnxruntime"),
])
def test_bad_weights_raise_one_line_weights_errors(tmp_path: Path, kind: str, fragment: str) -> None:
    path = bad_weights(tmp_path, kind)
    with pytest.raises(WeightsError) as error:
        vitpose.load_vitpose_model(path)
    assert_one_line(error, fragment, Path(path).name)




def test_wrong_variant_is_reported(small_dir: Path) -> None:
    with pytest.raises(WeightsError) as error:
        vitpose.load_vitpose_model(str(small_dir), variant="b")
    assert_one_line(error, "ViTPose-S", "vitpose-s")
    assert vitpose.variant_of(vitpose.load_vitpose_model(str(small_dir), variant="s")) == "s"


def test_guess_variant(tmp_path: Path, small_dir: Path) -> None:
    assert vitpose.guess_variant("usyd-community/vitpose-base-simple") == "b"
    assert vitpose.guess_variant("usyd-community/vitpose-plus-huge") == "h"
    assert vitpose.guess_variant("/models/vitpose-l-simple.pth") == "l"
    assert vitpose.guess_variant("ViTPose_small_coco_256x192.pth") == "s"
    assert vitpose.guess_variant("engines/vitpose-b_fp32_op17_0123456789ab.onnx") == "b"
    assert vitpose.guess_variant(str(small_dir)) == "s"  # name says s too; check content with a neutral name:
    neutral = tmp_path / "weights"
    neutral.symlink_to(small_dir, target_is_directory=True)
    assert vitpose.guess_variant(str(neutral)) == "s"
    with pytest.raises(WeightsError, match="weights not found"):  # missing: said as such, not "cannot tell"
        vitpose.guess_variant(str(tmp_path / "model.pth"))
    with pytest.raises(WeightsError, match="--pose-model"):  # a hub id of unknown size
        vitpose.guess_variant("someone/pose-model")


def test_guess_variant_reads_the_patch_embedding_of_neutrally_named_files(tmp_path: Path) -> None:
    from onnx import helper, numpy_helper, save_model
    from safetensors.torch import save_file

    save_file({"backbone.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)}, tmp_path / "a.safetensors")
    torch.save({"state_dict": {"backbone.patch_embed.proj.weight": torch.zeros(1280, 3, 16, 16)},
                "meta": {"best_score": np.float64(0.8)}}, tmp_path / "b.pth")
    weight = numpy_helper.from_array(np.zeros((1024, 3, 16, 16), np.float32),
                                     "inner.backbone.embeddings.patch_embeddings.projection.weight")
    save_model(helper.make_model(helper.make_graph([], "g", [], [], initializer=[weight])), str(tmp_path / "c.onnx"))
    assert [vitpose.guess_variant(str(tmp_path / n)) for n in ("a.safetensors", "b.pth", "c.onnx")] == ["b", "h", "l"]


def test_find_local_weights_env_and_engines_dir(tmp_path: Path, small_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert vitpose.find_local_weights() is None
    engines = vitpose.engines_dir()
    engines.mkdir(parents=True)
    (engines / "vitpose-s").symlink_to(small_dir, target_is_directory=True)
    (engines / "vitpose-s_fp32_op17_0123456789ab.onnx").write_bytes(b"")  # exports are not weights
    assert vitpose.find_local_weights("s") == str(engines / "vitpose-s")
    assert vitpose.find_local_weights() == str(engines / "vitpose-s")
    assert vitpose.find_local_weights("b") is None
    monkeypatch.setenv(vitpose.WEIGHTS_ENV, "/somewhere/vitpose-b-simple.pth")
    assert vitpose.find_local_weights() == "/somewhere/vitpose-b-simple.pth"
    assert vitpose.find_local_weights("b") == "/somewhere/vitpose-b-simple.pth"
    assert vitpose.find_local_weights("s") == str(engines / "vitpose-s")


def test_estimator_without_weights_says_how_to_get_them() -> None:
    with pytest.raises(WeightsError) as error:
        vitpose_estimator.create_vitpose_estimator("b", backend="onnxruntime")
    assert_one_line(error, "ViTPose-B", "must be downloaded", "--weights")


# ------------------------------------------------------------------------------------------------- ONNX


def test_export_matches_torch_with_dynamic_batch(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = tiny(seed=4)
    path = vitpose.export_onnx(model, tmp_path / "tiny.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixel_values"]
    assert [o.name for o in session.get_outputs()] == ["heatmaps"]
    for n in (1, 3):
        x = batch(n, seed=n)
        out = session.run(None, {"pixel_values": x.numpy()})[0]
        np.testing.assert_allclose(out, vitpose.heatmaps(model, x).numpy(), atol=1e-4)
    assert not list(tmp_path.glob(".export-*"))  # staging folder cleaned up


def test_export_with_external_data(tmp_path: Path) -> None:
    from realtime.backends.onnx_backend import create

    model, x = tiny(seed=5), batch(2)
    path = vitpose.export_onnx(model, tmp_path / "big.onnx", external_data=True)
    assert (tmp_path / "big.onnx.data").stat().st_size > path.stat().st_size
    backend = create(None, path)
    np.testing.assert_allclose(backend.infer(x.numpy()), vitpose.heatmaps(model, x).numpy(), atol=1e-4)


def test_onnx_cache_path_is_keyed_on_variant_weights_and_opset(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"1")
    first = vitpose.onnx_cache_path(str(weights), "b")
    assert first.parent == vitpose.engines_dir() and first.name.startswith("vitpose-b_fp32_op17_")
    assert vitpose.onnx_cache_path(str(weights), "b") == first
    assert vitpose.onnx_cache_path(str(weights), "s") != first
    assert vitpose.onnx_cache_path(str(weights), "b", opset=18) != first
    weights.write_bytes(b"22")  # new weights -> new export
    assert vitpose.onnx_cache_path(str(weights), "b") != first


def test_estimator_reuses_the_cached_export_and_rebuilds_on_request(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tiny(seed=6).save_pretrained(tmp_path / "hf")
    exports: list[Path] = []
    real_export = vitpose.export_onnx

    def counting_export(model, path, *args, **kwargs):
        exports.append(Path(path))
        return real_export(model, path, *args, **kwargs)

    loads: list[str] = []
    real_load = vitpose.load_vitpose_model
    monkeypatch.setattr(vitpose, "export_onnx", counting_export)
    monkeypatch.setattr(vitpose, "load_vitpose_model", lambda w, v=None: loads.append(w) or real_load(w, v))
    first = vitpose_estimator.create_vitpose_estimator("b", backend="onnxruntime", weights=str(tmp_path / "hf"))
    assert first.name == "vitpose-b/onnxruntime[cpu,fp32]" and len(exports) == 1 and len(loads) == 1
    mtime = exports[0].stat().st_mtime_ns
    first.close()
    vitpose_estimator.create_vitpose_estimator("b", backend="onnxruntime", weights=str(tmp_path / "hf")).close()
    assert len(exports) == 1 and exports[0].stat().st_mtime_ns == mtime
    assert len(loads) == 1  # cached export: the PyTorch model is not even loaded
    vitpose_estimator.create_vitpose_estimator("b", backend="onnxruntime", weights=str(tmp_path / "hf"), rebuild=True).close()
    assert len(exports) == 2 and exports[1] == exports[0]
    # the cached .onnx itself is accepted as weights
    direct = vitpose_estimator.create_vitpose_estimator("b", backend="onnxruntime", weights=str(exports[0]))
    assert len(exports) == 2 and direct.name == "vitpose-b/onnxruntime[cpu,fp32]"
    with pytest.raises(BackendUnavailable, match="PyTorch weights"):
        vitpose_estimator.create_vitpose_estimator("b", backend="torch", weights=str(exports[0]))


# ------------------------------------------------------------------------------------------- estimator


def centre_peaked_tiny() -> torch.nn.Module:
    """A tiny ViTPose whose 17 heatmaps peak (value ~0.9) at the crop centre whatever the image.

    Image and transformer blocks are zeroed so the final features are the position embeddings: the four
    tokens around the crop centre carry a +/- pattern, the ReLU keeps its + half and the head sums it.
    """
    model = vitpose.build_vitpose("b", tiny=True)
    hidden = vitpose.TINY_ARCH[0]
    rows, cols = INPUT_HW[0] // vitpose.PATCH, INPUT_HW[1] // vitpose.PATCH
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.zero_()
        pattern = torch.tensor([1.0, -1.0]).repeat(hidden // 2)
        for r in (rows // 2 - 1, rows // 2):
            for c in (cols // 2 - 1, cols // 2):
                model.backbone.embeddings.position_embeddings[0, 1 + r * cols + c] = 3 * pattern
        model.backbone.layernorm.weight.fill_(1.0)
        model.head.conv.weight[:, 0::2] = 0.1 / (hidden // 2)
        model.head.conv.bias.fill_(0.8)
    return model


def test_estimator_on_a_real_frame(tmp_path: Path) -> None:
    video = DATA / "workouttracker_reps" / "videos" / "squats" / "squat_24.mp4"
    if not video.is_file():
        pytest.skip(f"{video} absent (shared data)")
    import av

    with av.open(str(video)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
    centre_peaked_tiny().save_pretrained(tmp_path / "hf")
    estimator = vitpose_estimator.create_vitpose_estimator("b", backend="onnxruntime", weights=str(tmp_path / "hf"))
    try:
        result = estimator.estimate(frame)
        assert isinstance(result, PoseResult) and result.present and result.box is not None
        keypoints = result.keypoints
        assert keypoints.shape == (17, 3) and keypoints.dtype == np.float32
        h, w = frame.shape[:2]
        assert ((keypoints[:, 0] >= 0) & (keypoints[:, 0] < w) & (keypoints[:, 1] >= 0) & (keypoints[:, 1] < h)).all()
        # the model peaks at the crop centre, i.e. the box centre: the geometry holds end to end
        centre, scale = box_to_center_scale(result.box)
        np.testing.assert_allclose(keypoints[:, :2], np.broadcast_to(centre, (17, 2)), atol=float(scale[0]) / 47)
        assert (keypoints[:, 2] > 0.8).all() and result.infer_ms > 0
        estimator.reset()
        keypoints, infer_ms = estimator.estimate_batch([frame, frame[:, ::-1].copy()], [result.box, result.box])
        assert keypoints.shape == (2, 17, 3) and infer_ms > 0
    finally:
        estimator.close()


def test_pickle_module_is_never_used_to_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Loading an mmpose checkpoint never falls back to full unpickling (weights_only stays on)."""
    calls: list[dict] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    vitpose.load_vitpose_model(str(save_mmpose(tiny(), tmp_path / "m.pth")))
    assert calls and all(call.get("weights_only") is True for call in calls)
