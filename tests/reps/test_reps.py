"""Rep segmentation on synthetic keypoint streams with a known number of reps, and on real clips when present.

The stick-figure generators below (``squat_pose`` ...) are reused by test_form.py and test_exports.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from realtime.errors import RealtimeError
from realtime.reps.counter import RepAnalyzer, RepUpdate
from realtime.types import RepEvent

FPS = 30.0
# segment lengths in px (torso 100 px = 1 body unit)
TORSO, THIGH, SHIN, UPPER, FORE = 100.0, 82.0, 82.0, 62.0, 55.0
FLOOR_Y, X0 = 600.0, 300.0


def _rot(v: float, deg: float) -> np.ndarray:
    r = math.radians(deg)
    return np.array([v * math.sin(r), -v * math.cos(r)])  # length v at ``deg`` from vertical-up, towards +x


def _assemble(joints: dict[str, np.ndarray], view: str, widths: dict[str, float] | None = None) -> np.ndarray:
    """Side view: both sides at the same spot (far side less confident). Front view: sides spread by ``widths``."""
    names = ["nose", "eye", "eye", "ear", "ear", "sho", "sho", "elb", "elb", "wri", "wri", "hip", "hip", "kne", "kne",
             "ank", "ank"]
    kp = np.zeros((17, 3), np.float32)
    w = {"sho": 40.0, "elb": 45.0, "wri": 45.0, "hip": 25.0, "kne": 25.0, "ank": 25.0, "eye": 8.0, "ear": 16.0}
    w.update(widths or {})
    for i, n in enumerate(names):
        p = joints[n].copy()
        if view == "front" and i > 0:
            left = i % 2 == 1  # COCO odd indices are the person's left: appears on the image right (facing camera)
            p[0] += w[n] if left else -w[n]
        elif view == "side" and i > 0:
            p[0] += 3.0 if i % 2 else -3.0
        kp[i, :2] = p
        kp[i, 2] = 0.9 if (view != "side" or i % 2 == 1 or i == 0) else 0.6
    if view == "side":
        kp[2, 2] = kp[4, 2] = 0.2  # far eye/ear hidden
    return kp


def _head(sho: np.ndarray, lean: float, forward: float = 1.0) -> dict[str, np.ndarray]:
    neck_top = sho + _rot(30.0, lean * forward)
    return {"nose": neck_top + np.array([12.0 * forward, 0.0]), "eye": neck_top + np.array([8.0 * forward, -4.0]),
            "ear": neck_top + np.array([-4.0 * forward, -2.0])}


def squat_pose(depth: float, view: str = "side", valgus: float = 0.0) -> np.ndarray:
    """depth 0 = standing, 1 = deep squat (knee ~50 deg, hip below knee); valgus 0..1 moves the knees inward."""
    shin_tilt = 5 + 30 * depth
    knee_angle = 178 - 128 * depth
    lean = 5 + 40 * depth
    ank = np.array([X0, FLOOR_Y])
    kne = ank + _rot(SHIN, shin_tilt)
    hip = kne + _rot(THIGH, -((180 - knee_angle) - shin_tilt))
    sho = hip + _rot(TORSO, lean)
    elb = sho + _rot(UPPER, 90)
    wri = elb + _rot(FORE, 80)
    j = {"sho": sho, "elb": elb, "wri": wri, "hip": hip, "kne": kne, "ank": ank, **_head(sho, lean)}
    return _assemble(j, view, {"kne": 25.0 - 22.0 * valgus * depth, "elb": 45.0, "wri": 45.0})


def pushup_pose(depth: float, sag: float = 0.0, view: str = "side") -> np.ndarray:
    """depth 0 = arms locked, 1 = chest near the floor; sag = hip drop in px below the shoulder-ankle line."""
    arm = UPPER + FORE - 2.0
    h = arm - (arm - 30.0) * depth
    length = TORSO + THIGH + SHIN
    ank = np.array([X0, FLOOR_Y])
    sho = ank + np.array([math.sqrt(length**2 - h**2), -h])
    wri = np.array([sho[0], FLOOR_Y])
    # elbow by two-link IK, bent towards the feet
    d = max(h, 1.0)
    a = (UPPER**2 - FORE**2 + d**2) / (2 * d)
    off = math.sqrt(max(UPPER**2 - a**2, 0.0))
    elb = sho + np.array([-off, a])
    u = (sho - ank) / length
    normal = np.array([-u[1], u[0]])  # points down-ish (y grows) for a body rising towards +x
    if normal[1] < 0:
        normal = -normal
    hip = ank + u * (SHIN + THIGH) + normal * sag
    kne = ank + u * SHIN + normal * sag * 0.5
    head = {"nose": sho + np.array([25.0, 5.0]), "eye": sho + np.array([22.0, 0.0]), "ear": sho + np.array([10.0, -2.0])}
    return _assemble({"sho": sho, "elb": elb, "wri": wri, "hip": hip, "kne": kne, "ank": ank, **head}, view)


def deadlift_pose(height: float, hips_first: float = 0.0, lockout: float = 1.0, drift: float = 0.0) -> np.ndarray:
    """Side view. height 0 = bar on the floor (set-up), 1 = lockout; hips_first > 0 straightens the knees early while
    the torso stays bent (hips shoot up); lockout < 1 leaves the hips bent at the top; drift moves the bar forward
    (px) in the middle of the pull."""
    knee_h = min(1.0, height * (1 + 2 * hips_first))
    shin_tilt = 15 * (1 - knee_h)
    knee_angle = 110 + 68 * knee_h
    # hips shooting up = the knees straighten early while the torso tips further forward
    lean = 60 * (1 - height * lockout) + 2 + 30 * hips_first * math.sin(math.pi * min(1.0, 2 * height))
    ank = np.array([X0, FLOOR_Y])
    kne = ank + _rot(SHIN, shin_tilt)
    hip = kne + _rot(THIGH, -((180 - knee_angle) - shin_tilt))
    sho = hip + _rot(TORSO, lean)
    arm = UPPER + FORE - 3
    bar_x = X0 + 25.0 + drift * math.sin(math.pi * height)  # the bar stays over mid-foot unless it drifts
    dx = min(abs(sho[0] - bar_x), arm * 0.95)
    wri = np.array([bar_x, sho[1] + math.sqrt(arm**2 - dx**2)])
    elb = (sho + wri) / 2
    return _assemble({"sho": sho, "elb": elb, "wri": wri, "hip": hip, "kne": kne, "ank": ank, **_head(sho, lean)},
                     "side")


def pullup_pose(height: float, top_reach: float = 1.0) -> np.ndarray:
    """Front view; height 0 = dead hang, 1 = top (chin over the bar when top_reach = 1)."""
    bar_y = 150.0
    h = height * top_reach
    sho_y = bar_y + (UPPER + FORE - 3) - (UPPER + FORE - 3 - 5) * h
    sho = np.array([X0, sho_y])
    wri = np.array([X0, bar_y])
    hip = sho + np.array([0.0, TORSO])
    kne = hip + np.array([0.0, THIGH])
    ank = kne + np.array([0.0, SHIN])
    elb = (sho + wri) / 2
    j = {"sho": sho, "elb": elb, "wri": wri, "hip": hip, "kne": kne, "ank": ank,
         "nose": sho + np.array([0.0, -38.0]), "eye": sho + np.array([0.0, -44.0]), "ear": sho + np.array([0.0, -40.0])}
    # elbows go out sideways as the arms bend; wrists stay at the grip width
    bend = math.sqrt(max((UPPER + FORE - 3) ** 2 - (sho_y - bar_y) ** 2, 0.0)) * 0.5
    return _assemble(j, "front", {"sho": 40.0, "elb": 60.0 + bend, "wri": 60.0})


def stream(pose_fn, plan: list[tuple], fps: float = FPS, seed: int = 0, noise_px: float = 1.5,
           dropout: float = 0.0) -> list[tuple[float, np.ndarray | None]]:
    """Build (t, keypoints) frames. plan items: ("rest", s), ("rep", s, depth), ("absent", s), ("hold", s, depth),
    ("walk", s) (walks in from the left edge at rest), ("drop", s) (frames missing: time jumps, nothing emitted)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[float, np.ndarray | None]] = []
    t = 0.0
    for item in plan:
        kind, dur = item[0], item[1]
        n = max(1, round(dur * fps))
        if kind == "drop":
            t += n / fps
            continue
        for k in range(n):
            if kind == "absent":
                out.append((t, None))
                t += 1 / fps
                continue
            if kind == "rep":
                level = item[2] * 0.5 * (1 - math.cos(2 * math.pi * k / n))
            elif kind == "hold":
                level = item[2]
            else:
                level = 0.0
            kp = pose_fn(level).copy()
            if kind == "walk":
                kp[:, 0] -= 500.0 * (1 - k / n)
                kp[kp[:, 0] < 0, 2] = 0.0  # outside the frame
            kp[:, :2] += rng.normal(0, noise_px, (17, 2))
            if dropout:
                kp[rng.random(17) < dropout, 2] = 0.05
            out.append((t, kp))
            t += 1 / fps
    return out


