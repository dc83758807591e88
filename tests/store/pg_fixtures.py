"""A throwaway PostgreSQL server (Debian's package) on 127.0.0.1 for the store tests; skipped where absent.

Fixtures imported by the test modules (not a conftest.py, which would shadow tests/conftest.py for
``from conftest import ...``)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def _pg_bin() -> Path | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if Path(folder, "initdb").exists() and Path(folder, "pg_ctl").exists():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server():
    """Base URL (no database) of a PostgreSQL server started for this test session."""
    pytest.importorskip("psycopg", reason="psycopg (psycopg[binary]) not installed")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql): no initdb/pg_ctl found")
    prefix: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="rt-pg-"))  # under /tmp itself: pytest's tmp folders are root-only
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        runuser = shutil.which("runuser")
        if runuser is None:
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.skip("running as root and 'runuser' is missing")
        os.chown(tmp, user.pw_uid, user.pw_gid)
        prefix = [runuser, "-u", "postgres", "--"]
    data, log, port = tmp / "data", tmp / "server.log", _free_port()
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], **run)
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                        "-o", f"-h 127.0.0.1 -p {port} -k {tmp} -F -c max_connections=50", "start"], **run)
    except subprocess.CalledProcessError as exc:
        tail = log.read_text()[-800:] if log.exists() else ""
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL from {bindir}: {exc.stderr.strip()[-800:]} {tail}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server):
    """URL of a fresh, empty database on the session's PostgreSQL server."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{pg_server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each store test runs on an SQLite file and on a real PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "gym.sqlite")
    return request.getfixturevalue("pg_url")
