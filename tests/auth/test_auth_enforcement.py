"""Enforcement in the FHIR layer over real HTTP: bearer tokens required, scopes per interaction."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from smart_support import Live, backend_client, billing, fhir, patient_app, system_token, user_token
from sqlalchemy import update

from fhirbill.auth.tokens import digest
from fhirbill.store.auth_tables import auth_tokens
from fhirbill.store.db import write_tx


def token_for(live: Live, scope: str, name: str = "backend") -> str:
    client, key = backend_client(live, scope, name=name)
    return system_token(live, client, key, scope)


def new_claim(x: str = "a") -> dict[str, Any]:
    return {k: v for k, v in billing(x)[1].items() if k not in ("id", "identifier")}


# --- bearer tokens -------------------------------------------------------------------------------

PROTECTED = [
    ("GET", "Claim"),
    ("GET", "Claim/claim-a"),
    ("GET", "Claim/claim-a/_history"),
    ("GET", "Claim/claim-a/_history/1"),
    ("GET", "Claim/_history"),
    ("GET", "_history"),
    ("POST", "Claim/_search"),
    ("GET", "Claim/claim-a/$validate"),
    ("GET", "Claim/claim-a/$x12"),
    ("POST", "Claim"),
    ("PUT", "Claim/claim-a"),
    ("PATCH", "Claim/claim-a"),
    ("DELETE", "Claim/claim-a"),
    ("DELETE", "Claim?identifier=claim-a"),
    ("POST", ""),
    ("GET", "AuditEvent"),
    ("GET", "Patient/pat-a"),
    ("GET", "Organization/org-payer"),
]


def _assert_401(r: requests.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer ")
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_fhir_request_needs_a_token(billing_data: Live, method: str, path: str) -> None:
    _assert_401(fhir(billing_data, method, path, json=new_claim() if method in ("POST", "PUT") else None))


@pytest.mark.parametrize(
    "header", ["Bearer not-a-token", "Bearer ", "Basic YWxpY2U6cGFzc3dvcmQ=", "bearer", "Token abc"]
)
def test_bad_authorization_headers(billing_data: Live, header: str) -> None:
    r = requests.get(f"{billing_data.base}/Claim/claim-a", headers={"Authorization": header}, timeout=10)
    _assert_401(r)
    assert "claim-a" not in r.text


def test_metadata_and_discovery_are_open(billing_data: Live) -> None:
    assert requests.get(f"{billing_data.base}/metadata", timeout=10).status_code == 200
    assert requests.get(f"{billing_data.base}/.well-known/smart-configuration", timeout=10).status_code == 200
    assert (
        requests.get(f"{billing_data.base}/.well-known/openid-configuration", timeout=10).status_code == 200
    )


def test_token_in_the_query_string_is_refused(billing_data: Live, admin_token: str) -> None:
    assert fhir(billing_data, "GET", "Claim/claim-a", admin_token).status_code == 200
    r = requests.get(f"{billing_data.base}/Claim/claim-a", params={"access_token": admin_token}, timeout=10)
    _assert_401(r)
    # even alongside a valid header: the URL has already leaked it
    r = fhir(billing_data, "GET", f"Claim/claim-a?access_token={admin_token}", admin_token)
    _assert_401(r)
    r = fhir(billing_data, "POST", "Claim/_search", None, data={"access_token": admin_token})
    assert r.status_code == 401


def test_revoked_token(billing_data: Live) -> None:
    client = patient_app(billing_data)
    token = user_token(billing_data, client, "alice", "launch/patient patient/*.rs")
    assert fhir(billing_data, "GET", "Claim/claim-a", token["access_token"]).status_code == 200
    r = requests.post(
        billing_data.urls["revoke"],
        data={"token": token["access_token"], "client_id": client["client_id"]},
        timeout=10,
    )
    assert r.status_code == 200
    _assert_401(fhir(billing_data, "GET", "Claim/claim-a", token["access_token"]))


def test_expired_token(billing_data: Live) -> None:
    token = token_for(billing_data, "system/Claim.rs")
    expires = int(time.time()) + 2
    with write_tx(billing_data.engine) as conn:
        conn.execute(
            update(auth_tokens).where(auth_tokens.c.token_hash == digest(token)).values(expires_at=expires)
        )
    assert fhir(billing_data, "GET", "Claim/claim-a", token).status_code == 200
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    # The server's token cache never keeps a token past its expiry.
    _assert_401(fhir(billing_data, "GET", "Claim/claim-a", token))


def test_revocation_elsewhere_takes_effect_within_the_cache_ttl(billing_data: Live) -> None:
    token = token_for(billing_data, "system/Claim.rs")
    assert fhir(billing_data, "GET", "Claim/claim-a", token).status_code == 200
    # As `fhirbill clients revoke` or another worker would: straight in the database.
    with write_tx(billing_data.engine) as conn:
        conn.execute(
            update(auth_tokens).where(auth_tokens.c.token_hash == digest(token)).values(revoked=True)
        )
    time.sleep(billing_data.app.extensions["fhirbill"].settings.token_cache_seconds + 0.05)
    _assert_401(fhir(billing_data, "GET", "Claim/claim-a", token))


def test_refresh_token_is_not_an_access_token(billing_data: Live) -> None:
    token = user_token(
        billing_data,
        patient_app(billing_data, "launch/patient offline_access patient/*.rs"),
        "alice",
        "launch/patient offline_access patient/*.rs",
    )
    _assert_401(fhir(billing_data, "GET", "Claim/claim-a", token["refresh_token"]))


# --- scopes per interaction ----------------------------------------------------------------------


def _statuses(live: Live, token: str) -> dict[str, int]:
    """What each interaction on Claim answers for this token."""
    body = {**billing("a")[1]}
    out = {
        "read": fhir(live, "GET", "Claim/claim-a", token).status_code,
        "vread": fhir(live, "GET", "Claim/claim-a/_history/1", token).status_code,
        "search": fhir(live, "GET", "Claim?patient=pat-a", token).status_code,
        "create": fhir(live, "POST", "Claim", token, json=new_claim()).status_code,
        "update": fhir(live, "PUT", "Claim/claim-a", token, json=body).status_code,
    }
    # a throwaway claim to delete (created by an all-powerful token)
    return out


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [
        ("system/Claim.r", {"read", "vread"}),
        ("system/Claim.s", {"search"}),
        ("system/Claim.rs", {"read", "vread", "search"}),
        ("system/Claim.c", {"create"}),
        ("system/Claim.u", {"update"}),
        ("system/Claim.cu", {"create", "update"}),
        ("system/Claim.read", {"read", "vread", "search"}),
        ("system/Claim.write", {"create", "update"}),
        ("system/Claim.*", {"read", "vread", "search", "create", "update"}),
        ("system/*.cruds", {"read", "vread", "search", "create", "update"}),
        ("system/ExplanationOfBenefit.cruds", set()),
    ],
)
def test_scope_letters_per_interaction(billing_data: Live, scope: str, allowed: set[str]) -> None:
    token = token_for(billing_data, scope)
    got = _statuses(billing_data, token)
    for interaction, status in got.items():
        if interaction in allowed:
            assert status in (200, 201), (scope, interaction, status)
        else:
            assert status == 403, (scope, interaction, status)


@pytest.mark.parametrize(
    ("scope", "ok"), [("system/Claim.d", True), ("system/Claim.write", True), ("system/Claim.rus", False)]
)
def test_delete_needs_d(billing_data: Live, admin_token: str, scope: str, ok: bool) -> None:
    created = fhir(billing_data, "POST", "Claim", admin_token, json=new_claim())
    assert created.status_code == 201
    rid = created.json()["id"]
    r = fhir(billing_data, "DELETE", f"Claim/{rid}", token_for(billing_data, scope))
    assert r.status_code == (204 if ok else 403)
    assert fhir(billing_data, "GET", f"Claim/{rid}", admin_token).status_code == (410 if ok else 200)


def test_ehr_creates_claims_but_reads_no_eobs(billing_data: Live) -> None:
    token = token_for(billing_data, "system/Claim.c", name="ehr")
    r = fhir(billing_data, "POST", "Claim", token, json=new_claim("b"))
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert fhir(billing_data, "GET", f"Claim/{rid}", token).status_code == 403
    for path in ("ExplanationOfBenefit/eob-a", "ExplanationOfBenefit", "ExplanationOfBenefit?patient=pat-a"):
        r = fhir(billing_data, "GET", path, token)
        assert r.status_code == 403, path
        assert "eob-a" not in r.text
    # nor through a batch
    b = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "ExplanationOfBenefit/eob-a"}},
            {"request": {"method": "GET", "url": "ExplanationOfBenefit?patient=pat-a"}},
        ],
    }
    r = fhir(billing_data, "POST", "", token, json=b)
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["403", "403"]
    # nor through an include or a chain from the claims it may not search either
    assert fhir(billing_data, "GET", "Claim?_revinclude=ExplanationOfBenefit:claim", token).status_code == 403


def test_a_payer_reads_claim_responses_not_eobs(billing_data: Live) -> None:
    token = token_for(billing_data, "system/ClaimResponse.rs system/Claim.rs", name="payer")
    assert fhir(billing_data, "GET", "ClaimResponse/cr-a", token).status_code == 200
    assert fhir(billing_data, "GET", "ExplanationOfBenefit/eob-a", token).status_code == 403
    # includes are dropped, chains and _has that reach EOBs are refused
    r = fhir(billing_data, "GET", "Claim?_revinclude=ExplanationOfBenefit:claim", token)
    assert r.status_code == 200
    assert {e["resource"]["resourceType"] for e in r.json().get("entry", [])} <= {"Claim", "OperationOutcome"}
    assert (
        fhir(billing_data, "GET", "Claim?_has:ExplanationOfBenefit:claim:status=active", token).status_code
        == 403
    )
    assert fhir(billing_data, "GET", "ClaimResponse?request.patient=pat-a", token).status_code == 200
    assert fhir(billing_data, "GET", "ClaimResponse?patient.identifier=mrn-a", token).status_code == 403


def test_patient_scope_letters(billing_data: Live) -> None:
    scope = "launch/patient patient/ExplanationOfBenefit.r patient/Coverage.s"
    token = user_token(billing_data, patient_app(billing_data, scope), "alice", scope)["access_token"]
    assert fhir(billing_data, "GET", "ExplanationOfBenefit/eob-a", token).status_code == 200
    assert fhir(billing_data, "GET", "ExplanationOfBenefit", token).status_code == 403
    assert fhir(billing_data, "GET", "Coverage", token).status_code == 200
    assert fhir(billing_data, "GET", "Coverage/cov-a", token).status_code == 403
    assert fhir(billing_data, "GET", "Claim/claim-a", token).status_code == 403
    assert fhir(billing_data, "POST", "Claim", token, json=new_claim()).status_code == 403


def test_user_scopes_of_a_patient_user_stay_with_that_patient(billing_data: Live) -> None:
    scope = "openid fhirUser user/*.rs"
    client = patient_app(billing_data, scope)
    token = user_token(billing_data, client, "alice", scope)["access_token"]
    assert fhir(billing_data, "GET", "Claim/claim-a", token).status_code == 200
    assert fhir(billing_data, "GET", "Claim/claim-b", token).status_code == 403
    assert fhir(billing_data, "GET", "_history", token).status_code == 403
    found = fhir(billing_data, "GET", "ExplanationOfBenefit", token).json().get("entry", [])
    assert {e["resource"]["id"] for e in found} == {"eob-a"}


def test_history_counts_nothing_the_token_cannot_see(billing_data: Live) -> None:
    """History totals would count other types' versions (and AuditEvents): they are left out."""
    token = token_for(billing_data, "system/Claim.rs", name="claims-only")
    for path in ("_history", "Claim/_history", "Claim/claim-a/_history"):
        r = fhir(billing_data, "GET", path, token)
        assert r.status_code == 200, path
        body = r.json()
        assert "total" not in body, path
        assert {e["request"]["url"].split("/")[0] for e in body.get("entry", [])} <= {"Claim"}, path
        assert body["entry"], path


