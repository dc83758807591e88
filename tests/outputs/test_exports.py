"""Exported CSV / JSON / PNG files, validated against their documented schema."""

from __future__ import annotations

import csv
import json
import math
import os
import stat

import jsonschema
import pytest
from test_reps import pushup_pose, reps_plan, squat_pose, stream

from realtime.errors import RealtimeError
from realtime.outputs.exports import (
    REP_EVENT_SCHEMA,
    REPS_CSV_COLUMNS,
    SUMMARY_SCHEMA,
    signal_unit,
    timeline_figure,
    write_reps_csv,
    write_summary_json,
    write_timeline_png,
)
from realtime.types import RepEvent


@pytest.fixture(scope="module")
def session():
    """A squat set then a push-up set (one with hip sag), in one analyzer following the labels."""
    frames = stream(squat_pose, reps_plan(3))
    t0 = frames[-1][0] + 1.0
    frames += [(t0 + t, kp) for t, kp in stream(lambda d: pushup_pose(d, sag=25.0), reps_plan(2, dur=1.2))]
    from realtime.reps.counter import RepAnalyzer

    ra = RepAnalyzer(fps=30.0)
    for i, (t, kp) in enumerate(frames):
        ra.update(i, t, kp, "squat" if t < t0 - 0.5 else "pushup", 0.95)
    return ra


def test_session_has_reps_of_both_exercises(session):
    s = session.summary()
    assert s["exercises"]["squat"]["reps"] == 3
    assert s["exercises"]["pushup"]["reps"] == 2
    assert s["exercises"]["pushup"]["faults"].get("hip_sag") == 2


def test_summary_json_matches_schema(session, tmp_path):
    path = write_summary_json(session.summary(), tmp_path / "sub" / "summary.json")
    data = json.loads(path.read_text())
    jsonschema.validate(data, SUMMARY_SCHEMA)
    assert data["total_reps"] == 5
    # what the classifier said, over the frames with a person: mostly squat, then push-up
    assert list(data["labels"]) == ["squat", "pushup"] and abs(sum(data["labels"].values()) - 1) < 1e-3


def test_summary_schema_rejects_wrong_files():
    bad = {"strictness": "normal", "exercise_mode": "fixed", "total_reps": -1, "exercises": {}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SUMMARY_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"strictness": "normal"}, SUMMARY_SCHEMA)


def test_summary_json_writes_nan_as_null(tmp_path):
    path = write_summary_json({"a": math.nan, "b": [1.0, math.inf]}, tmp_path / "s.json")
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None]}


def test_rep_events_match_schema(session):
    for r in session.reps:
        jsonschema.validate(r.to_json(), REP_EVENT_SCHEMA)


def test_reps_csv_columns_and_values(session, tmp_path):
    path = write_reps_csv(session.reps, tmp_path / "reps.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0].keys())
    assert tuple(header[:len(REPS_CSV_COLUMNS)]) == REPS_CSV_COLUMNS
    assert header[len(REPS_CSV_COLUMNS):] == sorted(header[len(REPS_CSV_COLUMNS):])  # measures, sorted
    assert len(rows) == len(session.reps) == 5
    for row, rep in zip(rows, session.reps, strict=True):
        assert row["exercise"] == rep.exercise and int(row["index"]) == rep.index
        assert int(row["start_frame"]) < int(row["bottom_frame"]) < int(row["end_frame"])
        assert float(row["duration_s"]) == pytest.approx(rep.duration_s, abs=1e-3)
        assert row["view"] in ("front", "side", "back", "unknown")
        assert (row["faults"].split(";") if row["faults"] else []) == rep.faults
        for k, v in rep.measures.items():
            assert float(row[k]) == pytest.approx(v, abs=1e-3)
    assert any("hip_sag" in r["faults"] for r in rows)
    assert all(r["knee_angle_deg"] == "" for r in rows if r["exercise"] == "pushup")


def test_empty_csv_has_header_only(tmp_path):
    path = write_reps_csv([], tmp_path / "empty.csv")
    assert path.read_text().strip() == ",".join(REPS_CSV_COLUMNS)


def test_timeline_png(session, tmp_path):
    path = write_timeline_png(session.timeline(), session.reps, tmp_path / "timeline.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_timeline_png_without_data(tmp_path):
    rep = RepEvent("squat", 1, 0, 30, 0.0, 1.0, 1.0, 15)
    assert write_timeline_png([], [rep], tmp_path / "t.png").exists()


def test_unwritable_path_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RealtimeError, match="cannot write") as exc:
        write_reps_csv([], blocker / "reps.csv")
    assert "\n" not in str(exc.value)
    with pytest.raises(RealtimeError, match="cannot write"):
        write_timeline_png([], [], blocker / "t.png")


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_outputs_honour_the_umask(session, tmp_path, umask):
    want = 0o666 & ~umask  # what open() would create (0644 under the usual 022; mkstemp alone gives 0600)
    for path in (write_reps_csv(session.reps, tmp_path / "reps.csv"),
                 write_summary_json(session.summary(), tmp_path / "summary.json"),
                 write_timeline_png(session.timeline(), session.reps, tmp_path / "timeline.png")):
        assert stat.S_IMODE(path.stat().st_mode) == want, path.name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_timeline_axes_name_the_signal_its_unit_and_time(session):
    ax = timeline_figure(session.timeline(), session.reps).axes[0]
    assert ax.get_xlabel() == "time (s)"
    ylabel = ax.get_ylabel()
    assert "squat: hip_height / " in ylabel and "body units" in ylabel  # squat: hip height in body units
    assert "pushup: elbow_angle / " in ylabel and "degrees" in ylabel
    squat_only = [r for r in session.reps if r.exercise == "squat"]
    assert timeline_figure([], squat_only).axes[0].get_ylabel().startswith("hip_height / full ROM (")
    assert "full range of motion" in timeline_figure([], []).axes[0].get_ylabel()
    assert signal_unit("elbow_angle") == "degrees" and signal_unit("wrist_height") == "body units"
