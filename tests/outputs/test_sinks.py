"""File sinks: a full disk stops the sink, not the run (error kept, loss counted, logged once); the events log is
shared safely by several threads; --save honours .mp4/.m4v/.mov/.mkv and refuses other extensions."""

from __future__ import annotations

import errno
import json
import logging
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from realtime.errors import RealtimeError
from realtime.outputs.sinks import EventLogSink, VideoFileSink

DEV_FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux)")


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@needs_dev_full
def test_event_log_on_a_full_disk_keeps_the_run_going(caplog):
    sink = EventLogSink(DEV_FULL)
    with caplog.at_level(logging.ERROR):
        for i in range(5):
            sink.write({"type": "frame", "frame": i})  # must not raise
        sink.close({"reps": 0})
    assert sink.error is not None and "\n" not in sink.error and "No space left on device" in sink.error
    assert sink.records_written == 0 and sink.lost_records == 6  # five frames and the summary
    assert sink.status() == {"path": str(DEV_FULL), "records": 0, "lost_records": 6, "error": sink.error}
    assert len(_errors(caplog)) == 1  # reported once, not per record


class _FillsUp:
    """A text file that raises ENOSPC from the n-th write on (as a disk filling up mid-run)."""

    def __init__(self, inner, room: int) -> None:
        self.inner, self.room = inner, room

    def write(self, text: str) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= 1
        return self.inner.write(text)

    def close(self) -> None:
        self.inner.close()

    @property
    def closed(self) -> bool:
        return self.inner.closed


def test_event_log_keeps_what_was_written_before_the_disk_filled(tmp_path, caplog):
    path = tmp_path / "events.jsonl"
    sink = EventLogSink(path)
    sink._file = _FillsUp(sink._file, room=3)
    with caplog.at_level(logging.ERROR):
        for i in range(10):
            sink.write({"frame": i})
        sink.close({"reps": 1})
    assert [json.loads(line)["frame"] for line in path.read_text().splitlines()] == [0, 1, 2]
    assert (sink.records_written, sink.lost_records) == (3, 8)
    assert "stopped after 3 records" in sink.error and len(_errors(caplog)) == 1


def test_event_log_is_shared_safely_by_camera_threads(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = EventLogSink(path)
    payload = "x" * 2000  # long lines: interleaved writes would tear them

    def camera(cam: int) -> None:
        for i in range(300):
            sink.write({"camera": cam, "frame": i, "pad": payload})

    threads = [threading.Thread(target=camera, args=(c,)) for c in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 1800 and sink.records_written == 1800
    for cam in range(6):
        assert [r["frame"] for r in records if r["camera"] == cam] == list(range(300))


def _frames(n: int, w: int = 64, h: int = 48):
    for i in range(n):
        yield np.full((h, w, 3), (i * 9) % 256, np.uint8)


@needs_dev_full
def test_video_writer_on_a_full_disk_keeps_the_run_going(tmp_path, caplog):
    path = tmp_path / "full.mp4"
    path.symlink_to(DEV_FULL)
    sink = VideoFileSink(path, 30, (64, 48))
    with caplog.at_level(logging.ERROR):
        for image in _frames(40):
            sink.write(image)  # must not raise or block
        sink.close()
    assert sink.error is not None and "\n" not in sink.error and "No space left on device" in sink.error
    assert sink.lost_frames > 0 and sink.frames_written + sink.lost_frames <= 40
    assert sink.status()["error"] == sink.error
    assert len(_errors(caplog)) == 1


@pytest.mark.parametrize("suffix, container", [(".mp4", "mp4"), (".m4v", "mp4"), (".mov", "mov"),
                                               (".mkv", "matroska")])
def test_save_honours_the_extension(tmp_path, suffix, container):
    path = tmp_path / f"out{suffix}"
    sink = VideoFileSink(path, 30, (64, 48))
    for image in _frames(12):
        sink.write(image)
    sink.close()
    assert sink.error is None and sink.frames_written == 12
    with av.open(str(path)) as c:
        assert container in c.format.name.split(",")
        assert c.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in c.decode(video=0)) == 12


@pytest.mark.parametrize("name", ["x.avi", "x.webm", "x"])
def test_save_refuses_other_extensions_in_one_line(tmp_path, name):
    with pytest.raises(RealtimeError) as err:
        VideoFileSink(tmp_path / name, 30, (64, 48))
    text = str(err.value)
    assert "\n" not in text and ".mp4" in text and ".mkv" in text
    assert not (tmp_path / name).exists()  # refused before anything was created
