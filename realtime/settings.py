"""Typed, frozen settings for a run: the cameras and the options shared by all of them.

The command line (``realtime.cli``) and the camera list (``--cameras cameras.toml``) are turned into these records
once, validated, and passed down; nothing below the CLI sees ``argparse.Namespace``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from realtime.errors import RealtimeError
from realtime.pose.tracking import parse_pick
from realtime.sources.rate import ANALYSIS_FPS_RANGE
from realtime.types import EXERCISES

STRICTNESS = ("relaxed", "normal", "strict")
RTSP_TRANSPORTS = ("tcp", "udp")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Keys a [[camera]] table may set; the optional ones default to the command line's value.
CAMERA_KEYS = ("name", "source", "exercise", "pick", "strictness", "rtsp_transport", "realtime", "analysis_fps")


@dataclass(frozen=True, slots=True)
class CameraSettings:
    """One camera: its name (used in events, file names, the web view) and the settings that may differ per camera."""

    name: str
    source: str
    exercise: str | None = None  # fix the exercise (a squat-rack camera), else follow the classifier
    pick: str = "largest"
    strictness: str = "normal"
    rtsp_transport: str = "tcp"
    realtime: bool = False  # pace a file like a camera
    analysis_fps: float | None = None  # analyse at most this many frames a second (None: every frame)


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Everything a run needs besides its cameras' own settings."""

    cameras: tuple[CameraSettings, ...]
    pose_model: str = "auto"
    backend: str = "auto"
    weights: str | None = None
    precision: str = "auto"
    rebuild: bool = False
    smooth: bool = True
    classifier: str | None = None
    form_config: str | None = None
    headless: bool = False
    dashboard: bool = True
    save: str | None = None
    events: str | None = None
    report: str | None = None
    max_frames: int | None = None
    max_batch: int = 16
    max_wait_ms: float = 4.0
    triton_url: str | None = None
    triton_model: str | None = None
    workers: int = 1  # camera worker processes around the one pose engine (realtime.workers)
    in_worker: bool = False  # these cameras are one worker's share of a multi-camera run
    extra: dict = field(default_factory=dict)

    @property
    def multi(self) -> bool:
        return len(self.cameras) > 1 or self.in_worker


def split_named_source(spec: str) -> tuple[str | None, str]:
    """``name=URL`` -> (name, URL); a plain source (a URL or path, which may itself hold '=') -> (None, source)."""
    name, sep, rest = spec.partition("=")
    if sep and rest and _NAME.match(name) and "/" not in name and ":" not in name and not Path(spec).exists():
        return name, rest
    return None, spec


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RealtimeError(f"{where}: camera name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return name


def _check_camera(cam: CameraSettings, where: str) -> CameraSettings:
    _check_name(cam.name, where)
    if not isinstance(cam.source, str) or not cam.source.strip():
        raise RealtimeError(f"{where}: camera {cam.name!r} has no source")
    if cam.exercise is not None and cam.exercise not in EXERCISES:
        raise RealtimeError(f"{where}: camera {cam.name!r}: unknown exercise {cam.exercise!r}; "
                            f"choose one of {', '.join(EXERCISES)}")
    if cam.strictness not in STRICTNESS:
        raise RealtimeError(f"{where}: camera {cam.name!r}: strictness must be one of {', '.join(STRICTNESS)}")
    if cam.rtsp_transport not in RTSP_TRANSPORTS:
        raise RealtimeError(f"{where}: camera {cam.name!r}: rtsp_transport must be tcp or udp")
    if not isinstance(cam.realtime, bool):
        raise RealtimeError(f"{where}: camera {cam.name!r}: realtime must be true or false")
    fps, (low, high) = cam.analysis_fps, ANALYSIS_FPS_RANGE
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not low <= fps <= high):
        raise RealtimeError(f"{where}: camera {cam.name!r}: analysis_fps must be a number of frames per second "
                            f"from {low:g} to {high:g}, not {fps!r}")
    try:
        parse_pick(cam.pick)
    except RealtimeError:
        raise RealtimeError(f"{where}: camera {cam.name!r}: pick must be largest, center, left, right or a person "
                            f"index (0 = leftmost), not {cam.pick!r}") from None
    return cam


