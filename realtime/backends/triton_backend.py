"""Triton backend: the ViTPose network served by NVIDIA Triton Inference Server, reached over gRPC.

``create(model, onnx_path, precision, device, triton_url=..., triton_model=..., ...)`` follows the factory contract
in ``realtime.backends.onnx_backend``; ``model``/``onnx_path``/``device`` are not used (the network lives on the
server, exported there with ``export-triton``); the person detector and everything else stays on this host, only
the (N, 3, 256, 192) crops travel. Options:

- ``triton_url``: ``grpc://HOST:8001``, ``HOST:8001`` or ``grpcs://HOST:443`` (TLS). Credentials may be given as
  ``grpc://user:password@HOST:8001`` (HTTP basic auth header) or ``?token=T`` (bearer header, e.g. for an
  authenticating load balancer); they are sent as gRPC headers and never logged (``name`` and logs show
  ``grpc://HOST:PORT`` only).
- ``triton_model``: model name (default ``vitpose_<variant>``, e.g. ``vitpose_b``); ``triton_timeout_s``: deadline
  of every call (default 5 s); ``triton_shm``: pass crops/heatmaps through POSIX system shared memory (server on the
  same host only); ``triton_wait_s``: how long ``create`` waits for an unreachable server (default 0);
  ``triton_backoff_max_s``: cap of the retry backoff (default 10 s).

At start the model's metadata and config are checked against ViTPose's (one input [-1, 3, 256, 192] FP32/FP16, one
output [-1, 17, 64, 48], batching on); a mismatch raises ``TritonModelMismatch`` (a ``RealtimeError``, exit 2), an
unreachable server ``BackendUnavailable``. Later, an unreachable, slow or restarting server makes ``infer`` raise
``PoseServerUnavailable`` (one line) and start a capped exponential backoff: during it ``infer`` fails at once
without contacting the server; then one call probes; the first success ends the outage. Each ``infer`` is its own
asynchronous gRPC request on one thread-safe channel, so callers on different threads (cameras) never wait on
each other, and Triton's dynamic batcher can merge their crops into one batch.
"""

from __future__ import annotations

import base64
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from realtime.errors import BackendUnavailable, PoseServerUnavailable, RealtimeError
from realtime.pose.topdown import HEATMAP_HW, INPUT_HW
from realtime.types import NUM_JOINTS

log = logging.getLogger(__name__)

DEFAULT_URL = "grpc://127.0.0.1:8001"
DEFAULT_PORT = 8001
DEFAULT_TIMEOUT_S = 5.0
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
INSTALL_HINT = "tritonclient is not installed: pip install 'tritonclient[grpc]'"
_IN_DIMS = [3, *INPUT_HW]
_OUT_DIMS = [NUM_JOINTS, *HEATMAP_HW]
_DTYPES = {"FP32": np.float32, "FP16": np.float16}
_regions = itertools.count()


class TritonModelMismatch(RealtimeError):
    """The Triton model's inputs/outputs are not ViTPose's (wrong model name, or a different export)."""


def _redact(text: str) -> str:
    try:
        from realtime.sources.urls import redact  # new home, once it exists
    except ImportError:
        from realtime.sources.urls import redact
    return redact(text)


@dataclass(frozen=True)
class TritonTarget:
    """A parsed ``triton_url``: ``address`` for gRPC (host:port), ``display`` for logs (no credentials)."""

    address: str
    display: str
    ssl: bool
    headers: dict[str, str]


def parse_triton_url(url: str) -> TritonTarget:
    """``grpc://[user:pw@]HOST[:8001][?token=T]``, ``grpcs://...`` or ``HOST:PORT`` -> TritonTarget."""
    text = (url or DEFAULT_URL).strip()
    if "://" not in text:
        text = "grpc://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        raise RealtimeError(f"--triton-url {_redact(text)}: the analyzer talks gRPC to Triton; use "
                            f"grpc://HOST:8001 (HTTP is port 8000)")
    if scheme not in ("grpc", "grpcs"):
        raise RealtimeError(f"--triton-url {_redact(text)}: unknown scheme {scheme!r}; use grpc://HOST:8001")
    try:
        host, port = parts.hostname, parts.port or DEFAULT_PORT
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise RealtimeError(f"--triton-url {_redact(text)}: expected grpc://HOST:PORT, e.g. grpc://127.0.0.1:8001")
    shown = f"[{host}]" if ":" in host else host
    headers: dict[str, str] = {}
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    token = (parse_qs(parts.query).get("token") or [None])[0]
    if token:
        headers["authorization"] = f"Bearer {token}"
    return TritonTarget(f"{shown}:{port}", f"{scheme}://{shown}:{port}", scheme == "grpcs", headers)


