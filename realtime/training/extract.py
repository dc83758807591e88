"""``extract``: pose keypoints of labelled videos into ``.npz`` clips the classifier can be trained on."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from realtime.classify.ticks import MODEL_RATE
from realtime.errors import DataError
from realtime.types import NUM_JOINTS

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def iter_video(path: Path):
    """Yield (BGR uint8 frame, fps) for every frame of a video, upright per its display matrix."""
    import av

    from realtime.sources.decode import iter_upright, stream_fps

    try:
        container = av.open(str(path))
    except Exception as exc:  # noqa: BLE001 - PyAV raises many error types for unreadable files
        raise DataError(f"cannot open video {path} ({type(exc).__name__}); is it a video file?") from None
    with container:
        if not container.streams.video:
            raise DataError(f"{path} has no video stream")
        stream = container.streams.video[0]
        fps = stream_fps(stream, MODEL_RATE)
        try:
            for img in iter_upright(container, stream):
                yield img, fps
        except av.error.FFmpegError as exc:
            log.warning("%s: decoding stopped early (%s)", path, exc)


def extract_folder(video_dir: Path, out_dir: Path, estimator, progress: Callable[[str], None] | None = None,
                   max_frames: int | None = None) -> list[dict]:
    """``video_dir/<class>/<video>`` -> ``out_dir/<class>/<video>.npz`` (``reconstruction`` T x 17 x 3, ``fps``)
    plus ``out_dir/manifest.csv``. Frames without a person are stored as zeros (score 0)."""
    videos = sorted(p for p in video_dir.glob("*/*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())
    if not videos:
        raise DataError(f"no videos in {video_dir}/<class>/ (expected one folder per class with "
                        f"{', '.join(VIDEO_EXTS)} files)")
    rows = []
    for video in videos:
        label = video.parent.name
        estimator.reset()
        kps, fps = [], MODEL_RATE
        for img, video_fps in iter_video(video):
            fps = video_fps
            pose = estimator.estimate(img)
            kp = pose.keypoints
            kps.append(np.zeros((NUM_JOINTS, 3), np.float32) if kp is None else np.asarray(kp, np.float32))
            if max_frames and len(kps) >= max_frames:
                break
        if not kps:
            log.warning("%s: no frames decoded, skipped", video)
            continue
        rec = np.stack(kps).astype(np.float32)
        target = out_dir / label / (video.stem + ".npz")
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(target, reconstruction=rec, fps=np.float32(fps))
        seen = float((rec[..., 2] > 0).any(1).mean())
        rows.append({"npz": target.relative_to(out_dir).as_posix(), "class": label, "video": str(video),
                     "frames": len(rec), "fps": round(fps, 3), "person_frames": round(seen, 3),
                     "group": video.stem.split("__")[0] if "__" in video.stem else video.stem,
                     "pose_engine": getattr(estimator, "name", "")})
        if progress:
            progress(video.name)
    with open(out_dir / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["npz"])
        w.writeheader()
        w.writerows(rows)
    return rows


