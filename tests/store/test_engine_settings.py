"""Database settings: SQLite's per-connection pragmas hold on every pooled connection, also after
the pool has rolled it back; PostgreSQL plans a search's statements for their values, and only
inside the search's own transaction."""

from __future__ import annotations

from sqlalchemy import Engine

from fhirbill.store.db import SQLITE_CHECKPOINT_PAGES, SQLITE_MMAP_BYTES, is_sqlite
from fhirbill.store.search import plan_for_values


def _settings(engine: Engine, *, searching: bool = False) -> dict[str, object]:
    with engine.begin() as conn:
        if searching:
            plan_for_values(conn)
        if is_sqlite(conn):
            return {
                "mmap_size": conn.exec_driver_sql("PRAGMA mmap_size").scalar(),
                "wal_autocheckpoint": conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar(),
            }
        return {"plan_cache_mode": conn.exec_driver_sql("SHOW plan_cache_mode").scalar()}


def test_engine_settings(database: tuple[Engine, str]) -> None:
    engine = database[0]
    engine.dispose()  # new connections, so that the connect hooks run
    if is_sqlite(engine):
        pragmas = {"mmap_size": SQLITE_MMAP_BYTES, "wal_autocheckpoint": SQLITE_CHECKPOINT_PAGES}
        assert _settings(engine) == pragmas
        assert _settings(engine) == pragmas  # the same connection, back from the pool
        assert _settings(engine, searching=True) == pragmas  # nothing to plan
        return
    assert _settings(engine) == {"plan_cache_mode": "auto"}
    assert _settings(engine, searching=True) == {"plan_cache_mode": "force_custom_plan"}
    assert _settings(engine) == {"plan_cache_mode": "auto"}  # ended with the transaction