def _reason(exc: BaseException) -> str:
    """One short redacted line from a tritonclient/gRPC error."""
    status = getattr(exc, "status", None)
    message = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    status = status() if callable(status) else None
    text = " ".join(_redact(str(message or type(exc).__name__)).split())[:200]
    return f"{str(status).replace('StatusCode.', '')}: {text}" if status else text


class _Shm:
    """One caller thread's system shared-memory regions (input and output), sized for ``capacity`` crops."""

    def __init__(self, capacity: int, in_bytes: int, out_bytes: int) -> None:
        import tritonclient.utils.shared_memory as shm

        self.capacity = capacity
        stem = f"realtime-{os.getpid()}-{next(_regions)}"
        self.in_name, self.out_name = f"{stem}-in", f"{stem}-out"
        self.in_size, self.out_size = capacity * in_bytes, capacity * out_bytes
        self.in_handle = shm.create_shared_memory_region(self.in_name, "/" + self.in_name, self.in_size)
        try:
            self.out_handle = shm.create_shared_memory_region(self.out_name, "/" + self.out_name, self.out_size)
        except Exception:
            shm.destroy_shared_memory_region(self.in_handle)
            raise
        self.epoch = -1  # server registration generation; -1 = not registered yet

    def register(self, client, headers: dict, timeout: float) -> None:
        for name, size in ((self.in_name, self.in_size), (self.out_name, self.out_size)):
            try:  # a restarted server has forgotten it; an old registration of the same name is replaced
                client.unregister_system_shared_memory(name, headers=headers, client_timeout=timeout)
            except Exception:
                pass
            client.register_system_shared_memory(name, "/" + name, size, headers=headers, client_timeout=timeout)

    def destroy(self, client, headers: dict, timeout: float) -> None:
        import tritonclient.utils.shared_memory as shm

        for name in (self.in_name, self.out_name):
            try:
                client.unregister_system_shared_memory(name, headers=headers, client_timeout=timeout)
            except Exception:
                pass
        for handle in (self.in_handle, self.out_handle):
            try:
                shm.destroy_shared_memory_region(handle)
            except Exception:
                pass


