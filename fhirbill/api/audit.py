"""The HIPAA audit trail: one AuditEvent per FHIR request, stored as a FHIR resource.

A successful write stores its AuditEvent in the write's own transaction. Everything else
(reads, searches, refusals, failed writes) goes through a bounded per-process buffer that a
background thread writes in batches, so that reads do not take the database's write lock
one by one. The request thread renders and indexes its event (Python work, tens of
microseconds); the writer thread only inserts. A writer busy with Python would hold the GIL
while request threads wait for it after every database call (the GIL convoy), which cost
more than the writing itself. `flush()` drains the buffer (tests, and at exit). Events still
queued when a process is killed outright (SIGKILL) are lost: the price of not writing on
every read.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection

from fhirbill.api.server import Server
from fhirbill.fhir.ids import new_id
from fhirbill.store import resources as repo
from fhirbill.store.db import write_tx

log = logging.getLogger("fhirbill.audit")


def store(conn: Connection, srv: Server, events: Iterable[dict[str, Any]]) -> None:
    """Insert AuditEvents (server-built, so not re-validated) in the caller's transaction."""
    repo.insert(conn, [draft(srv, e) for e in events])


def draft(srv: Server, event: dict[str, Any]) -> repo.Draft:
    """An AuditEvent ready to insert with other new resources (see `repo.insert`)."""
    return repo.draft(event, new_id(), srv.indexer, srv.engine.dialect)


class AuditBuffer:
    """Collect AuditEvents and store them in batches.

    The request whose event fills a batch (or finds the oldest event `max_wait` seconds old)
    writes it, from its own thread; a timer thread writes whatever is left when traffic stops.
    A background writer doing this under load interleaved its many database calls with the
    request threads' and made every read slower than the writing itself costs.
    """

    def __init__(self, srv: Server, batch: int = 200, max_wait: float = 0.25) -> None:
        self.srv = srv
        self.batch = batch
        self.max_wait = max_wait
        self._pending: list[repo.Draft] = []
        self._oldest = 0.0
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one batch at a time per process
        self._timer: threading.Thread | None = None
        atexit.register(self.flush)

    def put(self, event: dict[str, Any]) -> None:
        """Record one event: queued, and written with its batch."""
        item = draft(self.srv, event)
        now = time.monotonic()
        with self._lock:
            if not self._pending:
                self._oldest = now
            self._pending.append(item)
            due = len(self._pending) >= self.batch or now - self._oldest >= self.max_wait
            taken = self._take() if due else []
        self._ensure_timer()
        if taken:
            self._write(taken)

    def _take(self) -> list[repo.Draft]:
        taken, self._pending = self._pending, []
        return taken

    def _ensure_timer(self) -> None:
        # Started lazily so that it exists in each gunicorn worker (threads do not survive fork).
        if self._timer is None or not self._timer.is_alive():
            with self._lock:
                if self._timer is None or not self._timer.is_alive():
                    self._timer = threading.Thread(target=self._tick, name="audit-flush", daemon=True)
                    self._timer.start()

    def _tick(self) -> None:
        while True:
            time.sleep(self.max_wait)
            with self._lock:
                stale = bool(self._pending) and time.monotonic() - self._oldest >= self.max_wait
                taken = self._take() if stale else []
            if taken:
                self._write(taken)

    def _write(self, events: list[repo.Draft]) -> None:
        try:
            with self._write_lock, write_tx(self.srv.engine) as conn:
                repo.insert(conn, events)
        except Exception as exc:  # a request must not fail for its audit batch; that is logged
            log.error("audit write failed", extra={"error": type(exc).__name__, "events": len(events)})

    def flush(self) -> None:
        """Write everything collected so far and return when it is stored."""
        with self._lock:
            taken = self._take()
        if taken:
            self._write(taken)
        with self._write_lock:  # wait for a batch another thread is writing
            pass
