"""batch Bundles at the base URL (issue 3): entries run independently, each with its own response
or OperationOutcome, in the order they were sent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from fhirbill.store.tables import resources


def n_resources(server: Any) -> int:
    with server.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(resources)).scalar_one())


def batch(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


def test_batch_entries_succeed_and_fail_on_their_own(client: Any, server: Any) -> None:
    assert (
        client.put(
            "/fhir/Patient/keep", json={"resourceType": "Patient", "id": "keep", "gender": "male"}
        ).status_code
        == 201
    )
    before = n_resources(server)
    entries = [
        {
            "resource": {"resourceType": "Patient", "gender": "female"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": {"resourceType": "Patient", "gender": "nonsense"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {"request": {"method": "GET", "url": "Patient/keep"}},
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {
            "resource": {"resourceType": "Patient", "id": "keep", "gender": "other"},
            "request": {"method": "PUT", "url": "Patient/keep"},
        },
        {
            "resource": {"resourceType": "Patient", "id": "keep", "gender": "other"},
            "request": {"method": "PUT", "url": "Patient/keep", "ifMatch": 'W/"1"'},
        },
        {"fullUrl": "urn:uuid:0f000000-0000-4000-8000-000000000000", "resource": {"resourceType": "Patient"}},
        {"request": {"method": "GET", "url": "Patient?gender=other"}},
        {"request": {"method": "DELETE", "url": "Patient/nobody"}},
        {
            "resource": {
                "resourceType": "Patient",
                "generalPractitioner": [{"reference": "Practitioner/ghost"}],
            },
            "request": {"method": "POST", "url": "Patient"},
        },
    ]
    r = client.post("/fhir", json=batch(entries))
    assert r.status_code == 200, r.json
    out = r.json
    assert out["type"] == "batch-response" and len(out["entry"]) == len(entries)
    status = [e["response"]["status"][:3] for e in out["entry"]]
    assert status == ["201", "400", "200", "404", "200", "412", "400", "200", "404", "422"]
    for i in (1, 3, 5, 6, 8, 9):
        oo = out["entry"][i]["response"]["outcome"]
        assert oo["resourceType"] == "OperationOutcome" and oo["issue"][0]["severity"] == "error", i
        assert oo["issue"][0]["diagnostics"]
    assert any(
        x.startswith("Bundle.entry[6]")
        for x in out["entry"][6]["response"]["outcome"]["issue"][0]["expression"]
    )
    assert out["entry"][2]["resource"]["gender"] == "male"  # read before the later PUT
    # entries run in order: the search (entry 7) sees the PUT of entry 4
    found = out["entry"][7]["resource"]
    assert found["type"] == "searchset" and [e["resource"]["id"] for e in found["entry"]] == ["keep"]
    assert out["entry"][4]["response"]["location"] == "Patient/keep/_history/2"
    assert n_resources(server) == before + 1
    assert client.get("/fhir/Patient/keep").json["gender"] == "other"


def test_batch_conditional_create_and_update(client: Any, server: Any) -> None:
    ident = [{"system": "urn:test:batch", "value": "1"}]
    entries = [
        {
            "resource": {"resourceType": "Patient", "identifier": ident},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:test:batch|1"},
        },
        {
            "resource": {"resourceType": "Patient", "identifier": ident},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:test:batch|1"},
        },
        {
            "resource": {"resourceType": "Patient", "identifier": ident, "gender": "female"},
            "request": {"method": "PUT", "url": "Patient?identifier=urn:test:batch|1"},
        },
        {"request": {"method": "DELETE", "url": "Patient?identifier=urn:test:batch|2"}},
    ]
    r = client.post("/fhir", json=batch(entries))
    assert r.status_code == 200, r.json
    resp = [e["response"] for e in r.json["entry"]]
    assert [x["status"][:3] for x in resp] == ["201", "200", "200", "204"]
    pid = resp[0]["location"].split("/")[1]
    assert resp[1]["location"] == f"Patient/{pid}/_history/1"
    assert resp[2]["location"] == f"Patient/{pid}/_history/2" and resp[2]["etag"] == 'W/"2"'
    found = client.get("/fhir/Patient", query_string={"identifier": "urn:test:batch|1"}).json
    assert found["total"] == 1 and found["entry"][0]["resource"]["gender"] == "female"


def test_batch_get_honours_strict_handling(client: Any) -> None:
    entries = [{"request": {"method": "GET", "url": "Patient?shoe-size=42"}}]
    lenient = client.post("/fhir", json=batch(entries)).json["entry"][0]
    assert lenient["response"]["status"].startswith("200")
    assert [e["search"]["mode"] for e in lenient["resource"].get("entry", [])] == ["outcome"]
