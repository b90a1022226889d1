"""make_engine's per-connection settings hold on every pooled connection, also after the pool
has rolled a connection back (a setting made in a transaction that is never committed is lost)."""

from __future__ import annotations

from sqlalchemy import Engine

from fhirbill.store.db import SQLITE_CHECKPOINT_PAGES, SQLITE_MMAP_BYTES, is_sqlite


def _settings(engine: Engine) -> dict[str, object]:
    with engine.connect() as conn:
        if is_sqlite(conn):
            return {
                "mmap_size": conn.exec_driver_sql("PRAGMA mmap_size").scalar(),
                "wal_autocheckpoint": conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar(),
            }
        return {"plan_cache_mode": conn.exec_driver_sql("SHOW plan_cache_mode").scalar()}


def test_engine_settings_survive_the_pool(database: tuple[Engine, str]) -> None:
    engine = database[0]
    if is_sqlite(engine):
        expected: dict[str, object] = {
            "mmap_size": SQLITE_MMAP_BYTES,
            "wal_autocheckpoint": SQLITE_CHECKPOINT_PAGES,
        }
    else:
        expected = {"plan_cache_mode": "force_custom_plan"}
    engine.dispose()  # new connections, so that the connect hook runs
    assert _settings(engine) == expected
    assert _settings(engine) == expected  # the same connection, back from the pool
