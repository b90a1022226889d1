"""Engines and transactions for SQLite (WAL, one writer at a time) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

WRITE = "fhirbill_write"
# SQLite reads the database through a memory map up to this size instead of a read() call per
# page missing from its 2 MB cache: a search whose matches spread over thousands of pages made
# that many system calls (measured: Claim?patient with 3,000 matches, 243-288 -> 377-412 req/s).
SQLITE_MMAP_BYTES = 1 << 30
# Pages written to the WAL before a commit copies them into the database (SQLite's default is
# 1,000). Index pages that many commits touch are copied once per checkpoint, so a longer
# interval copies fewer of them (measured in process: Synthea transactions 5-10% faster, a batch
# of AuditEvents' commit 19-24 -> 13 us an event). The WAL file grows to about 40 MB.
SQLITE_CHECKPOINT_PAGES = 10_000


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for this server; SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE writes."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, **kwargs)
        _tune_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so that writes can BEGIN IMMEDIATE: a deferred
        # transaction that later writes can deadlock against another writer and fail at once.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def is_sqlite(conn_or_engine: Connection | Engine) -> bool:
    """True on SQLite (the few places that need dialect-specific SQL ask this)."""
    return conn_or_engine.dialect.name == "sqlite"


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """One write transaction: commits whole on success, rolls back whole on any exception."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction (one consistent snapshot for multi-statement reads)."""
    with engine.connect() as conn:
        with conn.begin():
            yield conn