def cameras_from_sources(sources: list[str], defaults: CameraSettings) -> tuple[CameraSettings, ...]:
    """``--source`` given N times: names ``cam0``, ``cam1``, ... unless written ``name=URL``."""
    named = [split_named_source(spec) for spec in sources]
    taken = {name for name, _ in named if name}
    cams = []
    for i, (name, source) in enumerate(named):
        if name is None:  # cam<i>, unless a camera is already called that: the next free number
            k = i
            while f"cam{k}" in taken:
                k += 1
            name = f"cam{k}"
            taken.add(name)
        cams.append(_check_camera(dataclasses.replace(defaults, name=name, source=source), "--source"))
    return _unique(cams, "--source")


def cameras_from_toml(path: str | Path, defaults: CameraSettings) -> tuple[CameraSettings, ...]:
    """``[[camera]]`` tables with ``name``, ``source`` and optional per-camera settings; anything else is an error."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RealtimeError(f"camera list not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RealtimeError(f"cannot read camera list {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RealtimeError(f"{path} is not valid TOML: {exc}") from None
    unknown_top = sorted(set(data) - {"camera"})
    if unknown_top:
        raise RealtimeError(f"{path}: unknown key(s) {', '.join(unknown_top)}; the file lists [[camera]] tables")
    tables = data.get("camera")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise RealtimeError(f"{path}: no [[camera]] tables (each needs name and source)")
    cams = []
    for i, table in enumerate(tables):
        where = f"{path} camera #{i + 1}"
        unknown = sorted(set(table) - set(CAMERA_KEYS))
        if unknown:
            raise RealtimeError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(CAMERA_KEYS)}")
        if "source" not in table:
            raise RealtimeError(f"{where}: missing source")
        if "name" not in table:
            raise RealtimeError(f"{where}: missing name")
        source = table["source"]
        if isinstance(source, int) and not isinstance(source, bool):
            source = str(source)  # webcam index
        cams.append(_check_camera(dataclasses.replace(defaults, **{**table, "source": source}), where))
    return _unique(cams, str(path))


def _unique(cams: list[CameraSettings], where: str) -> tuple[CameraSettings, ...]:
    seen: set[str] = set()
    for cam in cams:
        if cam.name in seen:
            raise RealtimeError(f"{where}: duplicate camera name {cam.name!r}")
        seen.add(cam.name)
    return tuple(cams)


def settings_from_args(args: argparse.Namespace) -> RunSettings:
    """The typed, frozen settings of a run; the camera list from --cameras or the --source options."""
    if args.cameras and args.source:
        raise RealtimeError("give the cameras either with --cameras FILE or with --source, not both")
    parse_pick(args.pick)  # a bad --pick fails before any source, model or output is opened
    defaults = CameraSettings(name="cam0", source="0", exercise=args.exercise, pick=str(args.pick),
                              strictness=args.strictness, rtsp_transport=args.rtsp_transport, realtime=args.realtime,
                              analysis_fps=args.analysis_fps)
    if args.cameras:
        cameras = cameras_from_toml(args.cameras, defaults)
    else:
        cameras = cameras_from_sources(args.source or ["0"], defaults)
    return RunSettings(
        cameras=cameras, pose_model=args.pose_model, backend=args.backend, weights=args.weights,
        precision=args.precision, rebuild=args.rebuild, smooth=not args.no_smooth, classifier=args.classifier,
        form_config=args.form_config, headless=args.headless, dashboard=not args.no_dashboard, save=args.save,
        events=args.events, report=args.report, max_frames=args.max_frames, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, triton_url=args.triton_url, triton_model=args.triton_model,
        workers=args.workers,
    )
