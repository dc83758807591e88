"""``--bench`` tables: per-stage milliseconds, and a rate only for the bottleneck stage."""

from __future__ import annotations

from realtime.benchmark import cli_bench


def test_stage_table_has_no_rate_for_sub_millisecond_stages(capsys):
    stages = {"capture": {"p50": 1.9, "p95": 2.5, "mean": 2.0}, "pose": {"p50": 8.0, "p95": 9.0, "mean": 8.1},
              "reps": {"p50": 0.04, "p95": 0.05, "mean": 0.04}, "sinks": {"p50": 0.0, "p95": 0.0, "mean": 0.0017}}
    run = {"engine": "blazepose-lite", "pose_only_ms": {"p50": 7.9, "p95": 8.8}, "pose_only_fps": 126.0,
           "end_to_end_fps": 110.0, "end_to_end_latency_ms": {"p95": 20.0}, "pipeline_overhead": 0.1,
           "stages_ms": stages}
    cli_bench.print_table({"machine": {"cpu": "test cpu", "cores": 2}, "frames": 12, "runs": [run]})
    out = capsys.readouterr().out
    rows = {line.strip("│ ").split()[0]: line for line in out.splitlines()
            if line.strip("│ ").split() and line.strip("│ ").split()[0] in stages}
    assert set(rows) == set(stages)
    assert rows["pose"].rstrip(" │").endswith("123")  # 1000 / 8.1 ms
    for name in ("capture", "reps", "sinks"):
        assert rows[name].rstrip(" │").endswith("-"), rows[name]
    assert "588235" not in out and "max fps" in out
