"""INT8 calibration data: person crops sampled from real clips, shared by every INT8 path.

``refresh_calibration_frames`` samples varied frames from video clips (or person photos), crops the person
with the same top-down preprocessing the pose engine uses (``realtime.pose.topdown.preprocess``) and saves each
crop as a float16 ``.npy`` (exact network input) plus a ``.jpg`` preview under ``calib/frames/``. Those files
come from third-party clips and are git-ignored: never commit them.

``CalibrationBatches`` feeds the same crops to
- TensorRT's ``IInt8EntropyCalibrator2`` (:func:`make_entropy_calibrator`, cache in ``calib/*.cache``),
- torch2trt's ``int8_calib_dataset`` (:meth:`CalibrationBatches.torch2trt_dataset`),
- ONNX Runtime static quantisation (:func:`quantize_onnx_int8`: QDQ, per-channel) -> an INT8 ``.onnx``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from realtime.errors import DataError
from realtime.files import project_dir

log = logging.getLogger(__name__)

CALIB_ENV = "REALTIME_CALIB_DIR"
VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
FRAME_PREFIX = "calib_"
MANIFEST = "manifest.json"

# (video path, frame index, (H, W, 3) BGR image) -> (4,) x1, y1, x2, y2 person box, or None for "no person".
BoxProvider = Callable[[Path, int, np.ndarray], "np.ndarray | None"]


def default_calib_dir() -> Path:
    """$REALTIME_CALIB_DIR, else ``calib/`` of a source checkout, else the user cache."""
    return project_dir(CALIB_ENV, "calib")


def frames_dir(calib_dir: Path) -> Path:
    return Path(calib_dir) / "frames"


# ---------------------------------------------------------------------------------------------- boxes


def keypoints_box(xy: np.ndarray, margin: float = 0.1) -> np.ndarray | None:
    """Tight box around the finite (x, y) keypoints, grown by ``margin`` of its size; None if < 4 points."""
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) < 4:
        return None
    lo, hi = pts.min(0), pts.max(0)
    pad = (hi - lo) * margin
    return np.array([*(lo - pad), *(hi + pad)], dtype=np.float32)


def keypoint_csv_for(video: Path) -> Path | None:
    """The per-frame COCO-17 keypoint CSV of a clip laid out like ``deadlift_bichraix`` (videos/<cls>/<id>.mp4 ->
    keypoints_coco17/<id>_joints_new.csv), if present."""
    for parent in video.parents:
        if parent.name == "videos":
            csv = parent.parent / "keypoints_coco17" / f"{video.stem}_joints_new.csv"
            return csv if csv.is_file() else None
    return None


def load_keypoint_boxes(csv: Path) -> list[np.ndarray | None]:
    """One person box per frame row of a keypoint CSV (frame_id + 34 x/y columns, empty = missing)."""
    data = np.genfromtxt(csv, delimiter=",", skip_header=1, dtype=np.float64)
    data = np.atleast_2d(data)
    return [keypoints_box(row[1:35].reshape(17, 2)) for row in data]


def whole_frame_box(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return np.array([0, 0, w, h], dtype=np.float32)


def _jitter(box: np.ndarray, rng: np.random.Generator, shape: tuple[int, ...], amount: float) -> np.ndarray:
    """Randomly shift/scale a box (what a live detector/tracker hands the pose model varies too)."""
    x1, y1, x2, y2 = box.astype(np.float64)
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2 + rng.uniform(-amount, amount) * w
    cy = (y1 + y2) / 2 + rng.uniform(-amount, amount) * h
    s = 1.0 + rng.uniform(-amount, amount)
    w, h = w * s, h * s
    H, W = shape[:2]
    out = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    out[[0, 2]] = out[[0, 2]].clip(0, W)
    out[[1, 3]] = out[[1, 3]].clip(0, H)
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------- sampling


def _collect(sources: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    videos: list[Path] = []
    images: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            files = sorted(p for p in src.rglob("*") if p.is_file())
        elif src.is_file():
            files = [src]
        else:
            raise DataError(f"calibration source {src} does not exist; pass video files/folders or person images")
        for f in files:
            ext = f.suffix.lower()
            if ext in VIDEO_EXTS:
                videos.append(f)
            elif ext in IMAGE_EXTS:
                images.append(f)
    return videos, images


def _frame_count(video: Path) -> int:
    import av

    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for p in c.demux(stream) if p.size)


def read_frames(video: Path, wanted: set[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Decode ``video`` once, yielding (index, upright BGR image) for the wanted frame indices."""
    from realtime.sources.decode import decode_upright

    for i, image in enumerate(decode_upright(video, limit=max(wanted) + 1)):
        if i in wanted:
            yield i, image