def run(frames, exercise: str | None = "squat", label: str | None = None, finish: bool = False,
        **kw) -> tuple[RepAnalyzer, list[RepUpdate]]:
    ra = RepAnalyzer(exercise=exercise, fps=FPS, **kw)
    ups = [ra.update(i, t, kp, label) for i, (t, kp) in enumerate(frames)]
    if finish:
        ra.finish()
    return ra, ups


def reps_plan(n: int, dur: float = 1.6, depth: float = 1.0, rest: float = 0.8) -> list[tuple]:
    plan: list[tuple] = [("rest", 1.0)]
    for _ in range(n):
        plan += [("rep", dur, depth), ("rest", rest)]
    return plan


# ------------------------------------------------------------------------------------------- synthetic tests


def test_squat_counts_exactly_and_events_are_consistent():
    ra, ups = run(stream(squat_pose, reps_plan(5)))
    assert ups[-1].count == 5 and len(ra.reps) == 5
    assert [r.index for r in ra.reps] == [1, 2, 3, 4, 5]
    news = [u.new_rep for u in ups if u.new_rep is not None]
    assert len(news) == 5
    for r in ra.reps:
        assert r.start_frame < r.bottom_frame < r.end_frame
        assert 0.9 < r.duration_s < 2.0
        assert 0.9 < r.range_of_motion < 1.6
        js = r.to_json()
        assert js["type"] == "rep" and js["exercise"] == "squat" and "measures" in js["form"]
    assert {u.phase for u in ups} >= {"top", "down", "bottom", "up"}


