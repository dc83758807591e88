"""Shared-memory frame slots between the analyzer and the web process: whole frames only, downscaled to the longer
side's cap, readable from another process."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from realtime.web.frames import FrameSlots

SPAWN = multiprocessing.get_context("spawn")


def test_round_trip_without_resize():
    slots = FrameSlots(2, 64, SPAWN)
    assert slots.read(0) is None and slots.read(1) is None  # nothing written yet
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    seq = slots.write(1, image)
    got = slots.read(1)
    assert got is not None and got[0] == seq and seq % 2 == 0
    np.testing.assert_array_equal(got[1], image)
    assert slots.read(0) is None  # the other camera's slot is untouched
    image[:] = 0  # the copy read out is not a view of the caller's image
    assert got[1].any()


@pytest.mark.parametrize(("shape", "shown"), [((720, 1280), (360, 640)), ((1280, 720), (640, 360)),
                                              ((640, 640), (640, 640)), ((100, 3000), (21, 640))])
def test_longer_side_capped(shape, shown):
    slots = FrameSlots(1, 640, SPAWN)
    image = np.full((*shape, 3), 77, np.uint8)
    slots.write(0, image)
    seq, out = slots.read(0)
    assert out.shape == (*shown, 3)
    assert int(out.mean()) == 77


def test_written_no_larger_than_asked():
    slots = FrameSlots(1, 640, SPAWN)
    slots.write(0, np.zeros((720, 1280, 3), np.uint8), side=320)
    assert slots.read(0)[1].shape == (180, 320, 3)
    slots.write(0, np.zeros((720, 1280, 3), np.uint8), side=4000)  # never above the buffer's size
    assert slots.read(0)[1].shape == (360, 640, 3)


def test_a_copy_that_overlapped_a_write_is_refused():
    slots = FrameSlots(1, 32, SPAWN)
    slots.write(0, np.zeros((8, 8, 3), np.uint8))
    slots._head[0, 0] += 1  # a writer has started (odd sequence number) and not finished
    assert slots.read(0) is None
    slots._head[0, 0] += 1
    assert slots.read(0) is not None


def test_bad_images_are_refused():
    slots = FrameSlots(1, 32, SPAWN)
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        slots.write(0, np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        slots.write(0, np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError):
        FrameSlots(0, 32, SPAWN)


def test_written_in_another_process_and_viewers_seen_there():
    slots = FrameSlots(2, 96, SPAWN)
    slots.set_wanted_side(1, 64)
    image = np.full((120, 160, 3), (10, 20, 30), np.uint8)
    child = SPAWN.Process(target=slots.write, args=(1, image, slots.wanted_side(1)))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    seq, out = slots.read(1)
    assert seq == 2 and out.shape == (48, 64, 3)  # the size the web process asked for
    assert tuple(int(v) for v in out[24, 32]) == (10, 20, 30)
    assert slots.wanted_side(0) == 0
