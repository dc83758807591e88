"""Database of sets and reps (SQLAlchemy Core over SQLite or PostgreSQL)."""

from realtime.store.recorder import SetRecorder
from realtime.store.schema import SCHEMA_VERSION
from realtime.store.store import Store, StoreError, open_store

__all__ = ["SCHEMA_VERSION", "SetRecorder", "Store", "StoreError", "open_store"]
