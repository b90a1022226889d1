"""The RESTful interactions with FHIR R4 http.html semantics."""

from __future__ import annotations

import time
from typing import Any

from helpers import FHIR_JSON, post, put

PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:mrn", "value": "1"}],
    "name": [{"family": "Doe"}],
}


def _loc(r: Any) -> str:
    return str(r.headers["Location"]).split("/fhir/", 1)[1].split("/_history")[0]


def test_create_answers_201_with_location_etag_and_last_modified(client: Any) -> None:
    r = post(client, {**PATIENT, "id": "ignored"})
    assert r.status_code == 201
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Location"].startswith("http://127.0.0.1:8080/fhir/Patient/")
    assert r.headers["Location"].endswith("/_history/1")
    assert r.headers["Last-Modified"].endswith("GMT")
    assert r.json["id"] != "ignored"  # server-assigned
    assert r.json["meta"]["versionId"] == "1"


def test_prefer_return(client: Any) -> None:
    r = post(client, PATIENT, Prefer="return=minimal")
    assert r.status_code == 201 and r.data == b"" and r.headers["Location"]
    r = post(client, PATIENT, Prefer="return=OperationOutcome")
    assert r.json["resourceType"] == "OperationOutcome"
    r = post(
        client,
        {**PATIENT, "meta": {"profile": ["http://example.org/unknown"]}},
        Prefer="return=OperationOutcome",
    )
    assert r.status_code == 201
    assert r.json["issue"][0]["severity"] == "warning"
    assert "not known" in r.json["issue"][0]["diagnostics"]


def test_conditional_create(client: Any) -> None:
    first = post(client, PATIENT, **{"If-None-Exist": "identifier=urn:mrn|1"})
    assert first.status_code == 201
    again = post(client, PATIENT, **{"If-None-Exist": "identifier=urn:mrn|1"})
    assert again.status_code == 200
    assert again.json["id"] == first.json["id"]
    post(client, PATIENT)  # a plain create with the same identifier stays legal
    several = post(client, PATIENT, **{"If-None-Exist": "identifier=urn:mrn|1"})
    assert several.status_code == 412
    bad = post(client, PATIENT, **{"If-None-Exist": "nonsense=1"})
    assert bad.status_code == 400


def test_read_vread_404_410(client: Any) -> None:
    assert client.get("/fhir/Patient/nope").status_code == 404
    r = put(client, {"resourceType": "Patient", "id": "a"})
    assert r.status_code == 201
    assert client.get("/fhir/Patient/a/_history/1").status_code == 200
    assert client.get("/fhir/Patient/a/_history/2").status_code == 404
    assert client.get("/fhir/Patient/a/_history/x").status_code == 404
    assert client.delete("/fhir/Patient/a").status_code == 204
    gone = client.get("/fhir/Patient/a")
    assert gone.status_code == 410 and gone.json["issue"][0]["code"] == "deleted"
    assert client.get("/fhir/Patient/a/_history/2").status_code == 410
    assert client.get("/fhir/Patient/a/_history/1").json["id"] == "a"
    assert client.delete("/fhir/Patient/a").status_code == 204  # idempotent
    assert client.delete("/fhir/Patient/never").status_code == 404


def test_versions_create_update_update_delete(client: Any) -> None:
    bodies = []
    r = post(client, {"resourceType": "Patient", "gender": "male"})
    pid = r.json["id"]
    bodies.append(r.json)
    for g in ("female", "other"):
        r = put(client, {"resourceType": "Patient", "id": pid, "gender": g})
        assert r.status_code == 200
        bodies.append(r.json)
    assert [b["meta"]["versionId"] for b in bodies] == ["1", "2", "3"]
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204
    h = client.get(f"/fhir/Patient/{pid}/_history").json
    assert h["type"] == "history" and h["total"] == 4
    assert [e["request"]["method"] for e in h["entry"]] == ["DELETE", "PUT", "PUT", "POST"]
    assert "resource" not in h["entry"][0]
    for v, body in enumerate(bodies, 1):
        assert client.get(f"/fhir/Patient/{pid}/_history/{v}").json == body


