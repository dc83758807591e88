"""The sets/reps store on SQLite and a real PostgreSQL: schema, sets closing after a rest or an exercise change,
reads, bad URLs."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
import sqlalchemy as sa

from realtime.errors import RealtimeError
from realtime.store import SCHEMA_VERSION, SetRecorder, StoreError, open_store

pytest_plugins = ["pg_fixtures"]  # fixtures (not a conftest.py: that would shadow tests/conftest.py)


def rep(exercise: str = "squat", index: int = 1, *, faults: tuple[str, ...] = (), depth: float = 0.5) -> dict:
    return {
        "type": "rep", "exercise": exercise, "index": index, "start_frame": 30 * index, "end_frame": 30 * index + 60,
        "bottom_frame": 30 * index + 25, "start_t": index * 3.0, "end_t": index * 3.0 + 2.0, "duration_s": 2.0,
        "range_of_motion": 0.9, "view": "side",
        "form": {"measures": {"depth": depth, "lean_max": 31.5}, "faults": list(faults), "skipped": []},
    }


def test_schema_created_versioned_and_reopened(db_url):
    store = open_store(db_url)
    assert store.previous_version == 0
    engine = sa.create_engine(store.url)
    with engine.connect() as conn:
        assert {"schema_version", "sets", "reps"} <= set(sa.inspect(conn).get_table_names())
        assert conn.execute(sa.text("SELECT version FROM schema_version")).scalar_one() == SCHEMA_VERSION
    set_id = store.record_rep("cam0", rep(), host="h", wall_t=1000.0)
    store.close()
    again = open_store(db_url)
    assert again.previous_version == SCHEMA_VERSION
    assert [s["id"] for s in again.sets()] == [set_id]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE schema_version SET version = :v"), {"v": SCHEMA_VERSION + 1})
    again.close()
    with pytest.raises(StoreError, match="newer than this program"):
        open_store(db_url)
    engine.dispose()


def test_sqlite_is_wal_with_full_sync(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'g.sqlite'}")
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    store.close()


def test_rest_closes_the_set_and_the_next_rep_opens_a_new_one(db_url):
    store = open_store(db_url)
    rec = SetRecorder(store, "rack1", host="h", rest_s=30.0)
    first = [rec.on_rep(rep(index=i, faults=("knees in",) if i == 2 else ()), 1000.0 + 3 * i) for i in (1, 2, 3)]
    assert len(set(first)) == 1
    rec.tick(1009.0 + 29.0)  # 29 s after the last rep: still open
    assert store.get_set(first[0])["status"] == "open"
    rec.tick(1009.0 + 30.0)
    closed = store.get_set(first[0])
    assert closed["status"] == "done" and closed["reps"] == 3 and closed["fault_reps"] == 1
    assert closed["started_at"] == pytest.approx(1001.0) and closed["ended_at"] == pytest.approx(1009.0)
    assert closed["duration_s"] == pytest.approx(8.0)
    second = rec.on_rep(rep(index=4), 1100.0)
    assert second != first[0] and store.get_set(second)["status"] == "open"
    reps = store.set_reps(first[0])
    assert [r["n"] for r in reps] == [1, 2, 3] and [r["index"] for r in reps] == [1, 2, 3]
    assert reps[1]["faults"] == ["knees in"] and reps[0]["faults"] == []
    assert reps[0]["measures"] == {"depth": 0.5, "lean_max": 31.5} and reps[0]["view"] == "side"
    assert reps[0]["wall_t"] == pytest.approx(1003.0) and reps[0]["bottom_frame"] == 55
    rec.close()
    assert store.get_set(second)["status"] == "done"
    store.close()


def test_a_rep_after_the_rest_opens_a_new_set_even_without_tick(db_url):
    store = open_store(db_url)
    rec = SetRecorder(store, "rack1", host="h", rest_s=10.0)
    a = rec.on_rep(rep(), 100.0)
    b = rec.on_rep(rep(index=2), 111.0)
    assert a != b and store.get_set(a)["status"] == "done"
    store.close()


def test_exercise_change_closes_the_set(db_url):
    store = open_store(db_url)
    rec = SetRecorder(store, "floor", host="h", rest_s=60.0)
    squat = rec.on_rep(rep("squat"), 100.0)
    assert rec.on_rep(rep("squat", 2), 103.0) == squat
    push = rec.on_rep(rep("pushup"), 106.0)
    assert push != squat
    assert store.get_set(squat)["status"] == "done" and store.get_set(squat)["reps"] == 2
    assert store.get_set(push)["exercise"] == "pushup" and store.get_set(push)["status"] == "open"
    store.close()


def test_sets_filters_and_order(db_url):
    store = open_store(db_url)
    ids = {}
    for cam, t in (("a", 1000.0), ("b", 2000.0), ("a", 3000.0)):
        ids[(cam, t)] = store.record_rep(cam, rep(), host="h", wall_t=t)
        store.close_set(ids[(cam, t)])
    assert [s["id"] for s in store.sets()] == [ids[("a", 3000.0)], ids[("b", 2000.0)], ids[("a", 1000.0)]]
    assert [s["camera"] for s in store.sets(camera="a")] == ["a", "a"]
    assert [s["id"] for s in store.sets(since=1500.0)] == [ids[("a", 3000.0)], ids[("b", 2000.0)]]
    assert [s["id"] for s in store.sets(since=1500.0, until=2500.0)] == [ids[("b", 2000.0)]]
    assert len(store.sets(limit=1)) == 1
    assert store.sets(since=datetime.fromtimestamp(2500.0)) == store.sets(since=2500.0)
    assert store.get_set(10**9) is None and store.set_reps(10**9) == []
    store.close()


def test_close_interrupted_sets_only_touches_open_sets_of_the_host(db_url):
    store = open_store(db_url)
    mine = store.record_rep("cam0", rep(), host="me", wall_t=10.0)
    other = store.record_rep("cam0", rep(), host="other", wall_t=10.0)
    done = store.record_rep("cam1", rep(), host="me", wall_t=10.0)
    store.close_set(done)
    assert mine != other  # sets are per host
    assert store.close_interrupted_sets(host="me") == 1
    assert store.get_set(mine)["status"] == "interrupted"
    assert store.get_set(other)["status"] == "open" and store.get_set(done)["status"] == "done"
    assert store.close_interrupted_sets() == 1
    assert store.close_interrupted_sets() == 0
    store.close()


def test_concurrent_cameras_record_every_rep(db_url):
    store = open_store(db_url)
    errors: list[BaseException] = []

    def camera(name: str) -> None:
        try:
            rec = SetRecorder(store, name, host="h", rest_s=60.0)
            for i in range(1, 26):
                rec.on_rep(rep(index=i), 1000.0 + i)
            rec.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=camera, args=(f"cam{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    sets = store.sets()
    assert len(sets) == 4 and all(s["reps"] == 25 and s["status"] == "done" for s in sets)
    assert all([r["n"] for r in store.set_reps(s["id"])] == list(range(1, 26)) for s in sets)
    store.close()


def test_numpy_and_nan_values_are_stored_as_json(tmp_path):
    np = pytest.importorskip("numpy")
    store = open_store(str(tmp_path / "g.sqlite"))
    r = rep()
    r["range_of_motion"] = np.float32(0.75)
    r["form"]["measures"] = {"depth": np.float64(0.25), "bad": float("nan")}
    set_id = store.record_rep("cam0", r, host="h", wall_t=5.0)
    got = store.set_reps(set_id)[0]
    assert got["range_of_motion"] == pytest.approx(0.75) and got["measures"] == {"depth": 0.25, "bad": None}
    store.close()


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://u:pw@localhost/db", "unsupported database"),
        ("sqlite://", "needs a file"),
        ("/no/such/folder/gym.sqlite", "does not exist"),
        ("", "empty database URL"),
    ],
)
def test_bad_database_urls_are_one_line_errors(url, message):
    with pytest.raises(StoreError, match=message) as info:
        open_store(url)
    assert isinstance(info.value, RealtimeError) and "\n" not in str(info.value)


def test_unreachable_postgres_is_a_one_line_error_without_the_password():
    pytest.importorskip("psycopg")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(StoreError) as info:
        open_store(f"postgresql://gym:s3cret-pw@127.0.0.1:{port}/gym")
    text = str(info.value)
    assert "s3cret-pw" not in text and "\n" not in text and "cannot open" in text
