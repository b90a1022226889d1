"""The HIPAA audit trail: one AuditEvent per FHIR request, stored as a FHIR resource.

A successful write stores its AuditEvent in the write's own transaction. Everything else
(reads, searches, refusals, failed writes) goes through a bounded per-process buffer that a
background thread writes in batches, so that reads do not take the database's write lock
one by one. `flush()` drains it (tests, and at exit). Events still queued when a process is
killed outright (SIGKILL) are lost: the price of not writing on every read.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection

from fhirbill.api.server import Server
from fhirbill.store import resources as repo
from fhirbill.store.db import write_tx

log = logging.getLogger("fhirbill.audit")


def store(conn: Connection, srv: Server, events: Iterable[dict[str, Any]]) -> None:
    """Insert AuditEvents (server-built, so not re-validated) in the caller's transaction."""
    repo.create_many(conn, list(events), srv.indexer)


class AuditBuffer:
    """Queue AuditEvents and write them in batches from a daemon thread."""

    def __init__(self, srv: Server, batch: int = 500, capacity: int = 10_000) -> None:
        self.srv = srv
        self.batch = batch
        # Bounded: under sustained load requests wait for the writer instead of memory growing.
        self._q: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        atexit.register(self.flush)

    def put(self, event: dict[str, Any]) -> None:
        """Queue one event (starting the writer thread on first use, after any fork)."""
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                    self._thread.start()
        try:
            self._q.put(event, timeout=10)
        except queue.Full:  # the writer is stuck: record this one from the request's own thread
            self._write([event])

    def _run(self) -> None:
        while True:
            first = self._q.get()
            self._write([first])

    def _write(self, head: list[dict[str, Any]]) -> None:
        events = head
        while len(events) < self.batch:
            try:
                events.append(self._q.get_nowait())
            except queue.Empty:
                break
        if not events:
            return
        try:
            with write_tx(self.srv.engine) as conn:
                store(conn, self.srv, events)
        except Exception as exc:  # keep the writer alive; the events are lost and that is logged
            log.error("audit write failed", extra={"error": type(exc).__name__, "events": len(events)})
        finally:
            for _ in events:
                self._q.task_done()

    def flush(self) -> None:
        """Write everything queued so far, from the calling thread, and wait for any batch the
        writer thread has already taken (otherwise a flush could return before it is stored)."""
        with self._lock:
            while not self._q.empty():
                self._write([])
        self._q.join()
