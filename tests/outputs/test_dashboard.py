"""Stage tables show milliseconds; a rate only for the stage that limits the frame rate (no "fps 674286")."""

from __future__ import annotations

from rich.console import Console

from realtime.outputs.dashboard import stage_table
from realtime.stats import StageStats, bottleneck, stage_rate_cell


def _text(renderable) -> str:
    console = Console(record=True, width=120)
    console.print(renderable)
    return console.export_text()


def test_only_the_bottleneck_stage_gets_a_rate():
    stages = {"capture": StageStats(2.0, 3.0, 2.1, 10), "pose": StageStats(30.0, 35.0, 31.25, 10),
              "sinks": StageStats(0.0015, 0.002, 0.00148, 10)}
    assert bottleneck({k: s.mean_ms for k, s in stages.items()}) == "pose"
    cells = [line.replace("│", " ").split() for line in _text(stage_table(stages, None)).splitlines()]
    rows = {c[0]: c for c in cells if c and c[0] in stages}
    assert set(rows) == set(stages)
    assert rows["pose"][-1] == "32"  # 1000 / 31.25 ms
    assert rows["sinks"][-1] == "-" and rows["capture"][-1] == "-"
    assert "675676" not in _text(stage_table(stages, None))  # 1000 / 0.00148 ms, the meaningless figure


def test_rate_cell_edge_cases():
    assert bottleneck({}) is None and bottleneck({"a": 0.0}) is None
    assert stage_rate_cell("a", 0.0, "a") == "-" and stage_rate_cell("a", 4.0, "a") == "250"


def test_several_cameras_get_a_row_each_and_the_engine_its_batches():
    from realtime.outputs.dashboard import render_cameras
    from realtime.pose.batching import BatchStats
    from realtime.stats import StatsSnapshot
    from realtime.types import RepEvent

    rep = RepEvent("squat", 3, 10, 40, 1.0, 2.5, 0.9)
    snaps = [
        StatsSnapshot({}, StageStats(20.0, 41.0, 22.0, 9), 29.5, 100, 99, 1, 0, 4, "squat", 0.9, 3, "ok",
                      extra={"camera": "rack", "last_rep": rep}),
        StatsSnapshot({}, None, 0.0, 5, 5, 0, 0, 4, None, 0.0, 0, "reconnecting", extra={"camera": "bar"}),
    ]
    engine = BatchStats(batches=10, crops=35, mean_batch=3.5, max_batch=4, network_p50_ms=12.0, network_p95_ms=15.0,
                        queue_wait_p95_ms=3.0, recent_sizes=(3, 4))
    text = _text(render_cameras(snaps, engine, "2 cameras"))
    rack = next(line for line in text.splitlines() if "rack" in line)
    bar = next(line for line in text.splitlines() if "bar" in line)
    assert "29.5" in rack and "squat #3 1.5 s" in rack and "41" in rack
    assert "reconnecting" in bar and "squat" not in bar
    assert "mean batch 3.50" in text and "max 4" in text
    assert "no batching" in _text(render_cameras(snaps, None, "2 cameras"))