class TritonBackend:
    """``PoseBackend`` over one Triton model (see the module docstring)."""

    input_hw: tuple[int, int] = INPUT_HW

    def __init__(self, url: str = DEFAULT_URL, model: str = "vitpose_b", *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 shm: bool = False, wait_s: float = 0.0, backoff_max_s: float = BACKOFF_MAX_S) -> None:
        try:
            import tritonclient.grpc as grpcclient
        except ImportError:
            raise BackendUnavailable(INSTALL_HINT) from None
        if timeout_s <= 0:
            raise RealtimeError("--triton-timeout must be positive")
        self.target = parse_triton_url(url)
        self.model = model
        self.timeout_s = float(timeout_s)
        self.backoff_max_s = max(BACKOFF_START_S, float(backoff_max_s))
        self._grpc = grpcclient
        self._client = grpcclient.InferenceServerClient(self.target.address, ssl=self.target.ssl)
        self._lock = threading.Lock()  # guards the outage state and the shm list only, never held during a call
        self._failures = 0
        self._retry_at = 0.0
        self._failed_at = 0.0  # when the last counted failure was recorded
        self._outage: str | None = None
        self._outage_since = 0.0
        self._epoch = 0  # bumped on every failure: shm regions re-register after a server restart
        self._closed = False
        self._use_shm = bool(shm)
        self._local = threading.local()
        self._shm: list[_Shm] = []
        try:
            self._check_model(wait_s)
        except BaseException:
            self._client.close()
            raise
        self.name = f"triton[{self.model}@{self.target.display},{self.datatype.lower()}{',shm' if shm else ''}]"
        log.info("pose backend %s (max batch %d, timeout %.1f s)", self.name, self.max_batch, self.timeout_s)

    # ------------------------------------------------------------------------------------------ start-up

    def _call(self, method: str, *args, **kwargs):
        return getattr(self._client, method)(*args, headers=self.target.headers, client_timeout=self.timeout_s,
                                             **kwargs)

    def _check_model(self, wait_s: float) -> None:
        where = f"Triton server {self.target.display}"
        deadline = time.monotonic() + max(0.0, wait_s)
        delay = BACKOFF_START_S
        while True:
            try:
                live = self._call("is_server_live")
                reason = "not live"
            except Exception as exc:
                live, reason = False, _reason(exc)
            if live or time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, self.backoff_max_s)
        if not live:
            raise BackendUnavailable(f"{where} is unreachable ({reason}); start it (e.g. scripts/triton_local.sh) "
                                     f"or fix --triton-url")
        try:
            ready = self._call("is_model_ready", self.model)
        except Exception as exc:
            raise BackendUnavailable(f"{where}: cannot query model {self.model!r} ({_reason(exc)})") from None
        if not ready:
            raise TritonModelMismatch(f"{where} has no ready model {self.model!r} (models: {self._model_names()}); "
                                      f"check --triton-model or the server's log")
        meta = self._call("get_model_metadata", self.model, as_json=True)
        config = self._call("get_model_config", self.model, as_json=True).get("config", {})
        inputs, outputs = meta.get("inputs", []), meta.get("outputs", [])
        self.max_batch = int(config.get("max_batch_size", 0) or 0)
        problem = None
        if len(inputs) != 1 or len(outputs) != 1:
            problem = f"has {len(inputs)} inputs and {len(outputs)} outputs, ViTPose 1 and 1"
        elif self.max_batch < 1:
            problem = "has max_batch_size 0 (no batching); re-export it with export-triton"
        else:
            for tensor, dims in ((inputs[0], _IN_DIMS), (outputs[0], _OUT_DIMS)):
                shape = [int(d) for d in tensor.get("shape", [])]
                if shape != [-1, *dims] or tensor.get("datatype") not in _DTYPES:
                    problem = (f"{tensor.get('name')} is {tensor.get('datatype')} {shape}, ViTPose's is FP32/FP16 "
                               f"{[-1, *dims]}")
                    break
        if problem:
            raise TritonModelMismatch(f"Triton model {self.model!r} at {self.target.display} is not a ViTPose "
                                      f"256x192 export: it {problem}")
        self.input_name, self.output_name = inputs[0]["name"], outputs[0]["name"]
        self.datatype = inputs[0]["datatype"]
        self._in_dtype = _DTYPES[self.datatype]
        self._out_dtype = _DTYPES[outputs[0]["datatype"]]
        self._out_datatype = outputs[0]["datatype"]

    def _model_names(self) -> str:
        try:
            index = self._call("get_model_repository_index", as_json=True).get("models", [])
            return ", ".join(sorted(m.get("name", "?") for m in index)) or "none"
        except Exception:
            return "unknown"

    # ------------------------------------------------------------------------------------------- serving

    @property
    def outage(self) -> str | None:
        """None while the server answers, else the one-line reason of the current outage (for overlays)."""
        return self._outage

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim != 4 or list(batch.shape[1:]) != _IN_DIMS:
            raise ValueError(f"expected (N, 3, 256, 192) crops, got {batch.shape}")
        if self._closed:
            raise PoseServerUnavailable(f"pose server {self.target.display}: backend closed")
        if len(batch) == 0:
            return np.zeros((0, *_OUT_DIMS), np.float32)
        self._gate()
        sent = time.monotonic()
        try:
            out = self._infer_shm(batch) if self._use_shm else self._infer_wire(batch)
        except Exception as exc:
            raise self._failed(_reason(exc), sent) from None
        self._succeeded()
        return out

    def _gate(self) -> None:
        """Fail fast during a backoff; once it has passed let this one call probe (the others still fail fast)."""
        with self._lock:
            if not self._failures:
                return
            now = time.monotonic()
            if now < self._retry_at:
                raise PoseServerUnavailable(f"{self._outage}; next try in {self._retry_at - now:.1f} s")
            self._retry_at = now + self._backoff()

    def _backoff(self) -> float:
        return min(self.backoff_max_s, BACKOFF_START_S * 2 ** max(0, self._failures - 1))

    def _failed(self, reason: str, sent: float) -> PoseServerUnavailable:
        with self._lock:
            now = time.monotonic()
            self._epoch += 1
            first = self._outage is None
            self._outage = f"pose server {self.target.display} unavailable ({reason})"
            if first:
                self._outage_since = now
            # Requests already in flight when a failure was recorded (other cameras') fail with it: only a request
            # sent after it (the probe) doubles the backoff, so N cameras do not start at 0.5 * 2**(N-1) s.
            if not self._failures or sent >= self._failed_at:
                self._failures += 1
                self._failed_at = now
                self._retry_at = now + self._backoff()
            delay = max(0.0, self._retry_at - now)
            message = self._outage
        if first:
            log.warning("%s; retrying with backoff (at most every %.0f s)", message, self.backoff_max_s)
        return PoseServerUnavailable(f"{message}; next try in {delay:.1f} s")

    def _succeeded(self) -> None:
        if not self._failures:
            return
        with self._lock:
            if not self._failures:
                return
            down = time.monotonic() - self._outage_since
            self._failures, self._outage = 0, None
        log.info("pose server %s is back after %.1f s", self.target.display, down)

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        return [(start, min(n, start + self.max_batch)) for start in range(0, n, self.max_batch)]

    def _send(self, inputs: list, outputs: list) -> tuple[threading.Event, list]:
        done, box = threading.Event(), [None, None]

        def callback(result, error) -> None:
            box[0], box[1] = result, error
            done.set()

        self._client.async_infer(self.model, inputs, callback, outputs=outputs, client_timeout=self.timeout_s,
                                 headers=self.target.headers)
        return done, box

    def _wait(self, done: threading.Event, box: list):
        # The gRPC deadline ends the call after timeout_s; the extra second only guards against a lost callback.
        if not done.wait(self.timeout_s + 1.0):
            raise TimeoutError(f"no answer within {self.timeout_s:.1f} s")
        if box[1] is not None:
            raise box[1]
        return box[0]

    def _infer_wire(self, batch: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(batch, dtype=self._in_dtype)
        pending = []
        for start, stop in self._chunks(len(data)):  # all chunks in flight at once
            item = self._grpc.InferInput(self.input_name, [stop - start, *_IN_DIMS], self.datatype)
            item.set_data_from_numpy(data[start:stop])
            pending.append(self._send([item], [self._grpc.InferRequestedOutput(self.output_name)]))
        parts = [self._wait(*call).as_numpy(self.output_name) for call in pending]
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return out.astype(np.float32, copy=False)

    def _region(self, n: int) -> _Shm:
        """This thread's shared-memory regions, (re)created for ``n`` crops and registered with the server."""
        import tritonclient.utils.shared_memory as shm_utils  # noqa: F401  (import errors surface here)

        item_in = int(np.prod(_IN_DIMS)) * np.dtype(self._in_dtype).itemsize
        item_out = int(np.prod(_OUT_DIMS)) * np.dtype(self._out_dtype).itemsize
        region: _Shm | None = getattr(self._local, "region", None)
        if region is None or region.capacity < n:
            if region is not None:
                region.destroy(self._client, self.target.headers, self.timeout_s)
                with self._lock:
                    self._shm.remove(region)
            region = _Shm(1 << max(0, n - 1).bit_length(), item_in, item_out)
            self._local.region = region
            with self._lock:
                self._shm.append(region)
        epoch = self._epoch
        if region.epoch != epoch:
            region.register(self._client, self.target.headers, self.timeout_s)
            region.epoch = epoch
        return region

    def _infer_shm(self, batch: np.ndarray) -> np.ndarray:
        import tritonclient.utils.shared_memory as shm

        n = len(batch)
        region = self._region(n)
        data = np.ascontiguousarray(batch, dtype=self._in_dtype)
        shm.set_shared_memory_region(region.in_handle, [data])
        item_in, item_out = data[0].nbytes, int(np.prod(_OUT_DIMS)) * np.dtype(self._out_dtype).itemsize
        pending = []
        for start, stop in self._chunks(n):
            item = self._grpc.InferInput(self.input_name, [stop - start, *_IN_DIMS], self.datatype)
            item.set_shared_memory(region.in_name, (stop - start) * item_in, offset=start * item_in)
            want = self._grpc.InferRequestedOutput(self.output_name)
            want.set_shared_memory(region.out_name, (stop - start) * item_out, offset=start * item_out)
            pending.append(self._send([item], [want]))
        for call in pending:
            self._wait(*call)
        out = shm.get_contents_as_numpy(region.out_handle, self._out_dtype, [n, *_OUT_DIMS])
        return np.array(out, dtype=np.float32)  # a copy: the region is reused by this thread's next call

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            regions, self._shm = self._shm, []
        for region in regions:
            region.destroy(self._client, self.target.headers, min(self.timeout_s, 2.0))
        self._client.close()


def server_batch_counts(url: str, model: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[int, int]:
    """{batch size: executions} the server has run for ``model`` since it started (Triton's statistics API)."""
    import tritonclient.grpc as grpcclient

    target = parse_triton_url(url)
    client = grpcclient.InferenceServerClient(target.address, ssl=target.ssl)
    try:
        stats = client.get_inference_statistics(model, headers=target.headers, client_timeout=timeout_s,
                                                as_json=True)
    finally:
        client.close()
    counts: dict[int, int] = {}
    for entry in stats.get("model_stats", []):
        for row in entry.get("batch_stats", []):
            size = int(row.get("batch_size", 0))
            counts[size] = counts.get(size, 0) + int(row.get("compute_infer", {}).get("count", 0))
    return counts


def server_batch_stats(url: str, model: str, since: dict[int, int] | None = None,
                       timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """Mean batch size the server formed for ``model`` (since the ``server_batch_counts`` snapshot ``since``).

    0.0 when it ran nothing in that span. Raises tritonclient's InferenceServerException when unreachable.
    """
    counts = server_batch_counts(url, model, timeout_s)
    for size, n in (since or {}).items():
        counts[size] = counts.get(size, 0) - n
    executions = sum(n for n in counts.values() if n > 0)
    crops = sum(size * n for size, n in counts.items() if n > 0)
    return crops / executions if executions else 0.0


def create(model=None, onnx_path=None, precision: str = "fp32", device: str | None = None,
           **options: object) -> TritonBackend:
    """Triton backend (factory contract of ``realtime.backends``); see the module docstring for the options."""
    try:
        import tritonclient.grpc  # noqa: F401
    except ImportError:
        raise BackendUnavailable(INSTALL_HINT) from None
    variant = str(options.get("variant") or "b")
    name = str(options.get("triton_model") or f"vitpose_{variant if variant in ('s', 'b', 'l', 'h') else 'b'}")
    backend = TritonBackend(
        str(options.get("triton_url") or DEFAULT_URL), name,
        timeout_s=float(options.get("triton_timeout_s") or DEFAULT_TIMEOUT_S),  # type: ignore[arg-type]
        shm=bool(options.get("triton_shm", False)),
        wait_s=float(options.get("triton_wait_s") or 0.0),  # type: ignore[arg-type]
        backoff_max_s=float(options.get("triton_backoff_max_s") or BACKOFF_MAX_S),  # type: ignore[arg-type]
    )
    if precision not in ("auto", backend.datatype.replace("FP", "fp")):
        log.info("--precision %s ignored: the server's model %s decides (%s inputs)", precision, name,
                 backend.datatype)
    return backend
