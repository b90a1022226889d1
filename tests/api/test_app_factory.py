"""create_app's test-only switches: without authorization the app keeps no audit trail unless
asked to (`audit=True`, what the bench compares the authorized app with)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from flask import Flask
from sqlalchemy import Engine, select

from fhirbill import create_app
from fhirbill.settings import Settings
from fhirbill.store.tables import resources

PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]}


@pytest.fixture
def audited(app: Flask, settings: Settings, database: tuple[Engine, str]) -> Iterator[Flask]:
    """Beside `app`, whose teardown then empties the database."""
    other = create_app(settings, authorization=False, audit=True)
    srv = other.extensions["fhirbill"]
    srv.engine.dispose()
    srv.engine = database[0]
    yield other
    other.extensions["fhirbill.audit"].flush()  # nothing may reach the next test's database


def _events(engine: Engine) -> list[dict[str, Any]]:
    q = select(resources.c.content).where(resources.c.res_type == "AuditEvent").order_by(resources.c.rid)
    with engine.connect() as conn:
        return [orjson.loads(c) for c in conn.execute(q).scalars()]


def test_without_authorization_nothing_is_audited_by_default(app: Flask, client: Any) -> None:
    assert client.put("/fhir/Patient/p1", json=PATIENT).status_code == 201
    assert client.get("/fhir/Patient/p1").status_code == 200
    app.extensions["fhirbill.audit"].flush()
    assert _events(app.extensions["fhirbill"].engine) == []


def test_audit_without_authorization_records_every_access(audited: Flask) -> None:
    client = audited.test_client()
    engine = audited.extensions["fhirbill"].engine
    assert client.put("/fhir/Patient/p1", json=PATIENT).status_code == 201
    assert len(_events(engine)) == 1  # in the write's own transaction
    assert client.get("/fhir/Patient/p1").status_code == 200
    assert client.get("/fhir/Patient/nope").status_code == 404
    assert client.get("/fhir/metadata").status_code == 200  # open endpoint: not audited
    audited.extensions["fhirbill.audit"].flush()
    events = _events(engine)
    assert [(e["action"], e["subtype"][0]["code"], e["outcome"]) for e in events] == [
        ("U", "update", "0"),
        ("R", "read", "0"),
        ("R", "read", "4"),
    ]
    for e in events:  # no principal: the caller is anonymous, known by its address
        assert [a["type"]["text"] for a in e["agent"]] == ["anonymous"]
        assert e["agent"][0]["network"]["address"] == "127.0.0.1"
    assert [x["what"]["reference"] for x in events[1]["entity"]] == ["Patient/p1"]


def test_an_authorized_app_audits_by_default(settings: Settings) -> None:
    assert create_app(settings).config["FHIRBILL_AUDIT"] is True
