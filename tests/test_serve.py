"""``run_live.py serve`` writing its sets and reps to a real PostgreSQL (several analyzer hosts share one store)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from conftest import REPO, shared_file

pytest_plugins = ["pg_fixtures"]  # the PostgreSQL server fixture (tests/store/pg_fixtures.py)


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: each camera worker process writes through its own connection
def test_serve_records_every_rep_and_closes_the_sets_in_postgresql(pg_url, tmp_path, workers):
    squat = shared_file("workouttracker_reps/videos/squats/squat_24.mp4")
    pullup = shared_file("workouttracker_reps/videos/pull-ups/pull-up_8.mp4")
    events = tmp_path / "events"
    proc = subprocess.run(
        [sys.executable, str(REPO / "run_live.py"), "serve", "--source", f"rack={squat}", "--source", f"bar={pullup}",
         "--port", "0", "--db", pg_url, "--events", f"{events}/", "--exit-when-done", "--set-rest", "30", "--workers", workers],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "serving http://127.0.0.1:" in proc.stdout
    logged = {}
    for name in ("rack", "bar"):
        lines = [json.loads(x) for x in (events / f"{name}.jsonl").read_text().splitlines()]
        logged[name] = [x for x in lines if x["type"] == "rep"]
    assert sum(len(r) for r in logged.values()) >= 2  # both clips have reps: the comparison below is not empty

    from realtime.store import open_store

    store = open_store(pg_url)
    try:
        sets = store.sets()
        for name, reps in logged.items():
            mine = [s for s in sets if s["camera"] == name]
            assert sum(s["reps"] for s in mine) == len(reps), (name, mine)
            assert all(s["status"] == "done" and s["host"] == socket.gethostname() for s in mine)
            stored = [r for s in mine for r in store.set_reps(s["id"])]
            assert len(stored) == len(reps)
    finally:
        store.close()
