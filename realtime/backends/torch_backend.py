"""PyTorch backend: CPU fp32, or CUDA fp32/fp16 with CUDA graphs / torch.compile, pinned staging buffers.

On CUDA the per-frame path allocates nothing: crops are copied into a pinned host buffer, uploaded with one
async copy on the backend's stream into a preallocated device buffer, and heatmaps come back through a pinned
output buffer. Batches are padded up to a small set of bucket sizes so that CUDA graphs (and torch.compile)
see a handful of fixed shapes. ``TorchCropper`` does the top-down crop + normalisation on the device
(``affine_grid``/``grid_sample`` on the frame uploaded once), shared with the TensorRT backend.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from realtime.errors import BackendUnavailable

log = logging.getLogger(__name__)

INPUT_HW: tuple[int, int] = (256, 192)
NUM_JOINTS = 17
BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def bucket_for(n: int, max_batch: int) -> int:
    """Smallest bucket >= n (capped at max_batch): the padded batch size a graph/compiled shape is made for."""
    for b in BUCKETS:
        if b >= n:
            return min(b, max_batch)
    return max_batch


class HeatmapNet(nn.Module):
    """(N, 3, H, W) -> (N, 17, H/4, W/4) tensor, whatever the wrapped model returns (HF output or tensor).

    ``channels_last_head``: hand the decoder its (N, C, 16, 12) feature map in channels-last layout. On an H200
    the ×4 bilinear upsample of that map in the default layout took 72 % of ViTPose-B's fp16 GPU time at batch 64
    (PyTorch's NCHW upsample kernel is slow in half precision); the channels-last kernel and convolution are not.
    On a 2-core CPU it makes ViTPose-S fp32 1.13× faster. Same numbers, other memory layout.
    """

    def __init__(self, model: nn.Module, channels_last_head: bool = False) -> None:
        super().__init__()
        self.model = model
        head = getattr(model, "head", None)
        if channels_last_head and isinstance(head, nn.Module) and not hasattr(head, "_channels_last_hook"):
            # On the shared model (several backends may wrap it): once, and harmless elsewhere (layout only).
            head._channels_last_hook = head.register_forward_pre_hook(_to_channels_last)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values) if _takes_pixel_values(self.model) else self.model(pixel_values)
        return out.heatmaps if hasattr(out, "heatmaps") else out


def _to_channels_last(_module: nn.Module, args: tuple) -> tuple:
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return args


def _takes_pixel_values(model: nn.Module) -> bool:
    import inspect

    try:
        return "pixel_values" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"--device {device}: no CUDA GPU is visible to PyTorch; use --device cpu")
    return dev


class TorchBackend:
    """ViTPose in PyTorch. CPU: fp32. CUDA: fp32 or fp16, optional CUDA graphs and torch.compile."""

    def __init__(
        self,
        model: nn.Module,
        precision: str = "fp32",
        device: str | None = None,
        max_batch: int = 64,
        cuda_graphs: bool = False,
        compile: bool = False,
        channels_last: bool = False,
        input_hw: tuple[int, int] = INPUT_HW,
    ) -> None:
        self.device = resolve_device(device)
        cuda = self.device.type == "cuda"
        if precision == "int8":
            raise BackendUnavailable(
                "--precision int8 is not available with --backend torch; use tensorrt/torch2trt on a GPU "
                "or onnxruntime on the CPU"
            )
        if precision == "fp16" and not cuda:
            raise BackendUnavailable("--precision fp16 needs a CUDA GPU with --backend torch; use fp32 on the CPU")
        if precision not in ("fp32", "fp16"):
            raise BackendUnavailable(f"unknown --precision {precision!r}; choose fp32, fp16 or int8")
        self.precision = precision
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.input_hw = tuple(input_hw)
        self.max_batch = int(max_batch)
        self.cuda_graphs = bool(cuda_graphs and cuda)
        if cuda_graphs and not cuda:
            log.warning("CUDA graphs need a CUDA device; ignored on %s", self.device)
        self.channels_last = channels_last

        net = HeatmapNet(model, channels_last_head=True).eval().to(self.device, self.dtype)
        for p in net.parameters():
            p.requires_grad_(False)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self._forward = torch.compile(net, dynamic=False) if compile else net
        self.compiled = bool(compile)

        flags = [self.device.type, precision] + (["cudagraph"] if self.cuda_graphs else []) + (
            ["compile"] if compile else [])
        self.name = f"torch[{','.join(flags)}]"
        h, w = self.input_hw
        self.out_hw = (h // 4, w // 4)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._cropper: TorchCropper | None = None
        if cuda:
            self.stream = torch.cuda.Stream(self.device)
            # Device input in the model's dtype; float32 pinned host staging in and out.
            self._dev_in = torch.zeros((self.max_batch, 3, h, w), dtype=self.dtype, device=self.device)
            self._host_in = torch.empty((self.max_batch, 3, h, w), dtype=torch.float32).pin_memory()
            self._host_out = torch.empty((self.max_batch, NUM_JOINTS, *self.out_hw), dtype=torch.float32).pin_memory()
            self._graph_pool = torch.cuda.graph_pool_handle() if self.cuda_graphs else None
        else:
            self.stream = None

    # ---------------------------------------------------------------------------------------- device API

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._forward(x)

    def _graph(self, bucket: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """Capture (once) a CUDA graph reading ``_dev_in[:bucket]``; returns it and its static output."""
        if bucket not in self._graphs:
            static_in = self._dev_in[:bucket]
            with torch.cuda.stream(self.stream):  # warm-up on a side stream, as graph capture requires
                for _ in range(3):
                    self._run(static_in)
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._graph_pool, stream=self.stream):
                static_out = self._run(static_in)
            self._graphs[bucket] = (graph, static_out)
            log.info("captured a CUDA graph for batch %d", bucket)
        return self._graphs[bucket]

    @torch.inference_mode()
    def infer_device(self, n: int) -> torch.Tensor:
        """Run the first ``n`` rows already in the device input buffer (:attr:`device_input`); returns a view of
        the (bucket, 17, h, w) heatmaps on the device (valid until the next call). CUDA only."""
        if self.cuda_graphs:
            try:
                graph, out = self._graph(bucket_for(n, self.max_batch))
            except RuntimeError as exc:  # a capture-unsafe op (host sync): run eagerly rather than fail
                log.warning("CUDA graph capture failed (%s); running without CUDA graphs", str(exc).splitlines()[0])
                self.cuda_graphs = False
                self.name = self.name.replace(",cudagraph", "")
                self._graphs.clear()
                return self.infer_device(n)
            with torch.cuda.stream(self.stream):
                graph.replay()
            return out[:n]
        with torch.cuda.stream(self.stream):
            return self._run(self._dev_in[: self._padded(n)])[:n]

    def _padded(self, n: int) -> int:
        """Fixed shapes only where they pay: graphs and compiled code are made per bucket, eager runs exactly n."""
        return bucket_for(n, self.max_batch) if (self.cuda_graphs or self.compiled) else n

    @property
    def device_input(self) -> torch.Tensor:
        """The preallocated (max_batch, 3, H, W) device input buffer (for on-device preprocessing)."""
        return self._dev_in

    # ------------------------------------------------------------------------------------------ host API

    @torch.inference_mode()
    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        n = len(batch)
        if n == 0:
            return np.zeros((0, NUM_JOINTS, *self.out_hw), np.float32)
        if batch.shape[1:] != (3, *self.input_hw):
            raise ValueError(f"expected (N, 3, {self.input_hw[0]}, {self.input_hw[1]}) crops, got {batch.shape}")
        if self.device.type == "cpu":
            x = torch.from_numpy(np.ascontiguousarray(batch))
            m = self._padded(n) if n <= self.max_batch else n
            if m > n:
                x = torch.cat([x, x.new_zeros((m - n, *x.shape[1:]))])
            return self._run(x)[:n].float().numpy()
        if n > self.max_batch:  # larger than the buffers: split, keeps the no-allocation path for normal sizes
            return np.concatenate([self.infer(batch[i : i + self.max_batch]) for i in range(0, n, self.max_batch)])
        self.enqueue(batch)
        self.stream.synchronize()
        return self._host_out[:n].numpy().copy()

    def enqueue(self, batch: np.ndarray) -> int:
        """CUDA: copy ``batch`` in, run it and queue the copy out on this backend's stream, without waiting.

        The heatmaps are in ``_host_out[:n]`` once ``stream.synchronize()`` returns; returns n.
        """
        n = len(batch)
        self._host_in.numpy()[:n] = batch
        with torch.cuda.stream(self.stream):
            # Padded rows (up to the bucket) keep whatever finite crops were there before; their outputs are dropped.
            self._dev_in[:n].copy_(self._host_in[:n], non_blocking=True)
        out = self.infer_device(n)
        with torch.cuda.stream(self.stream):
            self._host_out[:n].copy_(out, non_blocking=True)
        return n

    @torch.inference_mode()
    def infer_frame(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessing on the backend's device: on CUDA the frame is uploaded once and every person box is cropped
        and normalised there, straight into the input buffer (on the CPU: OpenCV, which is faster there). Returns (heatmaps (N, 17, h, w), affines (N, 2, 3)) for
        ``topdown.decode_heatmaps``; same result as ``infer(topdown.preprocess(image, boxes)[0])`` up to rounding."""
        if self.device.type == "cpu":  # OpenCV's warpAffine beats grid_sample on a whole float frame here
            from realtime.pose.topdown import preprocess

            crops, affines = preprocess(image, np.asarray(boxes, np.float32).reshape(-1, 4))
            return self.infer(crops), affines
        if self._cropper is None:
            self._cropper = TorchCropper(self.device, self.input_hw)
        affines = self._cropper.affines(boxes)
        n = len(affines)
        if n == 0:
            return np.zeros((0, NUM_JOINTS, *self.out_hw), np.float32), affines
        if n > self.max_batch:
            return self.infer(self._cropper.crop(image, affines).cpu().numpy()), affines
        with torch.cuda.stream(self.stream):
            self._cropper.crop(image, affines, out=self._dev_in)
        out = self.infer_device(n)
        with torch.cuda.stream(self.stream):
            self._host_out[:n].copy_(out, non_blocking=True)
        self.stream.synchronize()
        return self._host_out[:n].numpy().copy(), affines

    def close(self) -> None:
        self._graphs.clear()
        self.net = None  # type: ignore[assignment]
        self._forward = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class MultiStreamRunner:
    """Keeps ``streams`` batches in flight on separate CUDA streams (each with its own buffers), for throughput
    measurements: one thread enqueues everything, then waits once."""

    def __init__(self, model: nn.Module, precision: str = "fp16", device: str | None = None, streams: int = 2,
                 max_batch: int = 64, cuda_graphs: bool = False) -> None:
        first = TorchBackend(model, precision, device, max_batch=max_batch, cuda_graphs=cuda_graphs)
        self.backends = [first]
        for _ in range(streams - 1):
            other = TorchBackend.__new__(TorchBackend)
            other.__dict__.update(first.__dict__)  # share the network weights, not the buffers or graphs
            if first.device.type == "cuda":
                other.stream = torch.cuda.Stream(first.device)
                other._dev_in = torch.zeros_like(first._dev_in)
                other._host_in = torch.empty_like(first._host_in).pin_memory()
                other._host_out = torch.empty_like(first._host_out).pin_memory()
                other._graphs = {}
                # Graphs that may run concurrently on different streams must not share a memory pool.
                other._graph_pool = torch.cuda.graph_pool_handle() if first.cuda_graphs else None
            self.backends.append(other)
        self.name = f"{first.name}x{streams}streams"

    @torch.inference_mode()
    def infer_many(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the batches round-robin over the streams; returns heatmaps in order."""
        results: list[np.ndarray | None] = [None] * len(batches)
        k = len(self.backends)
        for start in range(0, len(batches), k):
            group = list(enumerate(batches[start : start + k], start))
            pending = []
            for (i, batch), be in zip(group, self.backends, strict=False):
                if be.device.type == "cpu":
                    results[i] = be.infer(batch)
                    continue
                pending.append((i, be.enqueue(batch), be))
            for i, n, be in pending:
                be.stream.synchronize()
                results[i] = be._host_out[:n].numpy().copy()
        return results  # type: ignore[return-value]

    def close(self) -> None:
        for be in self.backends:
            be._graphs.clear()


class TorchCropper:
    """Top-down crops on the device: upload the frame once, ``grid_sample`` every person box into the backend's
    input buffer, normalise there. Same geometry and normalisation as ``realtime.pose.topdown.preprocess`` (its
    frame->crop affines, black outside the frame, ImageNet RGB), up to bilinear rounding (OpenCV interpolates
    in 1/32-pixel fixed point)."""

    def __init__(self, device: torch.device | str, input_hw: tuple[int, int] | None = None,
                 max_frame_hw: tuple[int, int] = (2160, 3840)) -> None:
        from realtime.pose import topdown

        self.device = torch.device(device)
        self.input_hw = tuple(input_hw or topdown.INPUT_HW)
        mean = torch.from_numpy(topdown.MEAN_RGB.astype(np.float32)).view(1, 3, 1, 1)
        std = torch.from_numpy(topdown.STD_RGB.astype(np.float32)).view(1, 3, 1, 1)
        # (x - mean) / std as one multiply-add per channel, on 0..255 RGB values.
        self._scale = (1.0 / std).to(self.device)
        self._shift = (-mean / std).to(self.device)
        self._pinned: torch.Tensor | None = None
        self._max_frame_hw = max_frame_hw

    def affines(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) person boxes -> (N, 2, 3) frame->crop affines, exactly as ``topdown.preprocess`` makes them."""
        from realtime.pose import topdown

        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        out = np.empty((len(boxes), 2, 3), np.float64)
        for i, box in enumerate(boxes):
            out[i] = topdown.crop_affine(*topdown.box_to_center_scale(box), out_hw=self.input_hw)
        return out

    def upload(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 BGR -> (1, 3, H, W) float32 RGB 0..255 on the device; on a GPU the uint8 frame goes
        through one reused pinned buffer (one small upload per frame, however many people are in it)."""
        h, w = image.shape[:2]
        src = torch.from_numpy(np.ascontiguousarray(image))
        if self.device.type == "cuda":
            if self._pinned is None or self._pinned.numel() < image.size:
                self._pinned = torch.empty(max(image.size, 3 * self._max_frame_hw[0] * self._max_frame_hw[1]),
                                           dtype=torch.uint8).pin_memory()
            staged = self._pinned[: image.size].view(h, w, 3)
            staged.copy_(src)
            src = staged.to(self.device, non_blocking=True)
        return src.permute(2, 0, 1).flip(0).unsqueeze(0).float()  # BGR -> RGB

    def thetas(self, affines: np.ndarray, frame_hw: tuple[int, int]) -> torch.Tensor:
        """(N, 2, 3) image->crop pixel affines -> (N, 2, 3) ``affine_grid`` thetas (output -> input, normalised,
        align_corners=False, i.e. pixel i <-> (2i + 1) / size - 1)."""
        H, W = frame_hw
        h, w = self.input_hw
        A = np.asarray(affines, dtype=np.float64).reshape(-1, 2, 3)
        full = np.concatenate([A, np.broadcast_to([0.0, 0.0, 1.0], (len(A), 1, 3))], axis=1)
        inv = np.linalg.inv(full)  # crop pixel -> image pixel
        # normalised crop -> crop pixel: x = ((u + 1) * w - 1) / 2
        d_out = np.array([[w / 2, 0, (w - 1) / 2], [0, h / 2, (h - 1) / 2], [0, 0, 1]])
        # image pixel -> normalised image: u = (2x + 1) / W - 1
        n_in = np.array([[2 / W, 0, 1 / W - 1], [0, 2 / H, 1 / H - 1], [0, 0, 1]])
        theta = n_in @ inv @ d_out
        return torch.from_numpy(theta[:, :2].astype(np.float32)).to(self.device)

    def crop(self, image: np.ndarray | torch.Tensor, affines: np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
        """Crops for each affine, normalised: (N, 3, h, w), written into ``out`` (e.g. a backend input buffer)."""
        import torch.nn.functional as F

        frame = image if isinstance(image, torch.Tensor) else self.upload(image)
        n = len(affines)
        theta = self.thetas(affines, tuple(frame.shape[-2:]))
        grid = F.affine_grid(theta, [n, 3, *self.input_hw], align_corners=False)
        crops = F.grid_sample(frame.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)
        # Zero padding must stay 0 *before* normalisation (cv2 pads black), so normalise after sampling.
        crops = crops * self._scale + self._shift
        if out is None:
            return crops
        out[:n].copy_(crops)
        return out[:n]


def create(
    model: nn.Module | None,
    onnx_path: Path | None = None,
    precision: str = "fp32",
    device: str | None = None,
    max_batch: int = 64,
    cuda_graphs: bool | None = None,
    compile: bool = False,
    **_: object,
) -> TorchBackend:
    """Backend factory (see ``realtime.backends``). Needs the PyTorch module; an ONNX file alone is not enough.

    ``cuda_graphs=None`` turns graphs on where they exist (CUDA): the live case is batch 1, where one graph replay
    replaces hundreds of kernel launches, and a capture that fails falls back to eager (``infer_device``).
    """
    if model is None:
        raise BackendUnavailable("--backend torch needs ViTPose weights loadable by PyTorch, not only an .onnx file")
    if cuda_graphs is None:
        cuda_graphs = resolve_device(device).type == "cuda"
    return TorchBackend(model, precision=precision, device=device, max_batch=max_batch, cuda_graphs=cuda_graphs,
                        compile=compile)
