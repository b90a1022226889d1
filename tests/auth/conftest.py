"""A live fhirbill server on a loopback port, with the SMART authorization server wired in."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from smart_support import PASSWORD, Live, build_app
from werkzeug.serving import make_server

from fhirbill.auth import admin
from fhirbill.settings import Settings
from fhirbill.store.db import write_tx
from fhirbill.store.tables import resources


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp: Path = tmp_path_factory.mktemp("auth")
    port = _free_port()
    settings = Settings(
        instance_dir=tmp,
        database_url=f"sqlite:///{tmp}/t.db",
        base_url=f"http://127.0.0.1:{port}/fhir",
    )
    app, engine, events = build_app(settings)
    with write_tx(engine) as conn:
        for pid in ("pat-a", "pat-b"):
            conn.execute(
                resources.insert().values(
                    res_type="Patient",
                    res_id=pid,
                    version=1,
                    last_updated=datetime(2024, 1, 1),
                    deleted=False,
                    content=json.dumps({"resourceType": "Patient", "id": pid}),
                )
            )
        admin.add_user(conn, "alice", PASSWORD, patient="Patient/pat-a")
        admin.add_user(conn, "bob", PASSWORD, patient="Patient/pat-b")
        admin.add_user(conn, "drsmith", PASSWORD, fhir_user="Practitioner/prac-1")
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    from fhirbill.auth.views import urls

    try:
        yield Live(settings.base_url, urls(settings.base_url), app, engine, events, port)
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
        engine.dispose()