@pytest.mark.parametrize("view", ["side", "front"])
def test_squat_pauses_noise_and_dropped_frames(view):
    # a 3 s pause at the top, a slow rep, 0.2 s of frames never delivered, noisy keypoints with dropouts
    plan = [("rest", 1.0), ("rep", 1.5, 1.0), ("rest", 3.0), ("rep", 2.5, 1.0), ("rest", 0.6),
            ("rep", 1.4, 1.0), ("drop", 0.2), ("rest", 0.3), ("rep", 1.2, 1.0), ("rest", 1.0)]
    frames = stream(lambda d: squat_pose(d, view), plan, noise_px=3.0, dropout=0.05, seed=3)
    frames = [f for i, f in enumerate(frames) if i % 7 != 3]  # and every 7th frame dropped
    ra, ups = run(frames)
    assert ups[-1].count == 4


def test_partial_squat_not_counted_but_cued():
    plan = reps_plan(3) + [("rep", 1.2, 0.5), ("rest", 0.8)] + reps_plan(1)
    ra, ups = run(stream(squat_pose, plan))
    assert ups[-1].count == 4
    assert any("partial" in c for u in ups for c in u.cues)
    assert ra.summary()["exercises"]["squat"]["partial_reps"] == 1


def test_bottom_pause_and_bounce_is_one_rep():
    frames = stream(squat_pose, [("rest", 1.0)])
    t0 = frames[-1][0]
    rng = np.random.default_rng(1)
    # a descent, a 2 s pause at the bottom with small bounces, then up and stand
    seq = list(np.linspace(0, 1, 30)) + [1.0 - 0.1 * abs(math.sin(k / 6)) for k in range(60)]
    seq += list(np.linspace(1, 0, 30)) + [0.0] * 30
    for k, d in enumerate(seq):
        kp = squat_pose(float(d))
        kp[:, :2] += rng.normal(0, 1.5, (17, 2))
        frames.append((t0 + (k + 1) / FPS, kp))
    ra, ups = run(frames)
    assert ups[-1].count == 1


def test_no_person_pauses_and_abandons_rep_in_progress():
    frames = stream(squat_pose, [("rest", 1.0), ("rep", 1.5, 1.0), ("rest", 1.0)])
    # half a rep, then the person leaves for 2 s and comes back standing
    t = frames[-1][0]
    for k in range(20):
        t += 1 / FPS
        frames.append((t, squat_pose(k / 20)))
    for _ in range(60):
        t += 1 / FPS
        frames.append((t, None))
    for _ in range(45):
        t += 1 / FPS
        frames.append((t, squat_pose(0.0)))
    ra, ups = run(frames)
    assert ups[-1].count == 1
    none_ups = ups[len(frames) - 60 - 45 + 25:len(frames) - 45]
    assert all(u.phase == "idle" for u in none_ups)


def test_walk_in_then_reps():
    plan = [("absent", 1.0), ("walk", 2.0), ("rest", 0.6)] + reps_plan(3)[1:]
    ra, ups = run(stream(squat_pose, plan, seed=5))
    assert ups[-1].count == 3


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_camera_distance_does_not_matter(scale):
    def far(d: float) -> np.ndarray:
        kp = squat_pose(d)
        kp[:, :2] *= scale
        return kp
    ra, ups = run(stream(far, reps_plan(4), noise_px=1.5 * scale))
    assert ups[-1].count == 4


