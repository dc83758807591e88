"""Engine cache: keys, file names, sidecars; a mismatched or altered engine is rebuilt, never used."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from realtime.backends.engine_cache import (
    EngineCache,
    EngineKey,
    engines_dir,
    file_sha256,
    onnx_fingerprint,
    sidecar_path,
    weights_hash,
)

BASE = EngineKey(variant="b", weights_hash="0123456789abcdef", precision="int8", max_batch=32,
                 compute_capability="90", runtime_version="10.3.0", calib_hash="feedfacecafebeef")
CHANGES = {
    "variant": "s",
    "weights_hash": "fedcba9876543210",
    "precision": "fp16",
    "max_batch": 64,
    "compute_capability": "89",
    "runtime_version": "10.4.0",
    "calib_hash": "0000000000000000",
    "target": "torch2trt",
}


def _builder(payload: bytes, calls: list):
    def build(tmp: Path) -> None:
        calls.append(tmp)
        tmp.write_bytes(payload)

    return build


def test_every_field_changes_the_key_and_the_file_name():
    assert set(CHANGES) == {f.name for f in dataclasses.fields(EngineKey)}
    for field, value in CHANGES.items():
        other = dataclasses.replace(BASE, **{field: value})
        assert other.digest() != BASE.digest(), field
        assert other.filename() != BASE.filename(), field


def test_file_name_format():
    key = dataclasses.replace(BASE, precision="fp16", calib_hash="")
    assert re.fullmatch(r"vitpose-b_fp16_b32_sm90_trt10\.3\.0_[0-9a-f]{12}\.engine", key.filename())
    ort = dataclasses.replace(BASE, target="onnxruntime", compute_capability="cpu", runtime_version="1.32.0")
    assert re.fullmatch(r"vitpose-b_int8_cpu_ort1\.32\.0_[0-9a-f]{12}\.onnx", ort.filename())
    assert dataclasses.replace(BASE, target="torch2trt").filename().endswith(".t2t.pth")


def test_invalid_keys_are_refused():
    with pytest.raises(ValueError, match="calibration"):
        dataclasses.replace(BASE, calib_hash="")
    with pytest.raises(ValueError, match="precision"):
        dataclasses.replace(BASE, precision="int4")
    with pytest.raises(ValueError, match="max_batch"):
        dataclasses.replace(BASE, max_batch=0)
    with pytest.raises(ValueError, match="target"):
        dataclasses.replace(BASE, target="openvino")
    assert EngineKey.from_dict(BASE.to_dict()) == BASE


def test_build_once_then_hit_then_forced_rebuild(tmp_path):
    cache = EngineCache(tmp_path)
    calls: list = []
    path, built = cache.get_or_build(BASE, _builder(b"engine-1", calls))
    assert built and path == tmp_path / BASE.filename() and path.read_bytes() == b"engine-1"
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["key"] == BASE.to_dict() and meta["sha256"] == file_sha256(path)
    again, built = cache.get_or_build(BASE, _builder(b"engine-2", calls))
    assert not built and again == path and len(calls) == 1 and path.read_bytes() == b"engine-1"
    _, built = cache.get_or_build(BASE, _builder(b"engine-3", calls), rebuild=True)
    assert built and path.read_bytes() == b"engine-3" and len(calls) == 2
    assert not list(tmp_path.glob(".tmp-*"))  # no temporary files left behind
    from realtime.files import default_file_mode

    assert path.stat().st_mode & 0o777 == default_file_mode()  # not mkstemp's 0600


@pytest.mark.parametrize("field", ["runtime_version", "compute_capability", "weights_hash", "calib_hash", "max_batch"])
def test_mismatched_sidecar_is_rebuilt_not_used(tmp_path, field):
    cache = EngineCache(tmp_path)
    path, _ = cache.get_or_build(BASE, _builder(b"old", []))
    meta = json.loads(sidecar_path(path).read_text())
    meta["key"][field] = CHANGES[field]  # e.g. an engine copied from a machine with another TensorRT
    sidecar_path(path).write_text(json.dumps(meta))
    assert cache.lookup(BASE) is None
    assert field in (cache.verify(path, BASE) or "")
    calls: list = []
    again, built = cache.get_or_build(BASE, _builder(b"new", calls))
    assert built and calls and again.read_bytes() == b"new"
    assert json.loads(sidecar_path(again).read_text())["key"] == BASE.to_dict()
    assert cache.lookup(BASE) == again


def test_replaced_engine_or_missing_or_broken_sidecar_is_rebuilt(tmp_path):
    cache = EngineCache(tmp_path)
    path, _ = cache.get_or_build(BASE, _builder(b"good", []))
    path.write_bytes(b"evil")  # same size, other bytes
    assert "changed" in cache.verify(path, BASE)
    assert cache.get_or_build(BASE, _builder(b"good", []))[1]
    sidecar_path(path).unlink()
    assert cache.lookup(BASE) is None
    assert cache.get_or_build(BASE, _builder(b"good", []))[1]
    sidecar_path(path).write_text("{not json")
    assert "unreadable" in cache.verify(path, BASE)
    assert cache.get_or_build(BASE, _builder(b"good", []))[1]


def test_failed_build_leaves_nothing(tmp_path):
    cache = EngineCache(tmp_path)

    def broken(tmp: Path) -> None:
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        cache.get_or_build(BASE, broken)
    with pytest.raises(RuntimeError, match="wrote nothing"):
        cache.get_or_build(BASE, lambda tmp: None)
    assert list(tmp_path.iterdir()) == []


def test_engines_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("REALTIME_ENGINES_DIR", str(tmp_path / "e"))
    assert engines_dir() == tmp_path / "e"
    assert EngineCache().root == tmp_path / "e"
    monkeypatch.delenv("REALTIME_ENGINES_DIR")
    assert engines_dir().name == "engines"


def test_weight_and_onnx_fingerprints(tmp_path):
    import torch

    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 100)
    h1 = weights_hash(f)
    f.write_bytes(b"a" * 99 + b"b")
    assert weights_hash(f) != h1

    net = torch.nn.Linear(3, 2)
    m1 = weights_hash(model=net)
    assert weights_hash(model=net) == m1
    with torch.no_grad():
        net.weight[0, 0] += 1e-3
    assert weights_hash(model=net) != m1

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"graph")
    g1 = onnx_fingerprint(onnx)
    onnx.with_name("m.onnx.data").write_bytes(b"weights")  # external weights (ViTPose-H) count too
    g2 = onnx_fingerprint(onnx)
    assert g2 != g1
    onnx.with_name("m.onnx.data").write_bytes(b"weightz!")
    assert onnx_fingerprint(onnx) != g2
