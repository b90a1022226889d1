"""A live fhirbill server on a loopback port, with the SMART authorization server wired in."""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from smart_support import PASSWORD, Live, build_app
from sqlalchemy import text
from werkzeug.serving import make_server

from fhirbill.auth import admin
from fhirbill.settings import Settings
from fhirbill.store.db import make_engine, write_tx
from fhirbill.store.tables import resources


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp: Path = tmp_path_factory.mktemp("auth")
    port = _free_port()
    pg = os.environ.get("FHIRBILL_TEST_DATABASE_URL")
    schema = _pg_schema(pg) if pg else ""
    settings = Settings(
        instance_dir=tmp,
        database_url=_scoped(pg, schema) if pg else f"sqlite:///{tmp}/t.db",
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
        if pg:
            _drop_schema(pg, schema)


def _pg_schema(url: str) -> str:
    """A fresh PostgreSQL schema for the live server (like tests/conftest.py's)."""
    schema = f"auth_{os.getpid()}_{secrets.token_hex(4)}"
    eng = make_engine(url)
    with eng.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    eng.dispose()
    return schema


def _scoped(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def _drop_schema(url: str, schema: str) -> None:
    eng = make_engine(url)
    with eng.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    eng.dispose()


# --- FHIR-layer enforcement fixtures ---------------------------------------------------------


@pytest.fixture(scope="session")
def billing_data(live: Live) -> Live:
    """pat-a's and pat-b's Coverage, Claim, ClaimResponse, ExplanationOfBenefit and Account."""
    from smart_support import load_billing

    load_billing(live)
    return live


@pytest.fixture(scope="session")
def alice(billing_data: Live) -> str:
    """Alice's patient access token (patient/*.cruds, patient context pat-a)."""
    from smart_support import PATIENT_APP_SCOPES, patient_app, user_token

    token = user_token(billing_data, patient_app(billing_data), "alice", PATIENT_APP_SCOPES)
    assert token["patient"] == "pat-a"
    return str(token["access_token"])


@pytest.fixture(scope="session")
def bob(billing_data: Live) -> str:
    """Bob's patient access token (patient/*.cruds, patient context pat-b)."""
    from smart_support import PATIENT_APP_SCOPES, patient_app, user_token

    token = user_token(billing_data, patient_app(billing_data), "bob", PATIENT_APP_SCOPES)
    assert token["patient"] == "pat-b"
    return str(token["access_token"])


@pytest.fixture(scope="session")
def admin_token(billing_data: Live) -> str:
    """A backend service that may do anything to billing data (system/*.cruds)."""
    from smart_support import backend_client, system_token

    client, key = backend_client(billing_data, "system/*.cruds", name="admin-backend")
    return system_token(billing_data, client, key, "system/*.cruds")