def test_update_as_create_if_match_and_identical_update(client: Any) -> None:
    r = put(client, {"resourceType": "Patient", "id": "mine"})
    assert r.status_code == 201 and r.headers["Location"].endswith("/Patient/mine/_history/1")
    same = put(client, {"resourceType": "Patient", "id": "mine"})
    assert same.status_code == 200 and same.headers["ETag"] == 'W/"1"'  # nothing changed, no new version
    ok = client.put(
        "/fhir/Patient/mine",
        json={"resourceType": "Patient", "id": "mine", "active": True},
        headers={**FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert ok.status_code == 200 and ok.headers["ETag"] == 'W/"2"'
    stale = client.put(
        "/fhir/Patient/mine",
        json={"resourceType": "Patient", "id": "mine", "active": False},
        headers={**FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert stale.status_code == 412
    missing_id = client.put("/fhir/Patient/mine", json={"resourceType": "Patient"}, headers=FHIR_JSON)
    assert missing_id.status_code == 400


def test_conditional_update(client: Any) -> None:
    url = "/fhir/Patient?identifier=urn:mrn|77"
    r = client.put(
        url,
        json={"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "77"}]},
        headers=FHIR_JSON,
    )
    assert r.status_code == 201
    pid = r.json["id"]
    r = client.put(
        url,
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:mrn", "value": "77"}],
            "gender": "female",
        },
        headers=FHIR_JSON,
    )
    assert r.status_code == 200 and r.json["id"] == pid and r.json["meta"]["versionId"] == "2"
    post(client, {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "77"}]})
    r = client.put(url, json={"resourceType": "Patient"}, headers=FHIR_JSON)
    assert r.status_code == 412


def test_patch_honours_if_match(client: Any) -> None:
    put(client, {"resourceType": "Patient", "id": "pp", "gender": "male"})
    ops = [{"op": "replace", "path": "/gender", "value": "female"}]
    hdr = {"Content-Type": "application/json-patch+json"}
    r = client.patch("/fhir/Patient/pp", json=ops, headers={**hdr, "If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.json["gender"] == "female" and r.json["meta"]["versionId"] == "2"
    r = client.patch("/fhir/Patient/pp", json=ops, headers={**hdr, "If-Match": 'W/"1"'})
    assert r.status_code == 412
    r = client.patch(
        "/fhir/Patient/pp", json=[{"op": "replace", "path": "/id", "value": "other"}], headers=hdr
    )
    assert r.status_code == 422
    r = client.patch("/fhir/Patient/pp", json=[{"op": "remove", "path": "/nothing"}], headers=hdr)
    assert r.status_code == 422
    assert client.get("/fhir/Patient/pp").json["meta"]["versionId"] == "2"


def test_type_and_system_history_with_count_and_since(client: Any) -> None:
    for i in range(5):
        time.sleep(0.002 if i == 4 else 0)  # h4 a millisecond after h3: _since takes h4 and later
        put(client, {"resourceType": "Patient", "id": f"h{i}"})
    time.sleep(0.01)
    mark = client.get("/fhir/Patient/h4").json["meta"]["lastUpdated"]
    put(client, {"resourceType": "Patient", "id": "h0", "active": True})
    put(client, {"resourceType": "Organization", "id": "o1", "name": "Acme"})
    page = client.get("/fhir/Patient/_history?_count=2").json
    assert page["total"] == 6 and len(page["entry"]) == 2
    assert page["entry"][0]["fullUrl"].endswith("/Patient/h0")
    seen = [e["fullUrl"] for e in page["entry"]]
    while nxt := [link["url"] for link in page["link"] if link["relation"] == "next"]:
        page = client.get(nxt[0].split("8080", 1)[1]).json
        seen += [e["fullUrl"] for e in page["entry"]]
    assert len(seen) == 6
    since = client.get(f"/fhir/Patient/_history?_since={mark}").json
    assert since["total"] == 2
    everything = client.get("/fhir/_history").json
    assert everything["total"] == 7
    assert client.get("/fhir/_history?_since=yesterday").status_code == 400


def test_search_by_id_last_updated_patient_identifier_status(client: Any) -> None:
    put(client, {"resourceType": "Patient", "id": "s1"})
    put(client, {"resourceType": "Patient", "id": "s2"})
    org = put(client, {"resourceType": "Organization", "id": "payer"}).json
    assert org["id"] == "payer"
    for pid, status, member in (("s1", "active", "A1"), ("s2", "cancelled", "B2"), ("s1", "cancelled", "A3")):
        post(
            client,
            {
                "resourceType": "Coverage",
                "status": status,
                "beneficiary": {"reference": f"Patient/{pid}"},
                "identifier": [{"system": "urn:member", "value": member}],
                "payor": [{"reference": "Organization/payer"}],
            },
        )

    def ids(q: str) -> list[str]:
        b = client.get(f"/fhir/Coverage?{q}").json
        return sorted(
            e["resource"]["identifier"][0]["value"]
            for e in b.get("entry", [])
            if e["search"]["mode"] == "match"
        )

    assert ids("patient=s1") == ["A1", "A3"]
    assert ids("patient=Patient/s1&status=active") == ["A1"]
    assert ids("beneficiary=http://127.0.0.1:8080/fhir/Patient/s2") == ["B2"]
    assert ids("identifier=urn:member|B2") == ["B2"]
    assert ids("identifier=A1,A3") == ["A1", "A3"]
    assert ids("status=cancelled") == ["A3", "B2"]
    assert ids("status:not=cancelled") == ["A1"]
    assert ids("_lastUpdated=ge2020-01-01") == ["A1", "A3", "B2"]
    assert ids("_lastUpdated=lt2020-01-01") == []
    one = client.get("/fhir/Coverage?identifier=A1").json["entry"][0]["resource"]["id"]
    assert ids(f"_id={one}") == ["A1"]
    b = client.get("/fhir/Coverage?patient=s1").json
    assert b["total"] == 2 and b["type"] == "searchset"


def test_validate_operation(client: Any) -> None:
    ok = client.post("/fhir/Patient/$validate", json={"resourceType": "Patient"}, headers=FHIR_JSON)
    assert ok.status_code == 200 and ok.json["issue"][0]["severity"] == "information"
    bad = client.post(
        "/fhir/Patient/$validate", json={"resourceType": "Patient", "gender": "x"}, headers=FHIR_JSON
    )
    assert bad.status_code == 200 and bad.json["issue"][0]["expression"] == ["Patient.gender"]
    wrapped = client.post(
        "/fhir/Patient/$validate",
        headers=FHIR_JSON,
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "resource", "resource": {"resourceType": "Patient", "x": 1}}],
        },
    )
    assert wrapped.json["issue"][0]["expression"] == ["Patient.x"]
    put(client, {"resourceType": "Patient", "id": "v1"})
    stored = client.get("/fhir/Patient/v1/$validate")
    assert stored.status_code == 200 and stored.json["issue"][0]["severity"] == "information"
    unknown = client.get("/fhir/Patient/v1/$validate?profile=http://example.org/nope")
    assert unknown.json["issue"][0]["severity"] == "warning"
    assert client.get("/fhir/Patient/none/$validate").status_code == 404


def test_metadata_is_generated_from_the_registry(client: Any, server: Any) -> None:
    cs = client.get("/fhir/metadata").json
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    types = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert len(types) == 128 and "Claim" in types and "EffectEvidenceSynthesis" not in types
    claim = types["Claim"]
    names = {p["name"] for p in claim["searchParam"]}
    assert {"patient", "identifier", "status", "_id", "_lastUpdated"} <= names
    assert {"validate"} <= {o["name"] for o in claim["operation"]}
    eob = {p["name"] for p in types["ExplanationOfBenefit"]["searchParam"]}
    assert {"service-date", "type", "insurer"} <= eob


def test_health_and_readiness(client: Any) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json["migrations"] == "head"
