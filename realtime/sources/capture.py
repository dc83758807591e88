"""Video sources read by a background thread into a bounded ring buffer.

Sources: a webcam index such as ``"0"`` (OpenCV), a file path or an ``rtsp://``, ``rtsps://``, ``http://``,
``https://`` URL (PyAV, which gives socket timeouts, RTSP transport options and the rotation of phone videos).

Live sources (webcams, streams, files with ``realtime=True``) feed a ``DROP_OLDEST`` buffer so the consumer always
gets the freshest frame; files feed a ``BLOCK`` buffer so no frame is lost. A stream that stalls or goes away is
reopened with capped exponential backoff until :meth:`Capture.stop`. Credentials in URLs never reach logs, errors,
events or ``source_id`` (see :func:`redact`).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
import traceback
import types
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime.errors import SourceError
from realtime.sources.decode import frame_to_bgr, stream_fps
from realtime.sources.rate import AnalysisRate, delivered_fps
from realtime.sources.ring_buffer import DropPolicy, RingBuffer
from realtime.sources.urls import (  # noqa: F401 - redact, parse_source and SourceSpec are part of this module's API
    NETWORK_SCHEMES,
    SourceSpec,
    _one_line,
    parse_source,
    redact,
)
from realtime.types import Frame

logger = logging.getLogger(__name__)

DEFAULT_FPS = 30.0
STATES: tuple[str, ...] = ("idle", "running", "reconnecting", "ended", "failed")
_MAX_BAD_PACKETS = 50  # consecutive undecodable packets before a file counts as broken


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """A snapshot of the capture thread's counters."""

    frames_read: int  # frames taken from the source (including ones dropped or skipped later)
    frames_dropped: int  # frames evicted by the ring buffer because the consumer was slower
    buffer_fill: int
    buffer_capacity: int
    reconnects: int  # successful reconnections of a live source
    fps_in: float  # measured rate of frames handed on, over the last ~second
    frames_skipped: int = 0  # frames left out by the analysis rate (``analysis_fps``), never converted


