"""Bad input gets a precise OperationOutcome and leaves nothing written."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import FHIR_JSON, put
from sqlalchemy import func, select

from fhirbill.store.tables import resource_versions


def _versions(server: Any) -> int:
    with server.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(resource_versions)).scalar_one())


def _outcome(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.data
    assert r.mimetype == "application/fhir+json"
    body = r.json
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] in ("error", "fatal")
    assert body["issue"][0]["diagnostics"]
    return body  # type: ignore[no-any-return]


@pytest.fixture
def patient(client: Any) -> dict[str, Any]:
    r = put(client, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]})
    assert r.status_code == 201
    return r.json  # type: ignore[no-any-return]


CASES: list[tuple[str, str, str, Any, dict[str, str], int, str | None]] = [
    # (name, method, url, body, headers, status, expected expression)
    ("malformed json", "POST", "/fhir/Patient", b'{"resourceType": "Patient",', FHIR_JSON, 400, None),
    ("empty body", "POST", "/fhir/Patient", b"", FHIR_JSON, 400, None),
    (
        "wrong content type",
        "POST",
        "/fhir/Patient",
        b'{"resourceType":"Patient"}',
        {"Content-Type": "text/plain"},
        415,
        None,
    ),
    (
        "resourceType mismatch",
        "POST",
        "/fhir/Patient",
        {"resourceType": "Organization"},
        FHIR_JSON,
        400,
        None,
    ),
    (
        "id mismatch on PUT",
        "PUT",
        "/fhir/Patient/p1",
        {"resourceType": "Patient", "id": "p2"},
        FHIR_JSON,
        400,
        "Patient.id",
    ),
    (
        "unknown element",
        "POST",
        "/fhir/Patient",
        {"resourceType": "Patient", "nickname": "x"},
        FHIR_JSON,
        400,
        "Patient.nickname",
    ),
    (
        "wrong type",
        "POST",
        "/fhir/Patient",
        {"resourceType": "Patient", "active": "yes"},
        FHIR_JSON,
        400,
        "Patient.active",
    ),
    (
        "impossible date",
        "POST",
        "/fhir/Patient",
        {"resourceType": "Patient", "birthDate": "2023-02-30"},
        FHIR_JSON,
        400,
        "Patient.birthDate",
    ),
    ("unknown resource type", "POST", "/fhir/Bogus", {"resourceType": "Bogus"}, FHIR_JSON, 404, None),
    (
        "invalid id characters",
        "PUT",
        "/fhir/Patient/a_b",
        {"resourceType": "Patient", "id": "a_b"},
        FHIR_JSON,
        400,
        "Patient.id",
    ),
    (
        "bad status code",
        "POST",
        "/fhir/Claim",
        {"resourceType": "Claim", "status": "paid"},
        FHIR_JSON,
        400,
        "Claim.status",
    ),
    (
        "empty array",
        "POST",
        "/fhir/Patient",
        {"resourceType": "Patient", "name": []},
        FHIR_JSON,
        400,
        "Patient.name",
    ),
    (
        "bad reference syntax",
        "POST",
        "/fhir/Coverage",
        {
            "resourceType": "Coverage",
            "status": "active",
            "beneficiary": {"reference": "not a ref"},
            "payor": [{"reference": "Patient/p1"}],
        },
        FHIR_JSON,
        400,
        "Coverage.beneficiary.reference",
    ),
    (
        "dangling reference",
        "POST",
        "/fhir/Coverage",
        {
            "resourceType": "Coverage",
            "status": "active",
            "beneficiary": {"reference": "Patient/nobody"},
            "payor": [{"reference": "Patient/p1"}],
        },
        FHIR_JSON,
        422,
        "Coverage.beneficiary.reference",
    ),
    (
        "wrong reference target type",
        "POST",
        "/fhir/Coverage",
        {
            "resourceType": "Coverage",
            "status": "active",
            "beneficiary": {"reference": "Organization/p1"},
            "payor": [{"reference": "Patient/p1"}],
        },
        FHIR_JSON,
        400,
        "Coverage.beneficiary.reference",
    ),
    (
        "stale If-Match",
        "PUT",
        "/fhir/Patient/p1",
        {"resourceType": "Patient", "id": "p1", "gender": "male"},
        {**FHIR_JSON, "If-Match": 'W/"7"'},
        412,
        None,
    ),
    (
        "patch with wrong content type",
        "PATCH",
        "/fhir/Patient/p1",
        [{"op": "remove", "path": "/name"}],
        FHIR_JSON,
        415,
        None,
    ),
    (
        "patch that breaks the resource",
        "PATCH",
        "/fhir/Patient/p1",
        [{"op": "add", "path": "/birthDate", "value": "1999-02-31"}],
        {"Content-Type": "application/json-patch+json"},
        400,
        None,
    ),
    ("xml requested", "GET", "/fhir/Patient/p1", None, {"Accept": "application/fhir+xml"}, 406, None),
    ("_format xml", "GET", "/fhir/Patient/p1?_format=xml", None, {}, 406, None),
    ("method not allowed", "POST", "/fhir/Patient/p1", {"resourceType": "Patient"}, FHIR_JSON, 405, None),
    ("bad search date", "GET", "/fhir/Patient?birthdate=2024-13-01", None, {}, 400, None),
    ("negative _count", "GET", "/fhir/Patient?_count=-1", None, {}, 400, None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_nothing_changes(
    client: Any, server: Any, patient: dict[str, Any], case: Any
) -> None:
    _name, method, url, body, headers, status, expression = case
    before = _versions(server)
    kwargs: dict[str, Any] = {"headers": headers}
    if isinstance(body, bytes):
        kwargs["data"] = body
    elif body is not None:
        import json

        kwargs["data"] = json.dumps(body)
    r = client.open(url, method=method, **kwargs)
    oo = _outcome(r, status)
    if expression:
        assert any(expression in e for i in oo["issue"] for e in i.get("expression", [])), oo
    assert _versions(server) == before
    assert client.get("/fhir/Patient/p1").json["meta"]["versionId"] == "1"


def test_body_over_the_size_limit_is_413(app: Any, client: Any, server: Any) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 2048
    big = {"resourceType": "Patient", "name": [{"family": "x" * 4096}]}
    r = client.post("/fhir/Patient", json=big, headers=FHIR_JSON)
    _outcome(r, 413)
    assert _versions(server) == 0


def test_every_model_error_is_reported_with_its_path(client: Any) -> None:
    bad = {
        "resourceType": "Claim",
        "status": "active",
        "use": "claim",
        "created": "2024-01-01",
        "patient": {"reference": "Patient/p1"},
        "priority": {"text": "normal"},
        "provider": {"display": "x"},
        "type": {"text": "professional"},
        "insurance": [{"sequence": "one", "focal": True, "coverage": {"display": "c"}}],
    }
    r = client.post("/fhir/Claim", json=bad, headers=FHIR_JSON)
    oo = _outcome(r, 400)
    assert "Claim.insurance[0].sequence" in [e for i in oo["issue"] for e in i.get("expression", [])]
