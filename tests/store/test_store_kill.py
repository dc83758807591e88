"""SIGKILL a process in the middle of a set: every rep whose event line was written is in the database after a
restart, and the unfinished set is closed as interrupted (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from realtime.store import open_store

pytest_plugins = ["pg_fixtures"]  # fixtures (not a conftest.py: that would shadow tests/conftest.py)

REPO = Path(__file__).resolve().parents[2]

# The writer commits each rep, then writes its "event line" (like the analyzer: commit first, then the line).
WRITER = """
import sys, time
from realtime.store import SetRecorder, open_store
store = open_store(sys.argv[1])
rec = SetRecorder(store, "rack1", host="host-a", rest_s=60.0)
i = 0
while True:
    i += 1
    rep = {"exercise": "squat", "index": i, "duration_s": 1.5, "start_t": i * 2.0, "end_t": i * 2.0 + 1.5,
           "range_of_motion": 0.9, "form": {"measures": {"depth": 0.4}, "faults": ["knees in"] if i % 3 == 0 else []}}
    rec.on_rep(rep, time.time())
    print(f"rep {i}", flush=True)
"""


def kill_mid_set(url: str, lines_wanted: int = 40) -> int:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=REPO)
    written = 0
    deadline = time.monotonic() + 60
    try:
        while written < lines_wanted and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                raise AssertionError(f"writer died: {child.stderr.read()[-1000:]}")
            assert line == f"rep {written + 1}\n"
            written += 1
        os.kill(child.pid, signal.SIGKILL)  # the writer is busy recording the next rep right now
    finally:
        child.kill()
        child.wait(10)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert written == lines_wanted
    return written


def check_after_restart(url: str, written: int) -> None:
    store = open_store(url)
    (open_set,) = store.sets()
    assert open_set["status"] == "open"  # left open by the killed run
    reps = store.set_reps(open_set["id"])
    indexes = [r["index"] for r in reps]
    assert indexes[:written] == list(range(1, written + 1))  # every rep whose line was written
    assert indexes == list(range(1, len(reps) + 1)) and len(reps) <= written + 1  # at most the one in flight
    assert open_set["reps"] == len(reps)  # the set row and its reps were committed together
    assert open_set["fault_reps"] == sum(1 for r in reps if r["faults"])
    assert store.close_interrupted_sets() == 1
    assert store.get_set(open_set["id"])["status"] == "interrupted"
    store.close()


def test_sigkill_sqlite(tmp_path):
    url = str(tmp_path / "gym.sqlite")
    check_after_restart(url, kill_mid_set(url))


def test_sigkill_postgresql(pg_url):
    check_after_restart(pg_url, kill_mid_set(pg_url))
