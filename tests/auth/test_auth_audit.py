"""The HIPAA audit trail over real HTTP: one AuditEvent per request with the right fields,
failed writes audited without data, AuditEvents readable by name, and no secrets in logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import requests
from smart_support import (
    PASSWORD,
    Live,
    audit_rows,
    backend_client,
    billing,
    fhir,
    patient_app,
    system_token,
    user_token,
)
from sqlalchemy import func, select

from fhirbill.store.db import read_tx
from fhirbill.store.tables import resources

AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"


def one_event(live: Live, do: Callable[[], requests.Response]) -> tuple[requests.Response, dict[str, Any]]:
    """Run a request; exactly one new AuditEvent must be stored for it."""
    before = len(audit_rows(live))
    r = do()
    new = audit_rows(live)[before:]
    assert len(new) == 1, [(e["subtype"], e.get("entity")) for e in new]
    return r, new[0]


def refs(event: dict[str, Any]) -> list[str]:
    return [e["what"]["reference"] for e in event.get("entity", [])]


def check_rest(event: dict[str, Any], subtype: str, action: str, outcome: str) -> None:
    assert event["resourceType"] == "AuditEvent"
    assert event["type"]["system"] == AUDIT_TYPE and event["type"]["code"] == "rest"
    assert event["subtype"] == [{"system": INTERACTION, "code": subtype}]
    assert event["action"] == action
    assert event["outcome"] == outcome
    assert event["recorded"].endswith("Z")
    assert all(a["network"]["address"] == "127.0.0.1" for a in event["agent"])


def check_client(event: dict[str, Any], client_id: str, user: str | None = None) -> None:
    agent = event["agent"][0]
    assert agent["who"]["identifier"]["value"] == client_id
    if user is None:
        assert len(event["agent"]) == 1 and agent["requestor"] is True
    else:
        person = event["agent"][1]
        assert person["who"]["identifier"]["value"] == user and person["requestor"] is True


def count(live: Live, rt: str) -> int:
    q = select(func.count()).select_from(resources).where(resources.c.res_type == rt)
    with read_tx(live.engine) as conn:
        return int(conn.execute(q).scalar_one())


@pytest.fixture(scope="module")
def clerk(billing_data: Live) -> tuple[str, str]:
    """A backend client with full billing scopes: (client_id, token)."""
    client, key = backend_client(billing_data, "system/*.cruds", name="clerk")
    return client["client_id"], system_token(billing_data, client, key, "system/*.cruds")


@pytest.fixture(scope="module")
def alice_app(billing_data: Live) -> tuple[str, str]:
    """Alice's patient app: (client_id, token)."""
    client = patient_app(billing_data)
    token = user_token(billing_data, client, "alice", "openid fhirUser launch/patient patient/*.cruds")
    return client["client_id"], token["access_token"]


# --- one event per kind of access ----------------------------------------------------------------


def test_read(billing_data: Live, alice_app: tuple[str, str]) -> None:
    cid, token = alice_app
    r, ev = one_event(billing_data, lambda: fhir(billing_data, "GET", "Claim/claim-a", token))
    assert r.status_code == 200
    check_rest(ev, "read", "R", "0")
    check_client(ev, cid, "alice")
    assert ev["agent"][1]["who"]["reference"] == "Patient/pat-a"
    assert refs(ev) == ["Claim/claim-a", "Patient/pat-a"]
    assert ev["entity"][1]["role"]["code"] == "1"  # the patient context
    # the stored event carries no bodies or tokens
    assert token not in json.dumps(ev) and "professional" not in json.dumps(ev)


def test_vread_and_history(billing_data: Live, clerk: tuple[str, str]) -> None:
    cid, token = clerk
    _, ev = one_event(billing_data, lambda: fhir(billing_data, "GET", "Claim/claim-a/_history/1", token))
    check_rest(ev, "vread", "R", "0")
    check_client(ev, cid)
    assert refs(ev) == ["Claim/claim-a"]
    _, ev = one_event(billing_data, lambda: fhir(billing_data, "GET", "Claim/claim-a/_history", token))
    check_rest(ev, "history-instance", "R", "0")


def test_search(billing_data: Live, alice_app: tuple[str, str]) -> None:
    cid, token = alice_app
    r, ev = one_event(
        billing_data, lambda: fhir(billing_data, "GET", "ExplanationOfBenefit?patient=pat-a", token)
    )
    assert r.status_code == 200
    check_rest(ev, "search-type", "E", "0")
    check_client(ev, cid, "alice")
    assert refs(ev)[0] == "ExplanationOfBenefit"
    assert "pat-a" not in json.dumps(ev.get("query", ""))  # no query values recorded
    _, ev = one_event(
        billing_data,
        lambda: fhir(billing_data, "POST", "ExplanationOfBenefit/_search", token, data={"patient": "pat-a"}),
    )
    check_rest(ev, "search-type", "E", "0")