def _preview(crop: np.ndarray) -> np.ndarray:
    """(3, H, W) normalised RGB crop -> (H, W, 3) uint8 BGR picture of what the network sees."""
    from realtime.pose.topdown import MEAN_RGB, STD_RGB

    rgb = crop.astype(np.float32).transpose(1, 2, 0) * STD_RGB + MEAN_RGB
    return np.ascontiguousarray(rgb[:, :, ::-1].clip(0, 255).round().astype(np.uint8))


class _DetectorBoxes:
    """Best-scoring person of the bundled BlazePose detector (built on first use), else None."""

    def __init__(self) -> None:
        self._detector = None
        self._failed = False

    def __call__(self, _video: Path, _index: int, image: np.ndarray) -> np.ndarray | None:
        if self._detector is None and not self._failed:
            try:
                from realtime.pose.detector import BlazePersonDetector

                self._detector = BlazePersonDetector()
            except Exception as exc:  # detector runtime missing: whole-frame crops are still valid inputs
                log.warning("person detector unavailable (%s); using whole frames", exc)
                self._failed = True
        if self._detector is None:
            return None
        found = self._detector.detect(image)
        return np.asarray(found[0][0], np.float32) if found else None


def _default_boxes(video: Path, detector: _DetectorBoxes) -> BoxProvider:
    """Keypoint-CSV boxes when the clip has them (``deadlift_bichraix`` layout), else the person detector."""
    csv = keypoint_csv_for(video)
    table = load_keypoint_boxes(csv) if csv else None

    def provide(_video: Path, index: int, image: np.ndarray) -> np.ndarray | None:
        if table is not None:
            return table[index] if index < len(table) else None
        return detector(_video, index, image)

    return provide