def test_pushup_counts_and_ignores_standing_up():
    plan = reps_plan(6, dur=1.2, rest=0.4)
    frames = stream(pushup_pose, plan, noise_px=2.0, seed=2)
    # then the person stands up and squats (not a push-up posture): no push-up counted
    t = frames[-1][0]
    for ft, kp in stream(squat_pose, reps_plan(2)):
        frames.append((t + 0.5 + ft, kp))
    ra, ups = run(frames, exercise="pushup")
    assert ups[-1].count == 6


def test_deadlift_counts_from_the_floor():
    plan = [("rest", 1.0)] + [("rep", 2.4, 1.0), ("rest", 0.7)] * 3
    ra, ups = run(stream(deadlift_pose, plan, noise_px=2.0), exercise="deadlift")
    assert ups[-1].count == 3
    r = ra.reps[0]
    # the turn of a deadlift rep is the lockout: shoulders at their highest there
    assert r.start_frame < r.bottom_frame < r.end_frame
    assert {u.phase for u in ups} >= {"bottom", "up", "top", "down"}


def test_pullup_counts_with_dropout():
    plan = [("rest", 1.0)] + [("rep", 1.8, 1.0), ("rest", 0.5)] * 5
    ra, ups = run(stream(pullup_pose, plan, noise_px=2.0, dropout=0.08, seed=4), exercise="pullup")
    assert ups[-1].count == 5


def test_finish_counts_a_rep_cut_by_the_end_of_the_file():
    frames = stream(squat_pose, reps_plan(2))
    t = frames[-1][0]
    for k in range(40):  # down and ~60 % of the way back up, then the file ends
        t += 1 / FPS
        frames.append((t, squat_pose(math.sin(math.pi * k / 40 * 0.9))))
    ra, ups = run(frames)
    assert ups[-1].count == 2
    assert len(ra.finish()) == 1 and ra.summary()["total_reps"] == 3


def _ends_mid_rep(pose, depth_reached: float, exercise: str) -> list[RepEvent]:
    """Two full reps, then a rep that goes to ``depth_reached`` (1 = full) and the file ends there."""
    frames = stream(pose, [("rest", 1.0)] + [("rep", 1.8, 1.0), ("rest", 0.5)] * 2)
    t = frames[-1][0]
    for k in range(1, 31):
        t += 1 / FPS
        frames.append((t, pose(depth_reached * k / 30)))
    ra, ups = run(frames, exercise=exercise)
    assert ups[-1].count == 2
    return ra.finish()


def test_finish_counts_a_pullup_that_reached_the_top_but_not_a_squat_at_the_bottom():
    # a pull-up is achieved at the top (chin over the bar); a squat only once standing again
    assert len(_ends_mid_rep(pullup_pose, 1.0, "pullup")) == 1
    assert _ends_mid_rep(pullup_pose, 0.1, "pullup") == []  # elbows bent ~40° of the ~90° a pull-up takes: not one
    assert _ends_mid_rep(squat_pose, 1.0, "squat") == []


def test_label_following_with_hysteresis():
    frames = stream(squat_pose, reps_plan(4))
    ra = RepAnalyzer(fps=FPS)
    ups = []
    for i, (t, kp) in enumerate(frames):
        # the classifier needs the first 1.5 s to recognise the squat, and flickers once
        label = "other" if t < 1.5 else ("pushup" if i == 100 else "squat")
        ups.append(ra.update(i, t, kp, label, 0.9))
    assert ups[-1].exercise == "squat"
    assert ups[-1].count == 4
    assert all(u.exercise in (None, "squat") for u in ups)


def test_low_confidence_labels_do_not_switch():
    frames = stream(squat_pose, reps_plan(2))
    ra = RepAnalyzer(fps=FPS)
    ups = [ra.update(i, t, kp, "squat", 0.3) for i, (t, kp) in enumerate(frames)]
    assert ups[-1].exercise is None and ups[-1].count == 0