def test_create_update_patch_delete(billing_data: Live, clerk: tuple[str, str]) -> None:
    cid, token = clerk
    claim = {k: v for k, v in billing("a")[1].items() if k not in ("id", "identifier")}
    r, ev = one_event(billing_data, lambda: fhir(billing_data, "POST", "Claim", token, json=claim))
    assert r.status_code == 201
    rid = r.json()["id"]
    check_rest(ev, "create", "C", "0")
    check_client(ev, cid)
    assert refs(ev) == [f"Claim/{rid}"]
    stored = r.json()

    r, ev = one_event(
        billing_data,
        lambda: fhir(billing_data, "PUT", f"Claim/{rid}", token, json={**stored, "status": "draft"}),
    )
    assert r.status_code == 200
    check_rest(ev, "update", "U", "0")
    assert refs(ev) == [f"Claim/{rid}"]

    patch = [{"op": "replace", "path": "/status", "value": "active"}]
    r, ev = one_event(
        billing_data,
        lambda: fhir(
            billing_data,
            "PATCH",
            f"Claim/{rid}",
            token,
            json=patch,
            headers={"Content-Type": "application/json-patch+json"},
        ),
    )
    assert r.status_code == 200, r.text
    check_rest(ev, "patch", "U", "0")

    r, ev = one_event(billing_data, lambda: fhir(billing_data, "DELETE", f"Claim/{rid}", token))
    assert r.status_code == 204
    check_rest(ev, "delete", "D", "0")
    assert refs(ev) == [f"Claim/{rid}"]


def test_conditional_create_names_the_created_resource(billing_data: Live, clerk: tuple[str, str]) -> None:
    _, token = clerk
    acct = {"resourceType": "Account", "status": "active", "subject": [{"reference": "Patient/pat-b"}]}
    headers = {"If-None-Exist": "identifier=urn:test:acct|audit-1"}
    acct["identifier"] = [{"system": "urn:test:acct", "value": "audit-1"}]
    r, ev = one_event(
        billing_data, lambda: fhir(billing_data, "POST", "Account", token, json=acct, headers=headers)
    )
    assert r.status_code == 201
    check_rest(ev, "create", "C", "0")
    assert refs(ev) == [f"Account/{r.json()['id']}"]


def test_operation(billing_data: Live, clerk: tuple[str, str]) -> None:
    _, token = clerk
    r, ev = one_event(billing_data, lambda: fhir(billing_data, "GET", "Claim/claim-a/$validate", token))
    assert r.status_code == 200
    check_rest(ev, "operation", "E", "0")
    assert refs(ev) == ["Claim/claim-a"]


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_batch_and_transaction(billing_data: Live, clerk: tuple[str, str], kind: str) -> None:
    cid, token = clerk
    acct = {"resourceType": "Account", "status": "active", "subject": [{"reference": "Patient/pat-a"}]}
    b = {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {"request": {"method": "GET", "url": "Claim/claim-a"}},
            {"request": {"method": "POST", "url": "Account"}, "resource": acct},
        ],
    }
    r, ev = one_event(billing_data, lambda: fhir(billing_data, "POST", "", token, json=b))
    assert r.status_code == 200, r.text
    check_rest(ev, kind, "E", "0")
    check_client(ev, cid)


def test_a_transaction_event_names_all_it_touched(billing_data: Live, clerk: tuple[str, str]) -> None:
    """Reads by id, searches (by type), new resources by their server ids, and what a conditional
    DELETE removed, resolved when it ran (one that matched nothing names nothing)."""
    _, token = clerk
    tag = {"system": "urn:test:audit", "value": "to-delete"}
    acct = {"resourceType": "Account", "status": "active", "subject": [{"reference": "Patient/pat-a"}]}
    r = fhir(billing_data, "POST", "Account", token, json={**acct, "identifier": [tag]})
    assert r.status_code == 201, r.text
    gone = r.json()["id"]
    entries = [
        {"request": {"method": "GET", "url": "Claim/claim-a"}},
        {"request": {"method": "GET", "url": "Coverage?beneficiary=Patient/pat-a"}},
        {"request": {"method": "POST", "url": "Account"}, "resource": acct},
        {"request": {"method": "DELETE", "url": "Account?identifier=urn:test:audit|to-delete"}},
        {"request": {"method": "DELETE", "url": "Account?identifier=urn:test:audit|nothing"}},
    ]
    b = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    r, ev = one_event(billing_data, lambda: fhir(billing_data, "POST", "", token, json=b))
    assert r.status_code == 200, r.text
    check_rest(ev, "transaction", "E", "0")
    created = r.json()["entry"][2]["response"]["location"].split("/_history")[0]
    assert sorted(refs(ev)) == sorted(["Claim/claim-a", "Coverage", created, f"Account/{gone}"])