def refresh_calibration_frames(
    sources: Sequence[Path],
    out_dir: Path,
    count: int = 256,
    seed: int = 0,
    box_provider: BoxProvider | None = None,
    jitter: float = 0.1,
    previews: bool = True,
) -> list[Path]:
    """Sample ``count`` varied person crops from clips/images in ``sources`` into ``out_dir`` (replacing old ones).

    Frames are spread evenly over the clips and drawn at random (seeded) within each clip. The person box comes
    from ``box_provider``; by default from a clip's COCO-17 keypoint CSV when one sits beside it
    (``deadlift_bichraix`` layout), else the bundled person detector, else the whole frame (images: detector,
    else whole image). Boxes are jittered by ``jitter`` of their size.
    Returns the ``.npy`` paths, each a (3, H, W) float16 network input.
    """
    from realtime.pose.topdown import preprocess

    if count < 1:
        raise DataError("--count must be at least 1")
    videos, images = _collect(sources)
    if not videos and not images:
        raise DataError(f"no videos or images in {', '.join(map(str, sources))}; pass clips or person images")
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in [*out_dir.glob(FRAME_PREFIX + "*.npy"), *out_dir.glob(FRAME_PREFIX + "*.jpg")]:
        old.unlink()

    # Each image is one item; the rest of the quota is spread over the clips.
    items: list[tuple[Path, int | None]] = [(p, None) for p in images[:count]]
    left = count - len(items)
    if videos and left > 0:
        lengths = [_frame_count(v) for v in videos]
        quotas = np.full(len(videos), left // len(videos))
        quotas[rng.permutation(len(videos))[: left % len(videos)]] += 1
        for video, n_frames, quota in zip(videos, lengths, quotas, strict=True):
            quota = int(min(quota, n_frames))
            if quota > 0:
                items += [(video, int(i)) for i in np.sort(rng.choice(n_frames, size=quota, replace=False))]

    import cv2

    saved: list[Path] = []
    manifest: list[dict] = []

    def save(image: np.ndarray, box: np.ndarray, source: Path, index: int | None) -> None:
        if jitter > 0:
            box = _jitter(box, rng, image.shape, jitter)
        batch, _ = preprocess(image, box[None].astype(np.float32))
        crop = np.asarray(batch[0], dtype=np.float16)
        path = out_dir / f"{FRAME_PREFIX}{len(saved):04d}.npy"
        np.save(path, crop)
        if previews:
            cv2.imwrite(str(path.with_suffix(".jpg")), _preview(crop))
        saved.append(path)
        manifest.append({"file": path.name, "source": source.name, "frame": index, "box": [round(float(v), 1) for v in box]})

    detector = _DetectorBoxes()
    by_video: dict[Path, set[int]] = {}
    for src, idx in items:
        if idx is None:
            image = cv2.imread(str(src), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("cannot read image %s; skipped", src)
                continue
            box = (box_provider or detector)(src, 0, image)
            save(image, np.asarray(whole_frame_box(image) if box is None else box, np.float32), src, None)
        else:
            by_video.setdefault(src, set()).add(idx)
    for video, wanted in by_video.items():
        provide = box_provider or _default_boxes(video, detector)
        for idx, image in read_frames(video, wanted):
            box = provide(video, idx, image)
            if box is None:  # nobody annotated in this frame: a whole-frame crop is still a valid input sample
                box = whole_frame_box(image)
            save(image, np.asarray(box, np.float32), video, idx)
    if not saved:
        raise DataError(f"no calibration frames could be read from {', '.join(map(str, sources))}")
    (out_dir / MANIFEST).write_text(json.dumps({
        "seed": seed, "count": len(saved), "fingerprint": CalibrationBatches(out_dir).fingerprint(), "frames": manifest,
    }, indent=1))
    log.info("wrote %d calibration crops from %d clips and %d images to %s", len(saved), len(by_video), len(images), out_dir)
    return saved


# ---------------------------------------------------------------------------------------------- batches


class CalibrationBatches:
    """Fixed-size float32 batches of calibration crops, from a folder of ``.npy`` crops or person images.

    ``source`` may be a calib dir (uses its ``frames/``), a folder of ``.npy`` crops ((3, H, W) or (N, 3, H, W)),
    a folder of person images (each whole image is cropped with the top-down preprocessing), or an array.
    Every batch has exactly ``batch_size`` rows (the last one wraps around), as TensorRT's calibrator needs.
    """

    def __init__(self, source: Path | str | np.ndarray, batch_size: int = 8, limit: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size
        data = source if isinstance(source, np.ndarray) else self._load(Path(source))
        data = np.asarray(data)
        if data.ndim != 4 or data.shape[1] != 3:
            raise DataError(f"calibration crops must be (N, 3, H, W), got {data.shape}")
        if limit is not None:
            data = data[:limit]
        if len(data) == 0:
            raise DataError("no calibration crops; run `python run_live.py calibrate --source CLIPS_OR_IMAGES` or pass --calib-dir DIR")
        self.data = data  # kept in its stored dtype (float16 on disk) to halve memory

    @staticmethod
    def _load(path: Path) -> np.ndarray:
        if (path / "frames").is_dir():
            path = path / "frames"
        if not path.is_dir():
            raise DataError(f"calibration folder {path} does not exist; run `python run_live.py calibrate --source CLIPS_OR_IMAGES` first")
        npys = sorted(path.glob("*.npy"))
        if npys:
            arrays = [np.load(p, allow_pickle=False) for p in npys]
            return np.concatenate([a[None] if a.ndim == 3 else a for a in arrays])
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not images:
            raise DataError(
                f"no calibration crops (.npy) or person images in {path}; run `python run_live.py calibrate --source CLIPS_OR_IMAGES`"
            )
        import cv2

        from realtime.pose.topdown import preprocess

        crops = []
        for p in images:
            image = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("cannot read image %s; skipped", p)
                continue
            batch, _ = preprocess(image, whole_frame_box(image)[None])
            crops.append(np.asarray(batch[0], np.float16))
        if not crops:
            raise DataError(f"none of the images in {path} could be read")
        return np.stack(crops)

    @property
    def n_samples(self) -> int:
        return len(self.data)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return math.ceil(self.n_samples / self.batch_size)

    def batch(self, i: int) -> np.ndarray:
        idx = np.arange(i * self.batch_size, (i + 1) * self.batch_size) % self.n_samples
        return np.ascontiguousarray(self.data[idx], dtype=np.float32)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.batch(i)

    def fingerprint(self) -> str:
        """16-hex hash of the crops: part of every INT8 engine's cache key."""
        h = hashlib.sha256(str(self.data.shape).encode())
        h.update(np.ascontiguousarray(self.data, dtype=np.float16).tobytes())
        return h.hexdigest()[:16]

    def torch2trt_dataset(self, device: str = "cuda") -> _Torch2trtDataset:
        """What ``torch2trt(..., int8_calib_dataset=...)`` takes: item i is ``[tensor (1, 3, H, W)]`` on ``device``."""
        return _Torch2trtDataset(self, device)

    def ort_reader(self, input_name: str) -> object:
        """An ``onnxruntime.quantization.CalibrationDataReader`` yielding ``{input_name: batch}``."""
        from onnxruntime.quantization import CalibrationDataReader

        batches = self

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = iter(batches)

            def get_next(self) -> dict | None:
                batch = next(self._it, None)
                return None if batch is None else {input_name: batch}

            def rewind(self) -> None:
                self._it = iter(batches)

        return _Reader()


class _Torch2trtDataset:
    """Sequence of single-crop input lists; torch2trt's calibrator reads ``dataset[i]`` as the module's inputs and
    hands TensorRT their raw device pointers, so every item is a view into one tensor that stays on the device
    (a fresh tensor per item could be freed and reused before TensorRT reads it)."""

    def __init__(self, batches: CalibrationBatches, device: str) -> None:
        self.batches = batches
        self.device = device
        self._on_device = None

    def __len__(self) -> int:
        return self.batches.n_samples

    def __getitem__(self, i: int) -> list:
        import torch

        if not 0 <= i < len(self):
            raise IndexError(i)
        if self._on_device is None:
            host = torch.from_numpy(np.ascontiguousarray(self.batches.data, dtype=np.float32))
            self._on_device = host.to(self.device)
        return [self._on_device[i : i + 1]]


# --------------------------------------------------------------------------------------------- TensorRT


def trt_calibration_cache_path(calib_dir: Path, variant: str, weights_hash: str, calib_hash: str, trt_version: str) -> Path:
    """``calib/vitpose-b_<weights>_<data>_trt10.x.cache``: valid only for that network, data and TensorRT."""
    return Path(calib_dir) / f"vitpose-{variant}_{weights_hash}_{calib_hash}_trt{trt_version}.cache"


def make_entropy_calibrator(batches: CalibrationBatches, cache_path: Path, device: str = "cuda"):
    """A ``tensorrt.IInt8EntropyCalibrator2`` feeding ``batches`` from one preallocated CUDA buffer.

    The cache (``cache_path``) is reused when present, so calibration runs once per network + data + TensorRT.
    Needs TensorRT < 11 (implicit INT8 calibration was removed in TensorRT 11; use the QDQ ONNX path there).
    """
    import tensorrt as trt
    import torch

    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise RuntimeError(f"TensorRT {trt.__version__} has no implicit INT8 calibration; build from a QDQ ONNX")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind11 base must be initialised explicitly
            self.batches = batches
            self.cache_path = Path(cache_path)
            self.index = 0
            # One device buffer for every batch: TensorRT reads it before asking for the next one.
            self.device_buffer = torch.empty((batches.batch_size, *batches.input_shape), dtype=torch.float32,
                                             device=device)

        def get_batch_size(self) -> int:
            return self.batches.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(self.batches):
                return None
            host = torch.from_numpy(self.batches.batch(self.index))
            self.device_buffer.copy_(host)
            if self.device_buffer.is_cuda:
                torch.cuda.synchronize(self.device_buffer.device)
            self.index += 1
            return [int(self.device_buffer.data_ptr())] * len(names)

        def read_calibration_cache(self) -> bytes | None:
            if self.cache_path.is_file():
                log.info("reusing INT8 calibration cache %s", self.cache_path)
                return self.cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            self.cache_path.write_bytes(bytes(cache))
            log.info("wrote INT8 calibration cache %s", self.cache_path)

    return EntropyCalibrator()


# ------------------------------------------------------------------------------------------ ONNX Runtime


# Kept in float by default (regexes on the exported ViTPose node names). On BlazePose-distilled ViTPose-S weights
# (bench/int8_accuracy.py --recipes all) this halved the INT8 heatmap error (rel. L2 0.073 -> 0.039) at no CPU
# speed cost: the activation x activation attention matmuls (Q.K^T, softmax.V) and the heatmap head's final conv.
FLOAT_NODES: tuple[str, ...] = (r"attention/attention/MatMul", r"head/conv")
FLOAT_NODES_TAG = "float-attn-head"  # in the INT8 cache key: a new recipe must not reuse old files


def quantize_onnx_int8(
    fp32_onnx: Path,
    out_path: Path,
    batches: CalibrationBatches,
    per_channel: bool = True,
    symmetric: bool = False,
    op_types: Sequence[str] | None = ("MatMul", "Conv", "ConvTranspose", "Gemm"),
    method: str = "minmax",
    exclude: Sequence[str] = FLOAT_NODES,
) -> Path:
    """Static INT8 quantisation (QDQ format, per-channel weights) of ``fp32_onnx`` with ``batches``.

    ``symmetric=True`` makes the graph TensorRT's explicit quantisation takes: int8 activations with zero point
    0 and float biases. The default (u8 activations, s8 weights, int32 biases) is the fast choice on x86 CPUs. Only the compute-heavy ops are
    quantised by default: LayerNorm/Softmax/GELU stay float, which keeps the error small for a ViT. ``exclude``:
    regular expressions; nodes whose names match one stay float too (default ``FLOAT_NODES``: the attention
    matmuls and the heatmap head; ``()`` quantises every ``op_types`` node). ``method``: ORT's calibrators;
    note that ORT's ``entropy`` with ``quantize_static``'s fixed 128 bins gives the same ranges as ``minmax``.
    """
    import re

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ValueError(f"method must be one of {tuple(methods)}")
    fp32_onnx, out_path = Path(fp32_onnx), Path(out_path)
    model = onnx.load(str(fp32_onnx), load_external_data=False)
    input_name = model.graph.input[0].name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    prepared = out_path.with_name(out_path.stem + ".prep.onnx")
    try:
        # Shape inference + graph optimisation first, as ORT recommends for static quantisation.
        quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        src = prepared
    except Exception as exc:  # pre-processing is an optimisation; quantising the raw graph still works
        log.warning("quant_pre_process failed (%s); quantising the graph as exported", exc)
        src = fp32_onnx
    # Resolved on the graph that is quantised: pre-processing may rename or fuse nodes.
    skip = [n.name for n in onnx.load(str(src), load_external_data=False).graph.node
            if any(re.search(pattern, n.name) for pattern in exclude)] if exclude else []
    if exclude and not skip and tuple(exclude) != FLOAT_NODES:  # the defaults only fit ViTPose exports
        log.warning("no node matches exclude=%s; quantising every %s node", list(exclude), "/".join(op_types or ()))
    try:
        quantize_static(
            str(src), str(out_path), batches.ort_reader(input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(op_types) if op_types else None,
            nodes_to_exclude=skip or None,
            calibrate_method=methods[method],
            # TensorRT takes int8 Q/DQ with zero point 0 and float biases; the CPU path keeps int32 biases.
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": not symmetric},
            use_external_data_format=fp32_onnx.with_name(fp32_onnx.name + ".data").is_file(),  # ViTPose-H
        )
    finally:
        prepared.unlink(missing_ok=True)
    return out_path


def ensure_int8_onnx(
    fp32_onnx: Path,
    variant: str,
    calib_dir: Path | None = None,
    engines_root: Path | None = None,
    rebuild: bool = False,
    symmetric: bool = False,
    batch_size: int = 8,
) -> Path:
    """The cached INT8 QDQ ``.onnx`` for ``fp32_onnx`` + the calibration crops, building it when missing/stale.

    Keyed on the FP32 graph file's hash (weights and exporter both change it) and the calibration data hash.
    """
    import onnxruntime

    from realtime.backends.engine_cache import EngineCache, EngineKey, onnx_fingerprint

    batches = CalibrationBatches(calib_dir or default_calib_dir(), batch_size=batch_size)
    key = EngineKey(
        variant=variant, weights_hash=onnx_fingerprint(Path(fp32_onnx)), precision="int8", max_batch=batch_size,
        compute_capability="cpu", runtime_version=onnxruntime.__version__,
        calib_hash=f"{batches.fingerprint()}{'-sym' if symmetric else ''}-{FLOAT_NODES_TAG}", target="onnxruntime",
    )
    path, _ = EngineCache(engines_root).get_or_build(
        key, lambda tmp: quantize_onnx_int8(fp32_onnx, tmp, batches, symmetric=symmetric), rebuild=rebuild,
    )
    return path
