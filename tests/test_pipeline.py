"""The threaded pipeline with fake models: ordering, no drops for files, drops for live, sinks, shutdown."""

from __future__ import annotations

import json
import re
import threading
import time

import av
import numpy as np
from conftest import FakeClassifier, FakeEstimator, FakeReps

from realtime.outputs.sinks import EventLogSink, VideoFileSink
from realtime.pipeline import Analyzer, Pipeline, summary_record
from realtime.sources.synthetic import SyntheticSource, synthetic_frames


def _frames(n: int = 30) -> list[np.ndarray]:
    return synthetic_frames(n, size=(320, 240))


def test_file_like_source_processes_every_frame_in_order(tmp_path):
    frames = _frames(40)
    source = SyntheticSource(frames, fps=30, live=False, loop=False)
    analyzer = Analyzer(FakeEstimator(), FakeClassifier(), FakeReps())
    events = EventLogSink(tmp_path / "e.jsonl")
    video = VideoFileSink(tmp_path / "o.mp4", 30, (320, 240))
    outcome = Pipeline(source, analyzer, events=events, video=video).run()
    video.close()
    events.close(summary_record(outcome, analyzer.stats, {}))

    assert outcome.frames_processed == 40 and outcome.frames_dropped == 0 and outcome.error is None
    lines = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    frames_logged = [x for x in lines if x["type"] == "frame"]
    assert [x["frame"] for x in frames_logged] == list(range(40))
    assert all(len(x["keypoints"]) == 17 and len(x["keypoints"][0]) == 3 for x in frames_logged)
    assert frames_logged[0]["label"] == "squat" and frames_logged[0]["confidence"] == 0.8
    assert lines[-1]["type"] == "summary" and lines[-1]["frames_processed"] == 40
    with av.open(str(tmp_path / "o.mp4")) as container:
        decoded = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(decoded) == 40
    assert decoded[0].shape == (240, 320, 3)


def test_live_source_drops_oldest_and_keeps_no_backlog():
    source = SyntheticSource(_frames(10), fps=100, live=True, loop=True, duration_s=1.5, capacity=4)
    analyzer = Analyzer(FakeEstimator(delay_s=0.04))  # 25 fps consumer for a 100 fps camera
    outcome = Pipeline(source, analyzer, draw=False).run()
    assert outcome.frames_dropped > 50
    assert outcome.frames_read == outcome.frames_processed + outcome.frames_dropped + source.stats().buffer_fill
    # Latency stays bounded by the tiny buffer (no growing backlog): well under 0.5 s at p95.
    assert analyzer.stats.end_to_end().p95_ms < 500


def test_a_live_camera_that_drops_most_frames_gets_one_hint_to_set_an_analysis_rate(monkeypatch, caplog):
    import realtime.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "RATE_HINT_AFTER_S", 0.5)
    source = SyntheticSource(_frames(10), fps=100, live=True, loop=True, duration_s=1.5, capacity=4)
    with caplog.at_level("WARNING", logger="realtime.pipeline"):
        Pipeline(source, Analyzer(FakeEstimator(delay_s=0.04)), name="rack", draw=False).run()
    hints = [r.getMessage() for r in caplog.records if "--analysis-fps" in r.getMessage()]
    assert len(hints) == 1 and hints[0].startswith("camera rack: "), hints
    suggested = int(re.search(r"--analysis-fps (\d+) ", hints[0]).group(1))
    assert 10 <= suggested <= 24  # 80 % of the ~25 frames a second analysed
    caplog.clear()
    keeps_up = SyntheticSource(_frames(10), fps=20, live=True, loop=True, duration_s=1.0, capacity=4)
    with caplog.at_level("WARNING", logger="realtime.pipeline"):
        Pipeline(keeps_up, Analyzer(FakeEstimator()), draw=False).run()
    assert not [r for r in caplog.records if "--analysis-fps" in r.getMessage()]


def test_stop_event_ends_a_live_run_quickly():
    stop = threading.Event()
    source = SyntheticSource(_frames(5), fps=30, live=True, loop=True)
    pipeline = Pipeline(source, Analyzer(FakeEstimator()), stop_event=stop, draw=False)
    threading.Timer(0.5, stop.set).start()
    t = time.monotonic()
    outcome = pipeline.run()
    assert time.monotonic() - t < 3.0
    assert outcome.frames_processed > 0


