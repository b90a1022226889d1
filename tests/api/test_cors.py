"""CORS on the FHIR routes: origins registered for clients (and FHIRBILL_CORS_ORIGINS) only."""

from __future__ import annotations

from typing import Any

from fhirbill.auth.admin import add_client, revoke_client
from fhirbill.store.db import write_tx

APP = "https://app.example"


def _register(server: Any, origin: str) -> str:
    with write_tx(server.engine) as conn:
        return add_client(
            conn,
            name="browser app",
            grant_type="authorization_code",
            redirect_uris=[f"{origin}/callback"],
            origins=[origin],
            public=True,
        )["client_id"]


def test_registered_origin_is_allowed_and_others_are_not(client: Any, server: Any) -> None:
    _register(server, APP)
    r = client.get("/fhir/metadata", headers={"Origin": APP})
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    assert "Origin" in r.headers.getlist("Vary")
    r = client.get("/fhir/metadata", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Origin" in r.headers.getlist("Vary")


def test_origins_are_read_again_once_the_ttl_has_passed(client: Any, server: Any) -> None:
    cid = _register(server, APP)
    assert client.get("/fhir/metadata", headers={"Origin": APP}).headers["Access-Control-Allow-Origin"] == APP
    with write_tx(server.engine) as conn:
        revoke_client(conn, cid)
    # Within the ttl the worker still answers from what it read ...
    assert "Access-Control-Allow-Origin" in client.get("/fhir/metadata", headers={"Origin": APP}).headers
    # ... and once it has passed, from the database again.
    _, origins = client.application.extensions["fhirbill.origins"]
    client.application.extensions["fhirbill.origins"] = (0.0, origins)
    assert "Access-Control-Allow-Origin" not in client.get("/fhir/metadata", headers={"Origin": APP}).headers