def test_server_history_pages_through_every_version_the_token_may_read(billing_data: Live) -> None:
    """Types the token may not read are left out by the query, so pages are full and paging
    reaches the end (it once stopped at the first page that other types had filled)."""
    token = token_for(billing_data, "system/Claim.rs", name="claims-only")
    full = token_for(billing_data, "system/*.rs", name="everything")
    everything = fhir(billing_data, "GET", "_history?_count=1000", full).json()["entry"]
    claims = [e["fullUrl"] + e["response"]["etag"] for e in everything if "/Claim/" in e["fullUrl"]]
    assert len(claims) >= 2 and len(claims) < len(everything)
    seen: list[str] = []
    path = "_history?_count=1"
    while path:
        body = fhir(billing_data, "GET", path, token).json()
        assert len(body["entry"]) == 1
        seen += [e["fullUrl"] + e["response"]["etag"] for e in body["entry"]]
        nxt = [link["url"] for link in body["link"] if link["relation"] == "next"]
        path = nxt[0].split("/fhir/", 1)[1] if nxt else ""
    assert seen == claims


# --- AuditEvent ----------------------------------------------------------------------------------


def test_audit_events_need_a_scope_that_names_them(billing_data: Live) -> None:
    wildcard = token_for(billing_data, "system/*.rs", name="wild")
    for path in ("AuditEvent", "AuditEvent?_count=1", "_history"):
        r = fhir(billing_data, "GET", path, wildcard)
        if path == "_history":
            assert r.status_code == 200
            assert all(e.get("resource", {}).get("resourceType") != "AuditEvent" for e in r.json()["entry"])
        else:
            assert r.status_code == 403, path
    named = token_for(billing_data, "system/AuditEvent.rs", name="auditor")
    billing_data.app.extensions["fhirbill.audit"].flush()
    r = fhir(billing_data, "GET", "AuditEvent?_count=5", named)
    assert r.status_code == 200 and r.json()["entry"]
    some = r.json()["entry"][0]["resource"]["id"]
    assert fhir(billing_data, "GET", f"AuditEvent/{some}", named).status_code == 200
    assert fhir(billing_data, "GET", f"AuditEvent/{some}", wildcard).status_code == 403


