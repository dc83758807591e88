"""A real Triton Inference Server on 127.0.0.1 for the tests (PyPI nvidia-pytriton's tritonserver, Python backend).

Helpers for fixtures: :func:`make_tiny` (a tiny random ViTPose and its dynamic-batch ONNX export),
:func:`write_repository` (written by our exporter, ``--format python-onnx``, plus a ``wrong_io`` model whose input
is not ViTPose's) and :func:`start_session_server` (a started :class:`TritonServer`, stopped at the end). Tests that
kill or pause a server start their own :class:`TritonServer` on the same repository. Everything skips, saying why, only when
the server venv (``bash scripts/setup_triton.sh``) is missing; a server that is installed but does not start fails.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from realtime.backends import triton_repo
from realtime.errors import BackendUnavailable

MODEL = "vitpose_b"
WRONG_MODEL = "wrong_io"
MAX_BATCH = 16


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_server_venv() -> None:
    """Skip (with the fix) when the Triton server venv is not installed."""
    try:
        triton_repo.find_local_server()
    except BackendUnavailable as exc:
        pytest.skip(f"Triton server not installed ({exc})")


class TritonServer:
    """One ``tritonserver`` process on free 127.0.0.1 ports; restartable on the same ports."""

    def __init__(self, repository: Path, log_path: Path, model: str = MODEL) -> None:
        self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.argv, self.env = triton_repo.local_server_command(repository, grpc_port=self.grpc_port,
                                                               http_port=self.http_port,
                                                               metrics_port=self.metrics_port)
        self.model = model
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.start_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 90.0) -> float:
        """Start and wait until the model is ready; returns the seconds it took."""
        import tritonclient.grpc as grpcclient

        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        client = grpcclient.InferenceServerClient(self.address)
        try:
            while time.monotonic() - started < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"tritonserver exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if client.is_model_ready(self.model, client_timeout=1.0):
                        return time.monotonic() - started
                except Exception:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        self.kill()
        raise RuntimeError(f"tritonserver not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL, as a crash would (the server cannot say goodbye to its clients)."""
        if self.proc and self.proc.poll() is None:
            import psutil

            # The Python-backend stubs are the server's children: a SIGKILLed server leaves them running for good,
            # each with its /dev/shm region (a crashing container would take them all).
            children = psutil.Process(self.proc.pid).children(recursive=True)
            regions = [arg for child in children for arg in child.cmdline()
                       if arg.startswith("triton_python_backend_shm_region")]
            self.proc.kill()
            self.proc.wait(timeout=30)
            for child in children:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(children, timeout=10)
            for region in regions:
                Path("/dev/shm", region).unlink(missing_ok=True)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass(frozen=True)
class Tiny:
    model: object  # torch.nn.Module
    onnx: Path


def make_tiny(folder: Path, seed: int = 0) -> Tiny:
    """A tiny random ViTPose (hidden 32, depth 2) and its dynamic-batch ONNX export."""
    import torch

    from realtime.pose import vitpose

    torch.manual_seed(seed)
    model = vitpose.build_vitpose("b", tiny=True)
    return Tiny(model, vitpose.export_onnx(model, folder / "tiny.onnx"))


def write_repository(out: Path, onnx: Path) -> Path:
    """The test repository: ``vitpose_b`` (python-onnx, our exporter) + ``wrong_io`` (224x224 input)."""
    triton_repo.export_model_repository(out, onnx, fmt="python-onnx", name=MODEL, max_batch=MAX_BATCH,
                                        intra_op_threads=1)
    wrong_dir = triton_repo.export_model_repository(out, onnx, fmt="python-onnx", name=WRONG_MODEL, max_batch=4)
    inp, outp = triton_repo.onnx_io(onnx)
    bad = triton_repo.TensorSpec(inp.name, inp.data_type, (3, 224, 224))
    triton_repo.write_config(wrong_dir / "config.pbtxt",
                             triton_repo.build_config(WRONG_MODEL, "python-onnx", bad, outp, max_batch=4))
    return out


@contextmanager
def start_session_server(repository: Path, log_path: Path) -> Iterator[TritonServer]:
    """A started server (skips when the venv is missing), stopped on exit; ``start_seconds`` says how long it took."""
    require_server_venv()
    server = TritonServer(repository, log_path)
    server.start_seconds = server.start()
    try:
        yield server
    finally:
        server.stop()
