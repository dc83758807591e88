"""Compiled-engine cache: TensorRT engines, torch2trt modules and INT8 ONNX files, keyed by what made them.

An engine is only valid for the exact network weights, precision, batch range, GPU generation and TensorRT
version it was built with (and, for INT8, the calibration data). Each cached file has a JSON sidecar holding
that key plus the file's sha256; a lookup whose sidecar disagrees with the wanted key (or whose file was
replaced) is treated as a miss and rebuilt, never silently used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from realtime.files import honour_umask, project_dir

log = logging.getLogger(__name__)

ENGINES_ENV = "REALTIME_ENGINES_DIR"
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
# What kind of artefact a key describes -> file suffix.
TARGETS: dict[str, str] = {"tensorrt": ".engine", "torch2trt": ".t2t.pth", "onnxruntime": ".onnx"}
_SIDECAR_VERSION = 1


def engines_dir() -> Path:
    """Where engines live: $REALTIME_ENGINES_DIR, else ``engines/`` of a source checkout, else the user cache."""
    return project_dir(ENGINES_ENV, "engines")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_HASH_MEMO: dict[str, str] = {}  # repr of (path, size, mtime) of the files -> hash


def onnx_fingerprint(path: Path) -> str:
    """16-hex hash of an ONNX graph and its external weights file (``<name>.data``, ViTPose-H) if any.

    Memoised per (path, size, mtime) within the process: large graphs are hashed once per run.
    """
    path = Path(path)
    files = [p for p in (path, path.with_name(path.name + ".data")) if p.is_file()]
    if not files:
        raise FileNotFoundError(path)
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    memo_key = repr(stats)
    if memo_key not in _HASH_MEMO:
        h = hashlib.sha256()
        for p in files:
            h.update(file_sha256(p).encode())
        _HASH_MEMO[memo_key] = h.hexdigest()[:16]
    return _HASH_MEMO[memo_key]


def weights_hash(weights: Path | str | None = None, model=None) -> str:
    """16-hex fingerprint of the network weights: of the weights file if given, else of the module's state."""
    if weights is not None:
        return file_sha256(Path(weights))[:16]
    if model is None:
        raise ValueError("weights_hash needs a weights file or a model")
    import torch

    h = hashlib.sha256(type(model).__name__.encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        h.update(config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            h.update(name.encode())
            h.update(str(tuple(tensor.shape)).encode())
            h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def gpu_compute_capability(device: int = 0) -> str:
    """"90" for an H100 (sm_90); "cpu" without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    major, minor = torch.cuda.get_device_capability(device)
    return f"{major}{minor}"


def tensorrt_version() -> str:
    import tensorrt as trt

    return str(trt.__version__)


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. ``calib_hash`` only for INT8; ``runtime_version`` is TensorRT's (or ORT's)."""

    variant: str  # s | b | l | h (or a test name)
    weights_hash: str
    precision: str  # fp32 | fp16 | int8
    max_batch: int
    compute_capability: str  # "90", or "cpu" for ONNX Runtime artefacts
    runtime_version: str  # TensorRT version, e.g. "10.3.0"; ONNX Runtime's for ORT INT8 files
    calib_hash: str = ""
    target: str = "tensorrt"  # tensorrt | torch2trt | onnxruntime

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {tuple(TARGETS)}, not {self.target!r}")
        if self.max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if self.precision == "int8" and not self.calib_hash:
            raise ValueError("an INT8 key needs the calibration data hash")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EngineKey:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def filename(self) -> str:
        """e.g. ``vitpose-b_fp16_b32_sm90_trt10.3.0_1a2b3c4d5e6f.engine``."""
        if self.target == "onnxruntime":  # ONNX files keep a dynamic batch: no batch bound in the name
            where = f"cpu_ort{self.runtime_version}"
        else:
            where = f"b{self.max_batch}_sm{self.compute_capability}_trt{self.runtime_version}"
        stem = f"vitpose-{self.variant}_{self.precision}_{where}_{self.digest()}"
        return stem + TARGETS[self.target]


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


class EngineCache:
    """Files under ``root`` (default :func:`engines_dir`), one per :class:`EngineKey`."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else engines_dir()

    def path_for(self, key: EngineKey) -> Path:
        return self.root / key.filename()

    def lookup(self, key: EngineKey) -> Path | None:
        """The cached file for ``key`` if its sidecar matches the key and the file's hash; else None (logged)."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        problem = self.verify(path, key)
        if problem:
            log.warning("ignoring cached %s: %s; it will be rebuilt", path.name, problem)
            return None
        return path

    @staticmethod
    def verify(path: Path, key: EngineKey) -> str | None:
        """None when ``path`` was built for ``key``, else why not."""
        side = sidecar_path(path)
        if not side.is_file():
            return "no key sidecar"
        try:
            meta = json.loads(side.read_text())
            stored = meta["key"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"unreadable sidecar ({exc})"
        want = key.to_dict()
        if stored != want:
            diff = sorted(k for k in set(want) | set(stored) if stored.get(k) != want.get(k))
            return f"built for a different {', '.join(diff)}"
        if meta.get("size") != path.stat().st_size or meta.get("sha256") != file_sha256(path):
            return "file changed since it was built"
        return None

    def store(self, key: EngineKey, write: Callable[[Path], None]) -> Path:
        """Run ``write(tmp_path)``, then move the result into place with its sidecar (atomic per file)."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path_for(key)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=final.suffix, dir=self.root)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            write(tmp)
            if not tmp.is_file() or tmp.stat().st_size == 0:
                raise RuntimeError(f"engine build wrote nothing for {final.name}")
            meta = {
                "format": _SIDECAR_VERSION,
                "key": key.to_dict(),
                "file": final.name,
                "size": tmp.stat().st_size,
                "sha256": file_sha256(tmp),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            # Sidecar first: a crash in between leaves a sidecar without a file (a miss), never a file whose
            # sidecar describes an older build.
            side = sidecar_path(final)
            side_tmp = side.with_name(".tmp-" + side.name)
            side_tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
            os.replace(side_tmp, side)
            honour_umask(tmp)  # mkstemp made it 0600: engines are shared by every user of the machine's cache
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return final

    def get_or_build(self, key: EngineKey, build: Callable[[Path], None], rebuild: bool = False) -> tuple[Path, bool]:
        """(path, built): the verified cached file, or a fresh one made by ``build(tmp_path)``."""
        if not rebuild:
            hit = self.lookup(key)
            if hit is not None:
                log.info("using cached engine %s", hit)
                return hit, False
        log.info("building %s", key.filename())
        return self.store(key, build), True
