"""Tables of the sets/reps database and the schema-version migrations (SQLAlchemy Core, SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

SCHEMA_VERSION = 1

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

# A set: a run of reps of one exercise on one camera (of one analyzer host), closed after a rest.
sets = sa.Table(
    "sets",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("camera", sa.String(128), nullable=False),
    sa.Column("host", sa.String(128), nullable=False),
    sa.Column("exercise", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | done | interrupted | <caller's status>
    sa.Column("started_at", sa.Double, nullable=False),  # wall clock (epoch s): start of the first rep
    sa.Column("ended_at", sa.Double, nullable=False),  # wall clock: end of the last rep
    sa.Column("closed_at", sa.Double, nullable=True),  # wall clock when the set was closed
    sa.Column("reps", sa.Integer, nullable=False),
    sa.Column("fault_reps", sa.Integer, nullable=False),  # reps with at least one form fault
)
sa.Index("ix_sets_open", sets.c.status, sets.c.camera, sets.c.host, sets.c.exercise)
sa.Index("ix_sets_started", sets.c.started_at)
sa.Index("ix_sets_camera_started", sets.c.camera, sets.c.started_at)

reps = sa.Table(
    "reps",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("set_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), sa.ForeignKey("sets.id"), nullable=False),
    sa.Column("n", sa.Integer, nullable=False),  # position in the set, 1-based
    sa.Column("camera", sa.String(128), nullable=False),
    sa.Column("exercise", sa.String(64), nullable=False),
    sa.Column("rep_index", sa.Integer, nullable=True),  # RepEvent.index (the counter's number)
    sa.Column("wall_t", sa.Double, nullable=False),  # wall clock when the rep ended (was recorded)
    sa.Column("start_t", sa.Double, nullable=True),  # analysis clock of the run (RepEvent.start_t / end_t)
    sa.Column("end_t", sa.Double, nullable=True),
    sa.Column("duration_s", sa.Double, nullable=True),
    sa.Column("range_of_motion", sa.Double, nullable=True),
    sa.Column("view", sa.String(32), nullable=True),
    sa.Column("faults", sa.JSON, nullable=False),  # list[str]
    sa.Column("measures", sa.JSON, nullable=False),  # dict[str, float]
    sa.Column("data", sa.JSON, nullable=False),  # the whole rep record (RepEvent.to_json() + camera)
)
sa.Index("ix_reps_set", reps.c.set_id)

# MIGRATIONS[v] upgrades a database at version v to v + 1 (run inside one transaction).
MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {}


class SchemaError(Exception):
    """The database holds a schema this program cannot use."""


def migrate(conn: sa.Connection) -> int:
    """Create the tables or bring them to SCHEMA_VERSION; returns the version found before (0 = new database)."""
    inspector = sa.inspect(conn)
    names = set(inspector.get_table_names())
    if "schema_version" not in names:
        if names & {"sets", "reps"}:
            raise SchemaError("the database has sets/reps tables but no schema_version table (not made by this program)")
        metadata.create_all(conn)
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        return 0
    found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    if found is None:
        raise SchemaError("the schema_version table is empty")
    if found > SCHEMA_VERSION:
        raise SchemaError(f"the database schema is version {found}, newer than this program's {SCHEMA_VERSION}; upgrade it")
    for version in range(found, SCHEMA_VERSION):
        step = MIGRATIONS.get(version)
        if step is None:
            raise SchemaError(f"no migration from schema version {version} to {version + 1}")
        step(conn)
    if found != SCHEMA_VERSION:
        conn.execute(schema_version.delete())
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
    return found