def test_audit_events_cannot_be_written_or_deleted(billing_data: Live, admin_token: str) -> None:
    named = token_for(billing_data, "system/AuditEvent.rs", name="auditor")
    billing_data.app.extensions["fhirbill.audit"].flush()
    stored = fhir(billing_data, "GET", "AuditEvent?_count=1", named).json()["entry"][0]["resource"]
    rid = stored["id"]
    changed = {**stored, "outcome": "0", "outcomeDesc": "tampered"}
    fresh = {k: v for k, v in stored.items() if k not in ("id", "meta")}
    patch = [{"op": "replace", "path": "/outcome", "value": "8"}]
    for token in (named, admin_token):
        attempts = [
            fhir(billing_data, "POST", "AuditEvent", token, json=fresh),
            fhir(billing_data, "PUT", f"AuditEvent/{rid}", token, json=changed),
            fhir(billing_data, "PUT", "AuditEvent?_id=" + rid, token, json=changed),
            fhir(
                billing_data,
                "PATCH",
                f"AuditEvent/{rid}",
                token,
                json=patch,
                headers={"Content-Type": "application/json-patch+json"},
            ),
            fhir(billing_data, "DELETE", f"AuditEvent/{rid}", token),
            fhir(billing_data, "DELETE", f"AuditEvent?_id={rid}", token),
        ]
        for r in attempts:
            assert r.status_code in (403, 405), (r.request.method, r.status_code, r.text)
        b = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"request": {"method": "DELETE", "url": f"AuditEvent/{rid}"}},
            ],
        }
        assert fhir(billing_data, "POST", "", token, json=b).status_code in (403, 405)
        b["type"] = "batch"
        r = fhir(billing_data, "POST", "", token, json=b)
        assert r.json()["entry"][0]["response"]["status"] in ("403", "405")
    after = fhir(billing_data, "GET", f"AuditEvent/{rid}", named)
    assert after.status_code == 200
    assert after.json() == stored


CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"


@pytest.mark.parametrize("context", ["patient", "system"])
def test_granular_scopes_limit_reads_as_well_as_searches(billing_data: Live, context: str) -> None:
    """`...ExplanationOfBenefit.rs?type=...|pharmacy`: professional EOBs are neither found nor read."""
    pharmacy = f"{context}/ExplanationOfBenefit.rs?type={CLAIM_TYPE}|pharmacy"
    professional = f"{context}/ExplanationOfBenefit.rs?type={CLAIM_TYPE}|professional"
    tokens = {}
    for name, scope in (("pharmacy", pharmacy), ("professional", professional)):
        if context == "patient":
            full = f"launch/patient {scope}"
            tokens[name] = user_token(billing_data, patient_app(billing_data, full), "alice", full)[
                "access_token"
            ]
        else:
            tokens[name] = token_for(billing_data, scope, name=f"granular-{name}")
    for path in (
        "ExplanationOfBenefit/eob-a",
        "ExplanationOfBenefit/eob-a/_history/1",
        "ExplanationOfBenefit/eob-a/$validate",
    ):
        assert fhir(billing_data, "GET", path, tokens["pharmacy"]).status_code == 403, path
        assert fhir(billing_data, "GET", path, tokens["professional"]).status_code == 200, path
    r = fhir(billing_data, "GET", "ExplanationOfBenefit", tokens["pharmacy"])
    assert r.status_code == 200 and not [
        e for e in r.json().get("entry", []) if e["search"]["mode"] == "match"
    ]
    r = fhir(billing_data, "GET", "ExplanationOfBenefit", tokens["professional"])
    assert "eob-a" in {e["resource"]["id"] for e in r.json()["entry"]}
    b = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "ExplanationOfBenefit/eob-a"}}],
    }
    r = fhir(billing_data, "POST", "", tokens["pharmacy"], json=b)
    assert r.json()["entry"][0]["response"]["status"] == "403"
