"""Form checks with known faults on synthetic reps, view detection, and the config loader."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from test_reps import deadlift_pose, pullup_pose, pushup_pose, run, squat_pose, stream

from realtime.errors import RealtimeError
from realtime.reps.form import DEFAULT_CONFIG, STRICTNESS, load_config, rep_headline
from realtime.reps.view import ViewDetector, frame_view

ONE_REP = [("rest", 1.0), ("rep", 1.6, 1.0), ("rest", 0.8)]


def one_rep(pose_fn, exercise: str, plan=ONE_REP, strictness: str = "normal"):
    ra, _ = run(stream(pose_fn, plan), exercise=exercise, strictness=strictness)
    assert len(ra.reps) == 1, f"expected one {exercise} rep, got {len(ra.reps)}"
    return ra.reps[0], ra


# ------------------------------------------------------------------------------------------- squat


def test_deep_squat_passes_with_measured_values():
    rep, ra = one_rep(squat_pose, "squat")
    assert rep.view == "side"
    assert "shallow_depth" not in rep.faults and "forward_lean" not in rep.faults
    assert rep.measures["hip_above_knee_bu"] < 0.0  # hip below the knee
    assert 40 < rep.measures["knee_angle_deg"] < 65
    assert rep.measures["down_s"] > 0.2 and rep.measures["up_s"] > 0.2
    assert "knee_valgus (side view)" in ra.skipped_checks(rep)


def test_shallow_squat_is_flagged_with_value_in_the_cue():
    rep, ra = one_rep(lambda d: squat_pose(0.7 * d), "squat")
    assert "shallow_depth" in rep.faults
    assert rep.measures["hip_above_knee_bu"] > 0.15
    cues = ra.update(10_000, 1e4, None, None).cues
    assert any(c.startswith("depth: hip") and "cm above knee" in c for c in cues)


def test_strictness_changes_the_verdict_on_a_borderline_squat():
    verdicts = {}
    for s in STRICTNESS:
        rep, _ = one_rep(lambda d: squat_pose(0.9 * d), "squat", strictness=s)
        verdicts[s] = "shallow_depth" in rep.faults
    assert verdicts == {"relaxed": False, "normal": False, "strict": True}


@pytest.mark.parametrize("valgus,fault", [(0.0, False), (1.0, True)])
def test_knee_valgus_front_view_only(valgus, fault):
    rep, ra = one_rep(lambda d: squat_pose(d, "front", valgus=valgus), "squat")
    assert rep.view == "front"
    assert ("knee_valgus" in rep.faults) == fault
    assert "knee_ankle_ratio" in rep.measures
    skipped = ra.skipped_checks(rep)
    assert "knee_angle (front view)" in skipped and "torso_lean (front view)" in skipped
    assert "knee_angle_deg" not in rep.measures


# ------------------------------------------------------------------------------------------- push-up


@pytest.mark.parametrize("sag,fault", [(0.0, None), (25.0, "hip_sag"), (-30.0, "hips_high")])
def test_pushup_body_line(sag, fault):
    rep, _ = one_rep(lambda d: pushup_pose(d, sag=sag), "pushup")
    body = {"hip_sag", "hips_high"} & set(rep.faults)
    assert body == ({fault} if fault else set())
    assert rep.measures["body_line_angle_deg"] > 170 if fault is None else rep.measures["body_line_angle_deg"] < 160


def test_shallow_pushup():
    rep, _ = one_rep(lambda d: pushup_pose(0.2 * d), "pushup")
    assert "shallow_pushup" in rep.faults and rep.measures["bottom_elbow_angle_deg"] > 100
    rep, _ = one_rep(pushup_pose, "pushup")
    assert "shallow_pushup" not in rep.faults


# ------------------------------------------------------------------------------------------- deadlift / pull-up

DL = [("rest", 1.0), ("rep", 2.2, 1.0), ("rest", 0.8)]


def test_clean_deadlift_has_no_faults():
    rep, _ = one_rep(deadlift_pose, "deadlift", DL)
    assert rep.faults == []
    assert rep.measures["lockout_hip_angle_deg"] > 170
    assert rep.measures["hip_shoulder_rise_ratio"] < 1.2


@pytest.mark.parametrize("kw,fault", [({"hips_first": 0.6}, "hips_rise_first"), ({"lockout": 0.7}, "incomplete_lockout"),
                                      ({"drift": 40.0}, "bar_drift")])
def test_deadlift_faults(kw, fault):
    rep, _ = one_rep(lambda d: deadlift_pose(d, **kw), "deadlift", DL)
    assert fault in rep.faults


@pytest.mark.parametrize("reach,fault", [(1.0, False), (0.6, True)])
def test_pullup_chin_over_bar(reach, fault):
    rep, _ = one_rep(lambda d: pullup_pose(d, top_reach=reach), "pullup")
    assert ("chin_below_bar" in rep.faults) == fault
    assert "no_full_hang" not in rep.faults


def test_rushed_lowering_is_a_tempo_fault():
    plan = [("rest", 1.0), ("rep", 0.5, 1.0), ("rest", 0.8)]
    rep, _ = one_rep(squat_pose, "squat", plan)
    assert "rushed_lowering" in rep.faults and rep.measures["down_s"] < 0.4


# ------------------------------------------------------------------------------------------- view


def test_view_of_single_frames():
    assert frame_view(squat_pose(0.0, "side"), 100.0) == "side"
    assert frame_view(squat_pose(0.0, "front"), 100.0) == "front"
    back = squat_pose(0.0, "front")
    back[:, 0] = 2 * 300.0 - back[:, 0]  # mirror: left shoulder now on the image left
    back[[0, 1, 2], 2] = 0.1  # face hidden
    assert frame_view(back, 100.0) == "back"


def test_view_detector_votes_and_holds_in_between():
    vd = ViewDetector(window_frames=5)
    assert vd.view == "unknown"
    for _ in range(5):
        vd.update(squat_pose(0.0, "front"), 100.0)
    assert vd.view == "front"
    mid = squat_pose(0.0, "front")
    mid[[5, 6], 0] = [mid[5, 0] - 18, mid[6, 0] + 18]  # shoulders 0.44 bu apart: between the thresholds
    for _ in range(5):
        vd.update(mid, 100.0)
    assert vd.view == "front"


# ------------------------------------------------------------------------------------------- config


def test_presets_load_and_order_sensibly():
    cfgs = {s: load_config(None, s) for s in STRICTNESS}
    sq = [cfgs[s].form["squat"]["max_hip_above_knee"] for s in STRICTNESS]
    assert sq == sorted(sq, reverse=True)  # stricter = smaller allowed height above the knee
    pu = [cfgs[s].form["pushup"]["min_body_line_angle"] for s in STRICTNESS]
    assert pu == sorted(pu)
    assert all(cfgs["normal"].reps[ex].full_rom > 0 for ex in cfgs["normal"].reps)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "form.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("mutate,match", [
    (lambda s: s + "\n[[[ broken", "not valid TOML"),
    (lambda s: s.replace("[reps.snatch]", "[reps.snatch_x]"), r"lacks \[reps.snatch\]"),
    (lambda s: s.replace('signal = "hip_height"', 'signal = "hip_wiggle"'), "signal"),
    (lambda s: s.replace("{ relaxed = 0.3, normal = 0.15, strict = 0.0 }", "{ relaxed = 0.3, normal = 0.15 }"),
     "relaxed, normal and strict"),
    (lambda s: s.replace("enter_frac = 0.25", "enter_frac = 1.5"), "out-of-range"),
    (lambda s: s.replace("[general]", "[generalx]"), r"lacks the \[general\] table"),
    (lambda s: s.replace("min_score = 0.3 ", 'min_score = "high" '), "malformed"),
])
def test_broken_config_is_a_one_line_error(tmp_path, mutate, match):
    path = _write(tmp_path, mutate(DEFAULT_CONFIG.read_text()))
    with pytest.raises(RealtimeError, match=match) as exc:
        load_config(path, "normal")
    assert "\n" not in str(exc.value)


def test_unknown_strictness():
    with pytest.raises(RealtimeError, match="strictness"):
        load_config(None, "lenient")


def test_angles_helpers():
    from realtime.reps import angles as A

    a, b, c = np.array([0.0, 0.0]), np.array([0.0, 10.0]), np.array([10.0, 10.0])
    assert A.joint_angle(a, b, c) == pytest.approx(90.0)
    assert A.joint_angle(a, b, np.array([0.0, 20.0])) == pytest.approx(180.0)
    assert math.isnan(A.joint_angle(a, b, np.array([np.nan, 1.0])))
    assert A.tilt_from_vertical(np.array([0.0, 0.0]), np.array([0.0, 10.0])) == pytest.approx(0.0)
    assert A.tilt_from_vertical(np.array([10.0, 10.0]), np.array([0.0, 10.0])) == pytest.approx(90.0)
    g = A.GapFiller(max_gap_s=0.2)
    xy = np.zeros((17, 2))
    g.update(0.0, xy)
    miss = xy.copy()
    miss[3] = np.nan
    assert np.isfinite(g.update(0.1, miss)[3]).all()  # held
    assert np.isnan(g.update(0.5, miss)[3]).all()  # too long: missing


def test_rep_headline_names_the_key_measure_and_tempo():
    rep, _ = one_rep(squat_pose, "squat")  # side view: the knee angle at the bottom comes first
    said = rep_headline("squat", rep.measures)
    assert said.startswith(f"knee {rep.measures['knee_angle_deg']:.0f}°, ")
    assert f"down {rep.measures['down_s']:.1f} s, up {rep.measures['up_s']:.1f} s" in said
    assert rep_headline("squat", {"hip_above_knee_bu": -0.1}) == "hip 5 cm below knee"
    assert rep_headline("pullup", {"nose_above_wrists_bu": 0.12, "down_s": 0.8, "up_s": math.nan}) == \
        "nose 6 cm above hands"
    assert rep_headline("situp", {}) == ""
