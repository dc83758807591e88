"""The sets/reps database: SQLite (one file, WAL) by default, PostgreSQL (psycopg 3) for several analyzer hosts.

Every rep is committed in its own transaction the moment it is recorded, together with the update of its set, so
a process killed with SIGKILL leaves every recorded rep on disk and its set still ``open``;
``close_interrupted_sets`` (called at start) marks such sets ``interrupted``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from realtime.errors import RealtimeError
from realtime.store import schema
from realtime.store.jsonable import to_jsonable
from realtime.store.schema import reps as reps_t
from realtime.store.schema import sets as sets_t

_PG_MIGRATION_LOCK = 724100516  # pg_advisory_xact_lock key: one process migrates at a time
OPEN = "open"


class StoreError(RealtimeError):
    """The database cannot be opened, migrated or written."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:300]


def _dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), allow_nan=False)


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out and abs(out) != float("inf") else None


def _epoch(value: datetime | float | int | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()  # naive = local time
    return float(value)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _engine_url(url: str) -> sa.URL:
    text = str(url).strip()
    if not text:
        raise StoreError("empty database URL (give a file such as gym.sqlite or postgresql://user:pw@host/db)")
    if "://" not in text:
        return sa.URL.create("sqlite", database=str(Path(text).expanduser()))
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"bad database URL: {_one_line(exc)}") from None
    name = parsed.drivername
    if name in ("sqlite", "sqlite+pysqlite"):
        if not parsed.database or parsed.database == ":memory:":
            raise StoreError("an SQLite database needs a file: sqlite:///path/to/gym.sqlite")
        return parsed.set(drivername="sqlite")
    if name in ("postgresql", "postgres", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    raise StoreError(f"unsupported database {name!r}: use an SQLite file or postgresql://user:pw@host:port/db")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, so a committed rep survives SIGKILL and a power cut
        # (NORMAL would survive SIGKILL only). Reps are a few per second at most; the fsync is cheap.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


class Store:
    """Sets and reps of every camera. Thread-safe: writes are serialised, reads use pooled connections."""

    def __init__(self, url: str) -> None:
        self.url = _engine_url(url)
        self.display_url = self.url.render_as_string(hide_password=True)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            folder = Path(self.url.database or "").expanduser().resolve().parent
            if not folder.is_dir():
                raise StoreError(f"cannot create database {self.url.database}: folder {folder} does not exist")
            engine = sa.create_engine(
                self.url, json_serializer=_dumps, connect_args={"timeout": 30.0, "check_same_thread": False}
            )
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(
                self.url, json_serializer=_dumps, pool_pre_ping=True, connect_args={"connect_timeout": 10}
            )
        self._engine = engine
        self._write_lock = threading.Lock()
        self.previous_version = 0
        with self._errors("open"), self._engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            try:
                self.previous_version = schema.migrate(conn)
            except schema.SchemaError as exc:
                raise StoreError(f"database {self.display_url}: {exc}") from None

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            detail = getattr(exc, "orig", None) or exc
            raise StoreError(f"database {self.display_url}: cannot {action}: {_one_line(detail)}") from None

    # ------------------------------------------------------------------ writes
    def record_rep(self, camera: str, rep: dict, *, host: str, wall_t: float) -> int:
        """Commit one finished rep now; opens a set when none is open for (host, camera, exercise). Returns the set id."""
        data = to_jsonable(dict(rep))
        data.setdefault("camera", camera)
        exercise = str(data.get("exercise") or "unknown")[:64]
        form = data.get("form") if isinstance(data.get("form"), dict) else {}
        faults = [str(f) for f in (form.get("faults") or [])]
        measures = form.get("measures") if isinstance(form.get("measures"), dict) else {}
        duration = _num(data.get("duration_s"))
        wall_t = float(wall_t)
        index = data.get("index")
        open_q = (
            sa.select(sets_t.c.id, sets_t.c.reps)
            .where(sets_t.c.status == OPEN, sets_t.c.camera == camera, sets_t.c.host == host,
                   sets_t.c.exercise == exercise)
            .order_by(sets_t.c.id.desc())
            .limit(1)
        )
        with self._write_lock, self._errors("record a rep"), self._engine.begin() as conn:
            row = conn.execute(open_q).first()
            if row is None:
                set_id = conn.execute(
                    sets_t.insert().values(
                        camera=camera, host=host, exercise=exercise, status=OPEN,
                        started_at=wall_t - (duration or 0.0), ended_at=wall_t, reps=0, fault_reps=0,
                    )
                ).inserted_primary_key[0]
                n = 1
            else:
                set_id, n = row.id, row.reps + 1
            conn.execute(
                reps_t.insert().values(
                    set_id=set_id, n=n, camera=camera, exercise=exercise,
                    rep_index=index if isinstance(index, int) else None, wall_t=wall_t,
                    start_t=_num(data.get("start_t")), end_t=_num(data.get("end_t")), duration_s=duration,
                    range_of_motion=_num(data.get("range_of_motion")),
                    view=str(data["view"])[:32] if data.get("view") is not None else None,
                    faults=faults, measures=measures, data=data,
                )
            )
            conn.execute(
                sets_t.update().where(sets_t.c.id == set_id).values(
                    reps=sets_t.c.reps + 1, fault_reps=sets_t.c.fault_reps + (1 if faults else 0), ended_at=wall_t
                )
            )
        return int(set_id)

    def close_set(self, set_id: int, status: str = "done") -> None:
        """Close an open set (no-op when it is already closed)."""
        if not status or status == OPEN or len(status) > 16:
            raise ValueError(f"bad set status {status!r}")
        with self._write_lock, self._errors("close a set"), self._engine.begin() as conn:
            conn.execute(
                sets_t.update().where(sets_t.c.id == set_id, sets_t.c.status == OPEN)
                .values(status=status, closed_at=time.time())
            )

    def close_interrupted_sets(self, *, host: str | None = None) -> int:
        """Mark sets left open by a crashed run as ``interrupted`` (only ``host``'s when given); returns how many."""
        cond = [sets_t.c.status == OPEN]
        if host is not None:
            cond.append(sets_t.c.host == host)
        with self._write_lock, self._errors("close interrupted sets"), self._engine.begin() as conn:
            result = conn.execute(sets_t.update().where(*cond).values(status="interrupted", closed_at=time.time()))
            return int(result.rowcount or 0)

    # ------------------------------------------------------------------ reads
    @staticmethod
    def _set_dict(row: Any) -> dict:
        out = dict(row._mapping)
        out["duration_s"] = round(max(0.0, out["ended_at"] - out["started_at"]), 3)
        out["started_iso"] = _iso(out["started_at"])
        out["ended_iso"] = _iso(out["ended_at"])
        return out

    def sets(
        self,
        camera: str | None = None,
        since: datetime | float | None = None,
        limit: int = 500,
        *,
        until: datetime | float | None = None,
        host: str | None = None,
    ) -> list[dict]:
        """Sets newest first; ``since``/``until`` bound the start time (datetime, naive = local, or epoch seconds)."""
        query = sa.select(sets_t)
        if camera is not None:
            query = query.where(sets_t.c.camera == camera)
        if host is not None:
            query = query.where(sets_t.c.host == host)
        if (lo := _epoch(since)) is not None:
            query = query.where(sets_t.c.started_at >= lo)
        if (hi := _epoch(until)) is not None:
            query = query.where(sets_t.c.started_at < hi)
        query = query.order_by(sets_t.c.started_at.desc(), sets_t.c.id.desc()).limit(max(1, int(limit)))
        with self._errors("read sets"), self._engine.connect() as conn:
            return [self._set_dict(row) for row in conn.execute(query)]

    def get_set(self, set_id: int) -> dict | None:
        with self._errors("read a set"), self._engine.connect() as conn:
            row = conn.execute(sa.select(sets_t).where(sets_t.c.id == set_id)).first()
        return None if row is None else self._set_dict(row)

    def set_reps(self, set_id: int) -> list[dict]:
        """The set's reps in order: the recorded rep record plus id, set_id, n (position in the set) and wall_t."""
        query = sa.select(reps_t).where(reps_t.c.set_id == set_id).order_by(reps_t.c.n, reps_t.c.id)
        with self._errors("read reps"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        out = []
        for row in rows:
            rep = dict(row.data) if isinstance(row.data, dict) else {}
            rep.update(
                id=row.id, set_id=row.set_id, n=row.n, camera=row.camera, exercise=row.exercise,
                wall_t=row.wall_t, wall_iso=_iso(row.wall_t), faults=list(row.faults or []),
                measures=dict(row.measures or {}),
            )
            out.append(rep)
        return out

    def ping(self) -> None:
        """Raise StoreError when the database cannot be reached."""
        with self._errors("reach the database"), self._engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(url: str) -> Store:
    """Open (creating or migrating) the database at ``url``: a file path / ``sqlite:///path`` or ``postgresql://…``."""
    return Store(url)