def test_refusals_are_audited(billing_data: Live, alice_app: tuple[str, str]) -> None:
    cid, token = alice_app
    r, ev = one_event(billing_data, lambda: fhir(billing_data, "GET", "Claim/claim-b", token))
    assert r.status_code == 403
    check_rest(ev, "read", "R", "4")
    check_client(ev, cid, "alice")
    assert "Claim/claim-b" in refs(ev)
    r, ev = one_event(billing_data, lambda: fhir(billing_data, "GET", "Claim/claim-a"))
    assert r.status_code == 401
    assert ev["outcome"] == "4" and ev["agent"][0]["type"]["text"] == "anonymous"
    assert ev["agent"][0]["network"]["address"] == "127.0.0.1"
    r, ev = one_event(billing_data, lambda: fhir(billing_data, "GET", "Claim/claim-a", "not-a-token"))
    assert r.status_code == 401 and ev["outcome"] == "4"


# --- failed writes: an AuditEvent, no data -------------------------------------------------------


def test_dangling_reference_is_audited_but_not_stored(billing_data: Live, clerk: tuple[str, str]) -> None:
    cid, token = clerk
    claim = {k: v for k, v in billing("a")[1].items() if k not in ("id", "identifier")}
    claim["insurance"] = [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/nowhere"}}]
    before = count(billing_data, "Claim")
    r, ev = one_event(billing_data, lambda: fhir(billing_data, "POST", "Claim", token, json=claim))
    assert r.status_code == 422
    check_rest(ev, "create", "C", "4")
    check_client(ev, cid)
    assert count(billing_data, "Claim") == before
    r, ev = one_event(
        billing_data,
        lambda: fhir(billing_data, "PUT", "Claim/never-stored", token, json={**claim, "id": "never-stored"}),
    )
    assert r.status_code == 422
    check_rest(ev, "update", "U", "4")
    assert count(billing_data, "Claim") == before


def test_forbidden_write_is_audited_but_not_stored(billing_data: Live, alice_app: tuple[str, str]) -> None:
    _, token = alice_app
    claim = {k: v for k, v in billing("b")[1].items() if k not in ("id", "identifier")}
    before = count(billing_data, "Claim")
    r, ev = one_event(billing_data, lambda: fhir(billing_data, "POST", "Claim", token, json=claim))
    assert r.status_code == 403
    check_rest(ev, "create", "C", "4")
    b = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "Claim"}, "resource": billing("a")[1] | {"id": None}},
            {"request": {"method": "POST", "url": "Claim"}, "resource": claim},
        ],
    }
    del b["entry"][0]["resource"]["id"]
    r, ev = one_event(billing_data, lambda: fhir(billing_data, "POST", "", token, json=b))
    assert r.status_code == 403
    check_rest(ev, "transaction", "E", "4")
    assert count(billing_data, "Claim") == before


# --- token requests ------------------------------------------------------------------------------


def test_token_issue_and_failure(billing_data: Live) -> None:
    client, key = backend_client(billing_data, "system/Claim.rs", name="audited")
    before = len(audit_rows(billing_data))
    system_token(billing_data, client, key, "system/Claim.rs")
    new = audit_rows(billing_data)[before:]
    assert len(new) == 1
    ev = new[0]
    assert ev["action"] == "E" and ev["outcome"] == "0"
    assert ev["type"]["code"] == "110114"  # DICOM User Authentication
    assert ev["agent"][0]["who"]["identifier"]["value"] == client["client_id"]
    assert ev["agent"][0]["network"]["address"] == "127.0.0.1"
    r, ev = one_event(
        billing_data,
        lambda: requests.post(
            billing_data.urls["token"],
            data={"grant_type": "client_credentials", "scope": "system/Claim.rs"},
            auth=(client["client_id"], "wrong-secret"),
            timeout=10,
        ),
    )
    assert r.status_code == 401
    assert ev["outcome"] == "4" and "wrong-secret" not in json.dumps(ev)


# --- reading the trail ---------------------------------------------------------------------------


