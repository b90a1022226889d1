"""The audit buffer: events reach the database in batches, after at most `max_wait` when idle."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from fhirbill.api.audit import AuditBuffer
from fhirbill.auth.access import Principal
from fhirbill.auth.audit import audit_event
from fhirbill.store.tables import resources


def _event() -> dict:  # type: ignore[type-arg]
    p = Principal("client-1", ("system/*.rs",), None, None, None)
    return audit_event(p, "R", "read", ["Claim/c1"], 200, "127.0.0.1", datetime.now(UTC))


def _stored(server) -> int:  # type: ignore[no-untyped-def]
    with server.engine.connect() as conn:
        q = select(func.count()).select_from(resources).where(resources.c.res_type == "AuditEvent")
        return int(conn.execute(q).scalar_one())


def test_a_full_batch_is_written_by_the_request_that_fills_it(server) -> None:  # type: ignore[no-untyped-def]
    buf = AuditBuffer(server, batch=5, max_wait=60)
    for _ in range(4):
        buf.put(_event())
    assert _stored(server) == 0
    buf.put(_event())
    assert _stored(server) == 5


def test_idle_events_are_written_within_max_wait(server) -> None:  # type: ignore[no-untyped-def]
    buf = AuditBuffer(server, batch=100, max_wait=0.05)
    buf.put(_event())
    buf.put(_event())
    deadline = time.monotonic() + 5
    while _stored(server) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _stored(server) == 2


def test_flush_writes_everything(server) -> None:  # type: ignore[no-untyped-def]
    buf = AuditBuffer(server, batch=100, max_wait=60)
    for _ in range(3):
        buf.put(_event())
    buf.flush()
    assert _stored(server) == 3


def test_a_failed_write_is_logged_without_payload(
    server, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("disk full for Claim/c1")

    monkeypatch.setattr("fhirbill.api.audit.repo.insert", broken)
    buf = AuditBuffer(server, batch=1, max_wait=60)
    with caplog.at_level(logging.ERROR, logger="fhirbill.audit"):
        buf.put(_event())  # the request carries on
    [record] = [r for r in caplog.records if r.name == "fhirbill.audit"]
    assert record.error == "RuntimeError" and record.events == 1  # type: ignore[attr-defined]
    assert "Claim/c1" not in record.getMessage()
