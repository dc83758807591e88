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