def test_reading_audit_events_by_name(billing_data: Live, clerk: tuple[str, str]) -> None:
    _, token = clerk
    claim = {k: v for k, v in billing("a")[1].items() if k not in ("id", "identifier")}
    rid = fhir(billing_data, "POST", "Claim", token, json=claim).json()["id"]
    assert fhir(billing_data, "GET", f"Claim/{rid}", token).status_code == 200
    assert fhir(billing_data, "GET", "Claim/claim-b", token).status_code == 200
    client, key = backend_client(billing_data, "system/AuditEvent.rs", name="auditor")
    auditor = system_token(billing_data, client, key, "system/AuditEvent.rs")
    billing_data.app.extensions["fhirbill.audit"].flush()
    r = fhir(billing_data, "GET", f"AuditEvent?entity=Claim/{rid}", auditor)
    assert r.status_code == 200, r.text
    found = [e["resource"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]
    assert sorted(e["action"] for e in found) == ["C", "R"]
    assert all(f"Claim/{rid}" in refs(e) for e in found)
    one = found[0]["id"]
    assert fhir(billing_data, "GET", f"AuditEvent/{one}", auditor).json()["id"] == one


# --- logs ----------------------------------------------------------------------------------------


def test_no_tokens_secrets_or_bodies_in_logs(billing_data: Live, caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG, through launches, backend tokens, FHIR reads, searches, writes and refusals."""
    fhirbill_log = logging.getLogger("fhirbill")
    old_level = fhirbill_log.level
    fhirbill_log.addHandler(caplog.handler)  # fhirbill's logger does not propagate to the root
    caplog.set_level(logging.DEBUG)
    fhirbill_log.setLevel(logging.DEBUG)
    logging.getLogger("authlib").setLevel(logging.DEBUG)
    try:
        client = patient_app(billing_data, "openid fhirUser launch/patient offline_access patient/*.cruds")
        token = user_token(
            billing_data, client, "alice", "openid fhirUser launch/patient offline_access patient/*.cruds"
        )
        sym = billing_data.client(
            name="sym", grant_type="client_credentials", secret=True, scope="system/*.cruds"
        )
        backend = requests.post(
            billing_data.urls["token"],
            data={"grant_type": "client_credentials", "scope": "system/*.cruds"},
            auth=(sym["client_id"], sym["client_secret"]),
            timeout=10,
        ).json()["access_token"]
        requests.post(
            billing_data.urls["token"],
            data={"grant_type": "client_credentials", "scope": "system/*.cruds"},
            auth=(sym["client_id"], "a-wrong-secret-value"),
            timeout=10,
        )
        at = token["access_token"]
        marker = "Zebediah-Quux-Body-Marker"
        acct = {
            "resourceType": "Account",
            "status": "active",
            "name": marker,
            "subject": [{"reference": "Patient/pat-a"}],
        }
        assert fhir(billing_data, "GET", "Claim/claim-a", at).status_code == 200
        assert fhir(billing_data, "GET", "Claim?identifier=urn:test:claim|claim-a", at).status_code == 200
        created = fhir(billing_data, "POST", "Account", at, json=acct)
        assert created.status_code == 201
        assert (
            fhir(billing_data, "PUT", f"Account/{created.json()['id']}", at, json=created.json()).status_code
            == 200
        )
        assert fhir(billing_data, "GET", "Claim/claim-b", at).status_code == 403
        assert (
            fhir(
                billing_data,
                "POST",
                "Account",
                backend,
                json={**acct, "subject": [{"reference": "Patient/x"}]},
            ).status_code
            == 422
        )
        assert fhir(billing_data, "GET", f"Account?name={marker}", backend).status_code == 200
        assert (
            requests.get(f"{billing_data.base}/Claim", params={"access_token": at}, timeout=10).status_code
            == 401
        )
        requests.post(
            billing_data.urls["introspect"],
            data={"token": at},
            auth=(sym["client_id"], sym["client_secret"]),
            timeout=10,
        )
        billing_data.app.extensions["fhirbill.audit"].flush()
        # the test's own HTTP client (urllib3) logs the URLs it sends; the server is what is tested
        records = [r for r in caplog.records if not r.name.startswith("urllib3")]
        assert any(r.name.startswith("authlib") or r.name == "fhirbill.auth" for r in records)
        assert any(r.name == "fhirbill.http" for r in records)  # the request log was captured
        text = "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in records)
        for secret in (
            at,
            token["refresh_token"],
            token["id_token"],
            backend,
            sym["client_secret"],
            "a-wrong-secret-value",
            PASSWORD,
            marker,
            "urn:test:claim|claim-a",
            "professional",
        ):
            assert secret not in text, secret[:12]
    finally:
        fhirbill_log.removeHandler(caplog.handler)
        fhirbill_log.setLevel(old_level)
        logging.getLogger("authlib").setLevel(logging.NOTSET)