# --------------------------------------------------------------------------------------------------------------
# Interrupting a blocked PyAV read.
#
# PyAV's only hook into FFmpeg's interrupt callback is av.open(timeout=...): before every read it stores
# time.monotonic() and the callback aborts the I/O once the timeout has passed. The callback asks the ``time``
# module bound in av.container.core for the time, so replacing that binding with a clock that jumps ahead *for one
# thread only* makes that thread's next callback (FFmpeg polls it every ~100 ms) abort the read or open at once.
# That is what lets stop() return promptly while a stalled stream sits in a 5 s read timeout. All other threads
# see the real clock. If a PyAV version does not have this binding, stop() falls back to waiting for the timeout.
# --------------------------------------------------------------------------------------------------------------
class _AvInterruptClock:
    def __init__(self, real: types.ModuleType) -> None:
        self._real = real
        self._aborting: dict[int, float] = {}  # thread id -> offset added to the clock

    def monotonic(self) -> float:
        now = self._real.monotonic()
        tid = threading.get_ident()
        offset = self._aborting.get(tid)
        if offset is None:
            return now
        # Grow on every call so "now" is always far past whatever start time PyAV stored before the read.
        offset += 1e7
        self._aborting[tid] = offset
        return now + offset

    def abort(self, thread_id: int) -> None:
        self._aborting.setdefault(thread_id, 0.0)

    def clear(self, thread_id: int) -> None:
        self._aborting.pop(thread_id, None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _install_av_interrupt() -> _AvInterruptClock | None:
    try:
        core = importlib.import_module("av.container.core")
    except ImportError:
        return None
    current = getattr(core, "time", None)
    if isinstance(current, _AvInterruptClock):
        return current
    if current is not time:
        logger.debug("PyAV has no interruptible clock binding; stop() waits for read timeouts")
        return None
    clock = _AvInterruptClock(time)
    core.time = clock
    return clock


_AV_INTERRUPT = _install_av_interrupt()


class _ReadError(Exception):
    """A source failed after it was opened (message already redacted, one line)."""


# What a reader hands the capture loop: a call that makes the BGR image (conversion is the costly part of a read,
# so a frame the analysis rate skips is never converted), the media time (files) and the capture time.
_Read = tuple[Callable[[], np.ndarray], float | None, float]


def _ready(image: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: image


@dataclass(frozen=True, slots=True)
class _Unconverted:
    """A live frame waiting in the ring buffer as decoded (YUV): :meth:`Capture.get` converts it, so the frames the
    ring drops for a consumer that is behind are never converted."""

    convert: Callable[[], np.ndarray]
    index: int
    t: float
    media_t: float | None


# --------------------------------------------------------------------------------------------------------------
# Readers: one per open connection. ``open()`` validates by decoding the first frame (kept for the first read),
# ``read()`` returns a ``_Read`` (a call that makes the upright BGR image, media time or None, monotonic decode time)
# or None at the end, and raises _ReadError when the source breaks.
# --------------------------------------------------------------------------------------------------------------
def _av_reason(exc: BaseException) -> str:
    """FFmpeg's reason without the file name (which may hold credentials)."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return _one_line(reason)


class _AvReader:
    def __init__(self, spec: SourceSpec, *, rtsp_transport: str, open_timeout_s: float, read_timeout_s: float) -> None:
        self.spec = spec
        self.network = spec.kind == "stream"
        self.rtsp_transport = rtsp_transport
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.container: Any = None
        self.fps = DEFAULT_FPS
        self.size = (0, 0)
        self.expected_frames = 0  # from the container header (files); 0 when unknown
        self.has_duration = False
        self.packets = 0
        self.bad_packets = 0
        self._frames: Iterator[Any] | None = None
        self._pending: _Read | None = None

    def _options(self) -> dict[str, str]:
        if not self.network:
            return {}
        # FFmpeg's own socket timeout (us) is only a backstop: PyAV's timeout=(open, read) sets the real limits
        # (an RTSP socket timeout would otherwise cut the open short at the read timeout).
        us = str(int(max(self.open_timeout_s, self.read_timeout_s) * 1e6) + 1_000_000)
        scheme = str(self.spec.target).split(":", 1)[0].lower()
        if scheme in ("rtsp", "rtsps"):
            # Probe 0.3 s instead of FFmpeg's ~0.8 s: reconnects come back sooner. The SDP usually carries the
            # codec setup, and open() decodes a first frame anyway, so a short probe cannot yield a bad stream.
            return {"rtsp_transport": self.rtsp_transport, "timeout": us, "analyzeduration": "300000"}
        return {"rw_timeout": us}

    def open(self) -> None:
        import av  # deferred: webcam-only use needs no PyAV

        target = str(self.spec.target)
        sid = self.spec.source_id
        t0 = time.monotonic()
        try:
            if self.network:
                self.container = av.open(target, options=self._options(),
                                         timeout=(self.open_timeout_s, self.read_timeout_s))
            else:
                self.container = av.open(target)
        except (av.error.FFmpegError, OSError) as e:
            self._raise_open_error(e, time.monotonic() - t0)
        try:
            self._setup()
            first = self._next()
        except SourceError:
            self.close()
            raise
        except _ReadError as e:
            self.close()
            if self.network:
                raise SourceError(f"{sid} sent no decodable frame: {e}; check that the stream is running") from None
            raise SourceError(f"cannot decode {sid}: {e}; re-export it as mp4 (H.264)") from None
        if first is None:
            self.close()
            what = "stream sent" if self.network else "file has"
            raise SourceError(f"{sid}: the {what} no decodable video frames; check the source")
        image = first[0]()
        self._pending = (_ready(image), first[1], first[2])
        h, w = image.shape[:2]
        self.size = (w, h)

    def _raise_open_error(self, e: BaseException, elapsed: float) -> None:
        import av

        sid = self.spec.source_id
        if isinstance(e, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)):
            raise SourceError(f"{sid} refused the login: check the user name and password in the URL") from None
        if isinstance(e, av.error.HTTPNotFoundError):
            raise SourceError(f"{sid} does not exist on the server (404): check the stream path") from None
        if isinstance(e, ConnectionRefusedError):
            raise SourceError(f"cannot connect to {sid}: connection refused; check host, port and that the server "
                              f"is running") from None
        # An RTSP open cut short by the timeout surfaces as "invalid data": tell it apart by the clock.
        if isinstance(e, (av.error.ExitError, TimeoutError)) or (self.network and elapsed >= self.open_timeout_s * 0.95):
            raise SourceError(f"cannot open {sid} within {self.open_timeout_s:g} s: check the URL, the network and "
                              f"that the camera or server is running") from None
        if self.network:
            raise SourceError(f"cannot open {sid}: {_av_reason(e)}; check the URL and that the stream is running")\
                from None
        raise SourceError(f"cannot read {sid}: not a video file, or the container is corrupt or cut off "
                          f"({_av_reason(e)}); re-export it as mp4 (H.264)") from None

    def _setup(self) -> None:
        sid = self.spec.source_id
        if not self.container.streams.video:
            raise SourceError(f"{sid} has no video stream (or its index is missing, as in a cut-off recording): "
                              f"pass a complete video file")
        stream = self.container.streams.video[0]
        # Not frame threading: it adds a frame of latency per thread, and at a damaged packet it loses the frames
        # still in flight (a truncated test file lost 2 of 35 good frames), so "every frame up to the break" fails.
        stream.thread_type = "SLICE"
        fps = stream_fps(stream, 0.0)
        self.fps = fps if 1.0 <= fps <= 240.0 else DEFAULT_FPS
        self.expected_frames = int(stream.frames or 0)
        self.has_duration = bool(self.container.duration) or bool(stream.duration)
        self._frames = self._decode(stream)

    def _decode(self, stream: Any) -> Iterator[Any]:
        import av

        bad_run = 0
        for packet in self.container.demux(stream):
            if packet.size:
                self.packets += 1
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                # A damaged packet (e.g. the cut-off last one of a truncated file): skip it, the decoder recovers
                # at the next keyframe. Give up after a long run of them.
                self.bad_packets += 1
                bad_run += 1
                if bad_run > _MAX_BAD_PACKETS:
                    raise _ReadError(f"{bad_run} undecodable packets in a row") from None
                continue
            bad_run = 0
            yield from frames

    def _next(self) -> _Read | None:
        import av

        assert self._frames is not None
        try:
            frame = next(self._frames, None)
        except av.error.ExitError:
            raise _ReadError(f"no data for {self.read_timeout_s:g} s (stalled)") from None
        except (av.error.FFmpegError, OSError) as e:
            raise _ReadError(_av_reason(e)) from None
        if frame is None:
            return None
        media_t = None if self.network or frame.time is None else float(frame.time)
        return (lambda: frame_to_bgr(frame)), media_t, time.monotonic()

    def read(self) -> _Read | None:
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        return self._next()

    def close(self) -> None:
        frames, self._frames = self._frames, None
        if frames is not None:
            try:
                frames.close()  # type: ignore[attr-defined]
            except Exception as e:  # noqa: BLE001 - closing a broken stream must not mask the real error
                logger.debug("closing decoder of %s failed: %s", self.spec.source_id, _one_line(e))
        container, self.container = self.container, None
        if container is not None:
            try:
                container.close()
            except Exception as e:  # noqa: BLE001
                logger.debug("closing %s failed: %s", self.spec.source_id, _one_line(e))


class _CvReader:
    """Webcams through OpenCV (V4L2/DirectShow/AVFoundation): PyAV cannot enumerate cameras portably."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.cap: Any = None
        self.fps = DEFAULT_FPS
        self.size = (0, 0)
        self.expected_frames = 0
        self.has_duration = False
        self._pending: _Read | None = None

    def open(self) -> None:
        sid = self.spec.source_id
        level = cv2.utils.logging.getLogLevel()
        # OpenCV prints "camera index out of range" noise for a missing camera; our SourceError says it better.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            cap = cv2.VideoCapture(self.spec.target)
            if not cap.isOpened():
                cap.release()
                raise SourceError(f"{sid} not found or busy: check the camera index (0 is the first camera) and that "
                                  f"no other program is using it")
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver queue short: freshest frame, low latency
            ok, image = cap.read()
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not ok or image is None:
            cap.release()
            raise SourceError(f"{sid} opened but delivered no frame: check the camera and its permissions")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 1.0 <= fps <= 240.0 else DEFAULT_FPS
        self.cap = cap
        self._pending = (_ready(image), None, time.monotonic())
        self.size = (image.shape[1], image.shape[0])

    def read(self) -> _Read | None:
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        if not self.cap.grab():  # grab now, retrieve (decode to BGR) only if the frame is kept
            raise _ReadError("camera stopped delivering frames")
        return self._retrieve, None, time.monotonic()

    def _retrieve(self) -> np.ndarray:
        ok, image = self.cap.retrieve()
        if not ok or image is None:
            raise _ReadError("camera stopped delivering frames")
        return image

    def close(self) -> None:
        cap, self.cap = self.cap, None
        if cap is not None:
            cap.release()


# --------------------------------------------------------------------------------------------------------------
class Capture:
    """Read a video source on a background thread; the consumer calls :meth:`get`.

    ``open()`` validates synchronously (raises SourceError), ``start()`` launches the thread, ``stop()`` joins it.
    Frame ``index`` counts every frame read from the source, so gaps in the indices a consumer sees are drops.
    """

    def __init__(
        self,
        spec: str | Path,
        *,
        realtime: bool = False,
        capacity: int = 4,
        rtsp_transport: str = "tcp",
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 5.0,
        reconnect: bool = True,
        max_backoff_s: float = 8.0,
        analysis_fps: float | None = None,
        on_event: Callable[[dict], None] | None = None,
    ) -> None:
        if rtsp_transport not in ("tcp", "udp"):
            raise SourceError(f"unknown RTSP transport '{rtsp_transport}': use tcp or udp")
        try:
            self._rate = AnalysisRate(analysis_fps) if analysis_fps is not None else None
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        if capacity < 1:
            raise SourceError(f"capture buffer capacity must be at least 1, got {capacity}")
        self.spec = parse_source(spec)
        self.source_id = self.spec.source_id
        self.realtime = bool(realtime)
        self.rtsp_transport = rtsp_transport
        self.open_timeout_s = float(open_timeout_s)
        self.read_timeout_s = float(read_timeout_s)
        self.reconnect = bool(reconnect)
        self.max_backoff_s = max(0.5, float(max_backoff_s))
        self.on_event = on_event
        self.capacity = int(capacity)
        self.fps = DEFAULT_FPS
        self.size: tuple[int, int] = (0, 0)
        # Until open(): a guess from the spec; http(s) may turn out to be a plain file on a web server.
        self.is_live = self.spec.kind in ("webcam", "stream") or self.realtime
        self._reconnectable = self.spec.kind in ("webcam", "stream")
        self._reader: _AvReader | _CvReader | None = None
        self._ring: RingBuffer[Frame | _Unconverted] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state = "idle"
        self._error: str | None = None
        self._next_index = 0
        self._skipped = 0
        self._reconnects = 0
        self._read_times: deque[float] = deque(maxlen=31)
        self._lock = threading.Lock()

    # -- public API --------------------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """One of ``STATES``: idle (before start), running, reconnecting, ended (finished or stopped), failed."""
        return self._state

    @property
    def error(self) -> str | None:
        """One-line reason when a file broke mid-way or a live source was lost for good; else None."""
        return self._error

    @property
    def analysis_fps(self) -> float | None:
        """The cap on frames a second handed on (None: every frame)."""
        return self._rate.fps if self._rate is not None else None

    @property
    def delivered_fps(self) -> float:
        """Frames a second this source hands on when nothing is dropped: its rate, or the analysis cap if lower
        (the rate to write its overlay video at)."""
        return delivered_fps(self.fps, self.analysis_fps)

    @property
    def ended(self) -> bool:
        """True once the source is finished (or stopped) and every buffered frame has been taken."""
        ring = self._ring
        if ring is None:
            return self._stop.is_set()
        return ring.closed and len(ring) == 0

    def open(self) -> Capture:
        """Open and validate the source now (decodes the first frame); raises SourceError with a one-line reason."""
        if self._ring is not None:  # already opened (the reader may since have been closed by the thread)
            return self
        if self.spec.kind == "file":
            self._check_file(Path(str(self.spec.target)).expanduser())
        reader = self._make_reader()
        reader.open()
        if self.spec.kind == "stream" and reader.has_duration and not str(self.spec.target).lower().startswith("rtsp"):
            # An http(s) URL of a finished video (it has a duration) is a remote file, not a live feed.
            self._reconnectable = False
            self.is_live = self.realtime
        self._reader = reader
        self.fps = reader.fps
        self.size = reader.size
        policy = DropPolicy.DROP_OLDEST if self.is_live else DropPolicy.BLOCK
        self._ring = RingBuffer(self.capacity, policy)
        logger.info("opened %s: %dx%d @ %.2f fps (%s, %s)", self.source_id, self.size[0], self.size[1], self.fps,
                    self.spec.kind, policy.name.lower())
        return self

    def start(self) -> Capture:
        """Start the capture thread (``open()`` first)."""
        if self._thread is not None:
            return self
        if self._reader is None or self._ring is None:
            raise RuntimeError("Capture.open() must be called before start()")
        self._state = "running"
        self._thread = threading.Thread(target=self._run, name=f"capture[{self.source_id}]", daemon=True)
        self._thread.start()
        return self

    def start_reconnecting(self, reason: str) -> Capture:
        """Start a live source that could not be opened: its thread keeps trying, as after a loss (several cameras:
        one that is down at start must not stop the others). Files are not retried: ``SourceError``."""
        if not self._reconnectable:
            raise SourceError(reason)
        if self._thread is not None:
            return self
        self._ring = RingBuffer(self.capacity, DropPolicy.DROP_OLDEST)
        self.is_live = True
        self._state = "reconnecting"
        self._thread = threading.Thread(target=self._run, args=(reason,), name=f"capture[{self.source_id}]",
                                        daemon=True)
        self._thread.start()
        return self

    def get(self, timeout: float = 0.1) -> Frame | None:
        """The next frame, or None if none arrived within ``timeout`` s (check ``ended`` to tell the end)."""
        if self._ring is None:
            return None
        item = self._ring.get(timeout)
        if isinstance(item, _Unconverted):
            return Frame(image=item.convert(), index=item.index, t=item.t, source_id=self.source_id,
                         media_t=item.media_t)
        return item

    def stats(self) -> CaptureStats:
        ring = self._ring
        now = time.monotonic()
        times = [t for t in self._read_times if now - t <= 2.0]  # a stalled source reads 0 fps, not its old rate
        fps_in = 0.0
        if len(times) >= 2 and times[-1] > times[0]:
            fps_in = (len(times) - 1) / (times[-1] - times[0])
        return CaptureStats(
            frames_read=self._next_index,
            frames_dropped=ring.dropped if ring is not None else 0,
            buffer_fill=len(ring) if ring is not None else 0,
            buffer_capacity=self.capacity,
            reconnects=self._reconnects,
            fps_in=fps_in,
            frames_skipped=self._skipped,
        )

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading and join the thread within ``timeout`` s; frames still buffered stay readable. Idempotent."""
        self._stop.set()
        if self._ring is not None:
            self._ring.close()  # wakes a producer blocked on a full BLOCK buffer
        thread = self._thread
        ident = thread.ident if thread is not None and thread.is_alive() else None
        if ident is not None and _AV_INTERRUPT is not None:
            _AV_INTERRUPT.abort(ident)  # abort a read/open blocked inside FFmpeg
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("capture thread for %s did not stop within %.1f s; it exits after its read timeout",
                               self.source_id, timeout)
            elif ident is not None and _AV_INTERRUPT is not None:
                _AV_INTERRUPT.clear(ident)  # the thread may have ended before abort(): ids get reused
        if thread is None:
            self._close_reader()  # opened but never started
        if self._state in ("idle", "running", "reconnecting"):
            self._state = "ended"

    def __enter__(self) -> Capture:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Frame]:
        """Frames until the source ends (starts the thread if needed)."""
        if self._thread is None:
            self.open().start()
        while not self.ended:
            frame = self.get(0.1)
            if frame is not None:
                yield frame

    # -- internals ---------------------------------------------------------------------------------------------
    def _check_file(self, path: Path) -> None:
        sid = self.source_id
        if not path.exists():
            raise SourceError(f"video file not found: {sid}: check the path (or pass a webcam index such as 0)")
        if path.is_dir():
            raise SourceError(f"{sid} is a directory, not a video file: pass the path of a video file")
        try:
            size = path.stat().st_size
            with path.open("rb"):
                pass
        except OSError as e:
            raise SourceError(f"cannot read video file {sid}: {_one_line(e.strerror or e)}; check its permissions")\
                from None
        if size == 0:
            raise SourceError(f"video file is empty (0 bytes): {sid}: copy or export the video again")

    def _make_reader(self) -> _AvReader | _CvReader:
        if self.spec.kind == "webcam":
            return _CvReader(self.spec)
        return _AvReader(self.spec, rtsp_transport=self.rtsp_transport,
                         open_timeout_s=self.open_timeout_s, read_timeout_s=self.read_timeout_s)

    def _emit(self, event: dict) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # noqa: BLE001 - a broken listener must not kill capture
            logger.error("on_event listener failed for %s:\n%s", self.source_id, redact(traceback.format_exc()))

    def _close_reader(self) -> None:
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def _run(self, not_opened: str | None = None) -> None:
        try:
            if not_opened is not None and not self._recover(not_opened, first=True):
                return
            self._loop()
        except Exception:  # noqa: BLE001 - the thread must never die silently or leave a consumer hanging
            # Like logging.exception, but the traceback text is redacted (FFmpeg errors carry the full URL).
            logger.error("capture thread for %s crashed:\n%s", self.source_id, redact(traceback.format_exc()))
            self._error = self._error or f"capture of {self.source_id} crashed; see the log"
            self._state = "failed"
        finally:
            self._close_reader()
            if self._ring is not None:
                self._ring.close()
            if _AV_INTERRUPT is not None:
                _AV_INTERRUPT.clear(threading.get_ident())
            if self._state in ("running", "reconnecting"):
                self._state = "ended"

    def _loop(self) -> None:
        ring = self._ring
        assert ring is not None
        pace_t0: float | None = None  # realtime files: wall time of media time 0
        media_t0 = 0.0
        while not self._stop.is_set():
            reader = self._reader
            if reader is None:
                return
            failure: str | None = None
            try:
                item = reader.read()
            except _ReadError as e:
                item, failure = None, str(e)
            if self._stop.is_set():
                return
            # A live PyAV frame is converted by the consumer (get), only if the ring has not dropped it by then.
            # A file's frames are all analysed, so its capture thread converts them, beside the analysis.
            # OpenCV must retrieve a grabbed frame before the next grab: here, at once.
            deferred = self.is_live and isinstance(reader, _AvReader)
            image, kept = None, False
            if item is not None:
                convert, media_t, captured_t = item
                index = self._next_index
                file_t = media_t if media_t is not None else index / self.fps
                # Judged by the frame's own time, so a file keeps the same frames paced or not.
                kept = self._rate is None or self._rate.keep(file_t if self.spec.kind == "file" else captured_t)
                if kept and not deferred:
                    try:
                        image = convert()
                    except _ReadError as e:
                        item, failure = None, str(e)
            if item is None:
                if not self._reconnectable:
                    self._finish_file(reader, failure)
                    return
                if not self._recover(failure or "the stream ended"):
                    return
                continue
            self._next_index = index + 1
            if not kept:  # skipped by the analysis rate: counted, never converted, not paced
                self._skipped += 1
                continue
            if self.realtime and self.spec.kind == "file":
                # Pace the file like a camera: frame i is "captured" at pace_t0 + its media time.
                if pace_t0 is None:
                    pace_t0, media_t0 = time.monotonic(), file_t
                delay = pace_t0 + (file_t - media_t0) - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                captured_t = time.monotonic()  # a paced file frame is "captured" when it is due
            self._read_times.append(captured_t)
            if image is None:
                entry: Frame | _Unconverted = _Unconverted(convert, index, captured_t, media_t)
            else:
                entry = Frame(image=image, index=index, t=captured_t, source_id=self.source_id, media_t=media_t)
            if not ring.put(entry):
                return  # closed by stop()

    def _finish_file(self, reader: _AvReader | _CvReader, failure: str | None) -> None:
        n = self._next_index
        if failure is None and isinstance(reader, _AvReader):
            if reader.expected_frames and reader.packets < reader.expected_frames:
                failure = f"the file ends after {reader.packets} of {reader.expected_frames} frames (truncated)"
            elif reader.bad_packets:
                failure = f"{reader.bad_packets} damaged packet(s) skipped"
        if failure is not None:
            self._error = f"{self.source_id} is damaged: {failure}; kept the {n} frame(s) before the break"
            logger.warning("%s", self._error)
        else:
            logger.info("%s ended after %d frames", self.source_id, n)
        self._state = "ended"

    def _recover(self, reason: str, first: bool = False) -> bool:
        """Reconnect a live source with capped exponential backoff; False when stopped or reconnecting is off.
        ``first``: the source has never been opened (its size and frame rate come with the first connection)."""
        lost_t = time.monotonic()
        self._close_reader()
        reason = _one_line(reason)
        if not self.reconnect:
            self._error = f"lost {self.source_id}: {reason}"
            logger.error("%s (reconnect is off)", self._error)
            self._emit({"type": "source", "state": "lost", "t": lost_t, "source": self.source_id, "reason": reason})
            self._state = "failed"
            return False
        logger.warning("lost %s (%s); reconnecting", self.source_id, reason)
        self._emit({"type": "source", "state": "lost", "t": lost_t, "source": self.source_id, "reason": reason})
        # The state flips after the event is out, so whoever sees "reconnecting" also finds the "lost" event.
        self._state = "reconnecting"
        delay = 0.5
        attempts = 0
        while not self._stop.wait(delay):
            attempts += 1
            reader = self._make_reader()
            try:
                reader.open()
            except SourceError as e:
                reader.close()
                logger.info("reconnect %d to %s failed: %s", attempts, self.source_id, _one_line(e))
                delay = min(delay * 2.0, self.max_backoff_s)
                continue
            except Exception:  # noqa: BLE001 - keep trying; an odd FFmpeg error must not end a live feed
                reader.close()
                logger.error("reconnect %d to %s failed:\n%s", attempts, self.source_id,
                             redact(traceback.format_exc()))
                delay = min(delay * 2.0, self.max_backoff_s)
                continue
            if self._stop.is_set():
                reader.close()
                return False
            with self._lock:
                self._reader = reader
            if first:
                self.fps, self.size = reader.fps, reader.size
            self._reconnects += 1
            self._state = "running"
            back_t = time.monotonic()
            logger.warning("%s is back after %.1f s (%d attempt(s))", self.source_id, back_t - lost_t, attempts)
            self._emit({"type": "source", "state": "back", "t": back_t, "source": self.source_id,
                        "downtime_s": round(back_t - lost_t, 3), "attempts": attempts})
            return True
        return False