def test_end_of_file_credits_reps_from_before_the_label_settled():
    frames = stream(squat_pose, reps_plan(4))  # reps end at about 2.6, 5.0, 7.4 and 9.8 s
    ra = RepAnalyzer(fps=FPS)
    ups = []
    for i, (t, kp) in enumerate(frames):
        label = "clean_and_jerk" if t < 3.0 else "squat"  # a short clip: the label settles after the first rep
        ups.append(ra.update(i, t, kp, label, 0.9))
    assert ups[-1].exercise == "squat" and ups[-1].count == 3  # live: the first rep was missed
    assert ra.file_exercise() == "squat"
    late = ra.finish()
    assert [r.exercise for r in late] == ["squat"] and late[0].end_t < 3.0
    assert ra.summary()["exercises"]["squat"]["reps"] == 4
    assert ra.summary()["exercises"].get("clean_and_jerk", {"reps": 0})["reps"] == 0


def test_end_of_file_names_the_exercise_when_the_label_never_settled():
    frames = stream(squat_pose, reps_plan(3))
    ra = RepAnalyzer(fps=FPS)
    for i, (t, kp) in enumerate(frames):
        # flickering between squat and other every 0.5 s: live following never switches
        label = "squat" if int(t * 2) % 3 else "other"
        ra.update(i, t, kp, label, 0.9)
    assert ra.exercise is None and ra.summary()["total_reps"] == 0
    assert ra.file_exercise() == "squat"
    assert len(ra.finish()) == 3 and ra.exercise == "squat"


def test_end_of_file_keeps_live_counts_and_ignores_mostly_other():
    frames = stream(squat_pose, reps_plan(3))
    ra = RepAnalyzer(fps=FPS)
    for i, (t, kp) in enumerate(frames):
        ra.update(i, t, kp, "squat" if t < 1.2 else "other", 0.9)  # mostly "other": no whole-file exercise
    assert ra.file_exercise() is None
    assert ra.finish() == [] and ra.summary()["total_reps"] == 0
    assert list(ra.summary()["labels"]) == ["other", "squat"]
    fixed, _ = run(stream(squat_pose, reps_plan(2)), exercise="squat", label="pushup")
    assert fixed.file_exercise() is None  # --exercise given: the classifier is not asked


def test_timeline_is_bounded_and_downsampled():
    ra, _ = run(stream(squat_pose, reps_plan(3)))
    tl = ra.timeline()
    assert 30 < len(tl) <= 10 * 8.5 + 2
    assert all(p in ("top", "down", "bottom", "up", "idle") for _, _, p in tl)


def test_bad_arguments_raise_one_line_errors():
    with pytest.raises(RealtimeError, match="strictness"):
        RepAnalyzer(strictness="extreme")
    with pytest.raises(RealtimeError, match="exercise"):
        RepAnalyzer(exercise="yoga")
    with pytest.raises(RealtimeError, match="not found"):
        RepAnalyzer(config_path="/nonexistent/form.toml")


def test_reset_forgets_everything():
    ra, ups = run(stream(squat_pose, reps_plan(2)))
    assert ups[-1].count == 2
    ra.reset()
    assert len(ra.reps) == 0 and ra.summary()["total_reps"] == 0 and ra.timeline() == []


def test_rep_event_types():
    ra, _ = run(stream(squat_pose, reps_plan(1)))
    r = ra.reps[0]
    assert isinstance(r, RepEvent)
    assert all(isinstance(v, float) for v in r.measures.values())


# ------------------------------------------------------------------------------------------- real clips

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "workouttracker_reps"


def _blazepose_available() -> bool:
    return (Path(__file__).resolve().parents[2] / "realtime" / "pose" / "blazepose.py").exists()


@pytest.mark.slow
@pytest.mark.skipif(not DATA.exists(), reason="../shared/data/workouttracker_reps not present")
@pytest.mark.skipif(not _blazepose_available(), reason="realtime/pose/blazepose.py not written yet")
@pytest.mark.parametrize("clip,exercise", [("squats/squat_18", "squat"), ("pull-ups/pull-up_8", "pullup")])
def test_real_clip_count_within_one(clip, exercise):
    import av
    import pandas as pd

    from realtime.pose import create_pose_estimator

    truth = int((pd.read_csv(DATA / "labels" / f"{clip}.csv").label > 0.5).sum())
    est, _ = create_pose_estimator("blazepose-full")
    try:
        with av.open(str(DATA / "videos" / f"{clip}.mp4")) as c:
            fps = float(c.streams.video[0].average_rate or 30)
            ra = RepAnalyzer(exercise=exercise, fps=fps)
            for i, fr in enumerate(c.decode(video=0)):
                img = fr.to_ndarray(format="bgr24")
                rot = getattr(fr, "rotation", 0) or 0
                if rot:
                    img = np.ascontiguousarray(np.rot90(img, k=int(rot) // 90))
                ra.update(i, i / fps, est.estimate(img).keypoints, None)
            ra.finish()
    finally:
        est.close()
    assert abs(ra.summary()["total_reps"] - truth) <= 1