def test_analysis_failure_is_reported_and_sinks_keep_what_was_done(tmp_path):
    source = SyntheticSource(_frames(20), fps=30, live=False, loop=False)
    analyzer = Analyzer(FakeEstimator(fail_at=8))
    events = EventLogSink(tmp_path / "e.jsonl")
    outcome = Pipeline(source, analyzer, events=events).run()
    events.close(summary_record(outcome, analyzer.stats, {}))
    assert outcome.error and "model exploded" in outcome.error
    lines = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert sum(x["type"] == "frame" for x in lines) == 7
    assert lines[-1]["type"] == "summary" and lines[-1]["error"]


class _ExplodingClassifier(FakeClassifier):
    def __init__(self, fail_at: int) -> None:
        self.calls, self.fail_at = 0, fail_at

    def push(self, keypoints, t=None):
        self.calls += 1
        if self.calls > self.fail_at:
            raise RuntimeError("classifier exploded")
        return super().push(keypoints, t)


def test_classifier_failure_is_reported_and_earlier_frames_are_kept(tmp_path):
    source = SyntheticSource(_frames(30), fps=30, live=False, loop=False)
    analyzer = Analyzer(FakeEstimator(), _ExplodingClassifier(fail_at=5), FakeReps())
    events = EventLogSink(tmp_path / "e.jsonl")
    t = time.monotonic()
    outcome = Pipeline(source, analyzer, events=events).run()
    events.close(summary_record(outcome, analyzer.stats, {}))
    assert time.monotonic() - t < 5.0  # the analysis thread is stopped, not left running
    assert outcome.stopped_by == "error" and "classifier exploded" in outcome.error
    lines = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines if x["type"] == "frame"] == list(range(5))
    assert lines[-1]["type"] == "summary" and lines[-1]["error"]


def test_max_frames_stops_after_n():
    source = SyntheticSource(_frames(10), fps=30, live=False, loop=True)
    outcome = Pipeline(source, Analyzer(FakeEstimator()), max_frames=25, draw=False).run()
    assert outcome.frames_processed == 25 and outcome.stopped_by == "max-frames"


def test_source_events_reach_the_log_and_reset_tracking(tmp_path):
    source = SyntheticSource(_frames(10), fps=30, live=False, loop=False)
    estimator = FakeEstimator()
    events = EventLogSink(tmp_path / "e.jsonl")
    pipeline = Pipeline(source, Analyzer(estimator), events=events, draw=False)
    pipeline.on_source_event({"type": "source", "state": "lost", "t": pipeline.t0 + 1, "reason": "stall"})
    pipeline.on_source_event({"type": "source", "state": "back", "t": pipeline.t0 + 2})
    pipeline.run()
    events.close()
    lines = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    states = [x["state"] for x in lines if x["type"] == "source"]
    assert states == ["lost", "back"]
    assert estimator.resets == 1


class _Viewer:
    """A web-view listener that wants the overlay only for every third frame (someone watches at a capped rate)."""

    def __init__(self) -> None:
        self.calls = 0
        self.images: list[np.ndarray | None] = []

    def wants_image(self) -> bool:
        return self.calls % 3 == 0

    def frame(self, result, image, snapshot) -> None:
        self.calls += 1
        self.images.append(image)

    def event(self, record: dict) -> None:
        pass


def test_the_overlay_is_drawn_only_for_an_output_that_wants_it():
    viewer = _Viewer()
    source = SyntheticSource(_frames(12), fps=30, live=False, loop=False)
    analyzer = Analyzer(FakeEstimator(), FakeClassifier(), FakeReps())
    outcome = Pipeline(source, analyzer, draw=False, listeners=(viewer,)).run()
    assert outcome.frames_processed == 12 and viewer.calls == 12
    drawn = [i for i, image in enumerate(viewer.images) if image is not None]
    assert drawn == [0, 3, 6, 9]
    assert all(viewer.images[i].shape == (240, 320, 3) for i in drawn)
    assert analyzer.stats.stages()["draw"].count == 4  # no drawing for the frames nobody looked at
