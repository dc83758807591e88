"""The analysis rate: which frames a capped camera keeps."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.sources.rate import AnalysisRate, delivered_fps


def kept(times, fps: float) -> list[int]:
    rate = AnalysisRate(fps)
    return [i for i, t in enumerate(times) if rate.keep(t)]


def test_30_fps_at_10_keeps_every_third_frame():
    assert kept([i / 30 for i in range(30)], 10) == list(range(0, 30, 3))


def test_uneven_ratio_keeps_the_cap_evenly_spaced():
    idx = kept([i / 30 for i in range(300)], 12)  # 10 s of a 30 fps camera
    assert len(idx) == 120
    assert set(np.diff(idx)) == {2, 3}  # never two neighbours, never a hole of a whole slot


def test_a_source_slower_than_the_cap_keeps_every_frame():
    assert kept([i / 15 for i in range(60)], 15) == list(range(60))
    assert kept([i / 10 for i in range(60)], 25) == list(range(60))


def test_live_timestamps_with_jitter_keep_about_the_cap():
    rng = np.random.default_rng(0)
    times = np.arange(600) / 30 + 1000.0 + rng.normal(0, 0.004, 600)  # monotonic clock, ±4 ms jitter
    times.sort()
    idx = kept(times, 10)
    assert 195 <= len(idx) <= 201
    assert min(np.diff(times[idx])) > 0.05  # never two frames close together


def test_a_clock_that_jumps_back_starts_again():
    times = [i / 30 for i in range(30)] + [i / 30 for i in range(9)]  # a file that restarts
    assert kept(times, 10) == [*range(0, 30, 3), 30, 33, 36]


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "10"])
def test_bad_rates_are_refused(bad):
    with pytest.raises(ValueError, match="positive number"):
        AnalysisRate(bad)


def test_delivered_fps():
    assert delivered_fps(30.0, None) == 30.0
    assert delivered_fps(30.0, 10.0) == 10.0
    assert delivered_fps(15.0, 20.0) == 15.0
