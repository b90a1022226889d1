"""transaction Bundles at the base URL (issue 3): all or nothing, fullUrl rewriting, conditional
entries, the transaction-response, failure outcomes, processing order, limits and bad input."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from fhirbill.store.tables import resource_versions, resources

ACME = "Organization/acme"
LOCATION_RE = re.compile(r"^(?P<type>[A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})/_history/(?P<v>\d+)$")


def counts(server: Any) -> tuple[int, int]:
    """(resources, versions) in the database."""
    with server.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(resources)).scalar_one()
        v = conn.execute(select(func.count()).select_from(resource_versions)).scalar_one()
    return int(n), int(v)


def bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def post_entry(resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        e["fullUrl"] = full_url
    return e


def put_entry(
    resource: dict[str, Any], url: str | None = None, full_url: str | None = None, **request: Any
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "PUT", "url": url or f"{resource['resourceType']}/{resource['id']}", **request},
    }
    if full_url:
        e["fullUrl"] = full_url
    return e


def patient(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": f"MRN{n:03d}"}],
        "name": [{"family": f"Test{n:03d}"}],
        **extra,
    }


def claim(
    patient_ref: str, coverage_ref: str, org_ref: str, encounter_ref: str | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "sequence": 1,
        "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}]},
        "servicedDate": "2026-04-01",
        "net": {"value": 100, "currency": "USD"},
    }
    if encounter_ref:
        item["encounter"] = [{"reference": encounter_ref}]
    return {
        "resourceType": "Claim",
        "status": "active",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]
        },
        "use": "claim",
        "patient": {"reference": patient_ref},
        "created": "2026-04-02",
        "provider": {"reference": org_ref},
        "insurer": {"reference": org_ref},
        "priority": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]
        },
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": coverage_ref}}],
        "item": [item],
        "total": {"value": 100, "currency": "USD"},
    }


def outcome_of(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.json
    body = r.json
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] in ("error", "fatal") and body["issue"][0]["diagnostics"]
    return body  # type: ignore[no-any-return]


@pytest.fixture
def org(client: Any) -> str:
    r = client.put(f"/fhir/{ACME}", json={"resourceType": "Organization", "id": "acme", "name": "Acme"})
    assert r.status_code == 201
    return ACME


# ---------------------------------------------------------------------------------------------
# atomicity


def _fifty(bad: str) -> list[dict[str, Any]]:
    """50 independent entries; entry 39 (the 40th) is bad in the way named."""
    entries = []
    for i in range(50):
        if i % 5 == 2:
            entries.append(put_entry({"resourceType": "Organization", "id": f"org-{i}", "name": f"Org {i}"}))
        else:
            entries.append(post_entry(patient(i), full_url=f"urn:uuid:00000000-0000-4000-8000-{i:012d}"))
    if bad == "invalid":
        entries[39]["resource"]["birthDate"] = "1990-02-31"
    elif bad == "dangling reference":
        entries[39]["resource"]["generalPractitioner"] = [{"reference": "Practitioner/nobody"}]
    elif bad == "stale If-Match":
        entries[39] = put_entry(
            {"resourceType": "Organization", "id": "acme", "name": "Acme renamed"}, ifMatch='W/"7"'
        )
        entries[39]["fullUrl"] = "http://127.0.0.1:8080/fhir/Organization/acme"
    return entries


@pytest.mark.parametrize(
    ("bad", "status"), [("invalid", 400), ("dangling reference", 422), ("stale If-Match", 412)]
)
def test_transaction_with_a_bad_40th_entry_changes_nothing(
    client: Any, server: Any, org: str, bad: str, status: int
) -> None:
    before = counts(server)
    entries = _fifty(bad)
    r = client.post("/fhir", json=bundle("transaction", entries))
    body = outcome_of(r, status)
    issue = body["issue"][0]
    assert any(x.startswith("Bundle.entry[39]") for x in issue["expression"]), issue
    assert entries[39]["fullUrl"] in issue["diagnostics"]
    assert counts(server) == before
    assert client.get("/fhir/Patient", query_string={"identifier": "urn:test:mrn|MRN000"}).json["total"] == 0
    assert client.get("/fhir/Organization/acme").json["name"] == "Acme"


@pytest.mark.parametrize(
    ("bad", "status"), [("invalid", 400), ("dangling reference", 422), ("stale If-Match", 412)]
)
def test_batch_with_the_same_bad_entry_stores_the_other_49(
    client: Any, server: Any, org: str, bad: str, status: int
) -> None:
    before = counts(server)
    r = client.post("/fhir", json=bundle("batch", _fifty(bad)))
    assert r.status_code == 200, r.json
    body = r.json
    assert body["type"] == "batch-response" and len(body["entry"]) == 50
    for i, e in enumerate(body["entry"]):
        if i == 39:
            assert e["response"]["status"].startswith(str(status)), e
            oo = e["response"]["outcome"]
            assert oo["resourceType"] == "OperationOutcome" and oo["issue"][0]["severity"] == "error"
            assert "resource" not in e
        else:
            assert e["response"]["status"] == "201 Created", (i, e)
            assert LOCATION_RE.match(e["response"]["location"])
    assert counts(server) == (before[0] + 49, before[1] + 49)
    total = client.get(
        "/fhir/Patient", query_string={"identifier": "urn:test:mrn|", "_summary": "count"}
    ).json["total"]
    assert total == 39  # 40 Patients, less the bad one (or the one replaced by the stale PUT)


# ---------------------------------------------------------------------------------------------
# fullUrl rewriting, conditional entries, the response


def test_urn_uuid_full_urls_are_rewritten_everywhere(client: Any, server: Any) -> None:
    p, o, c, e, pr = (f"urn:uuid:{n}1111111-2222-4333-8444-555555555555" for n in "abcde")
    ext_practitioner = "http://other.example/fhir/Practitioner/77"
    cl = claim(p, c, o, e)
    cl["careTeam"] = [{"sequence": 1, "provider": {"reference": ext_practitioner}}]
    cl["referral"] = {"reference": "#ref"}
    cl["contained"] = [
        {
            "resourceType": "ServiceRequest",
            "id": "ref",
            "status": "active",
            "intent": "order",
            "subject": {"reference": p},
        }
    ]
    cl["extension"] = [
        {"url": "http://example.org/fhir/StructureDefinition/visit", "valueReference": {"reference": e}}
    ]
    entries = [
        post_entry(cl, "urn:uuid:f1111111-2222-4333-8444-555555555555"),  # before what it refers to
        post_entry(
            {
                "resourceType": "Coverage",
                "status": "active",
                "beneficiary": {"reference": p},
                "payor": [{"reference": o}],
            },
            c,
        ),
        post_entry(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": p},
            },
            e,
        ),
        post_entry(patient(1, generalPractitioner=[{"reference": pr}]), p),
        post_entry({"resourceType": "Organization", "name": "Payer"}, o),
        post_entry({"resourceType": "Practitioner", "name": [{"family": "Lopez"}]}, pr),
        post_entry({"resourceType": "Practitioner", "name": [{"family": "Elsewhere"}]}, ext_practitioner),
    ]
    r = client.post("/fhir", json=bundle("transaction", entries))
    assert r.status_code == 200, r.json
    body = r.json
    assert body["type"] == "transaction-response" and len(body["entry"]) == len(entries)
    ids: dict[str, str] = {}
    for sent, got in zip(entries, body["entry"], strict=True):
        resp = got["response"]
        assert resp["status"] == "201 Created"
        m = LOCATION_RE.match(resp["location"])
        assert m and m["type"] == sent["resource"]["resourceType"] and m["v"] == "1"
        assert resp["etag"] == 'W/"1"' and resp["lastModified"]
        ids[sent["fullUrl"]] = f"{m['type']}/{m['id']}"
    assert len(set(ids.values())) == len(entries)
    stored = {url: client.get(f"/fhir/{ref}").json for url, ref in ids.items()}
    for url, res in stored.items():
        assert "urn:uuid" not in json.dumps(res), url
    cl_stored = stored[entries[0]["fullUrl"]]
    assert cl_stored["patient"]["reference"] == ids[p]
    assert cl_stored["provider"]["reference"] == ids[o] == cl_stored["insurer"]["reference"]
    assert cl_stored["insurance"][0]["coverage"]["reference"] == ids[c]
    assert cl_stored["item"][0]["encounter"][0]["reference"] == ids[e]
    assert cl_stored["extension"][0]["valueReference"]["reference"] == ids[e]
    assert cl_stored["contained"][0]["subject"]["reference"] == ids[p]
    assert cl_stored["careTeam"][0]["provider"]["reference"] == ids[ext_practitioner]
    assert cl_stored["referral"]["reference"] == "#ref"
    assert stored[c]["payor"][0]["reference"] == ids[o]
    assert stored[p]["generalPractitioner"][0]["reference"] == ids[pr]
    # and the index was built from the rewritten references
    found = client.get(
        "/fhir/Claim", query_string={"patient": ids[p], "encounter": ids[e], "_include": "Claim:patient"}
    )
    assert [x["resource"]["id"] for x in found.json["entry"]] == [
        ids[entries[0]["fullUrl"]].split("/")[1],
        ids[p].split("/")[1],
    ]


def test_if_none_exist_and_conditional_put_inside_a_transaction(client: Any, server: Any, org: str) -> None:
    r = client.put("/fhir/Patient/existing", json={"resourceType": "Patient", "id": "existing", **patient(1)})
    assert r.status_code == 201
    before = counts(server)
    u1, u2, u3, u4 = (f"urn:uuid:{n}0000000-0000-4000-8000-000000000000" for n in "1234")

    def encounter(ref: str) -> dict[str, Any]:
        return post_entry(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": ref},
            }
        )

    entries = [
        post_entry(patient(1), u1, ifNoneExist="identifier=urn:test:mrn|MRN001"),  # matches existing
        post_entry(patient(2), u2, ifNoneExist="identifier=urn:test:mrn|MRN002"),  # creates
        put_entry(patient(3), url="Patient?identifier=urn:test:mrn|MRN003", full_url=u4),  # creates
        encounter(u1),
        encounter(u2),
        encounter(u4),
    ]
    r = client.post("/fhir", json=bundle("transaction", entries))
    assert r.status_code == 200, r.json
    resp = [e["response"] for e in r.json["entry"]]
    assert resp[0]["status"] == "200 OK" and resp[0]["location"] == "Patient/existing/_history/1"
    assert resp[1]["status"] == "201 Created" and resp[2]["status"] == "201 Created"
    new2 = LOCATION_RE.match(resp[1]["location"])
    new3 = LOCATION_RE.match(resp[2]["location"])
    assert new2 and new3
    subjects = [
        client.get(f"/fhir/{e['response']['location'].rsplit('/_history', 1)[0]}").json["subject"][
            "reference"
        ]
        for e in r.json["entry"][3:]
    ]
    assert subjects == ["Patient/existing", f"Patient/{new2['id']}", f"Patient/{new3['id']}"]
    assert counts(server) == (before[0] + 5, before[1] + 5)  # 2 Patients and 3 Encounters
    # a conditional update of the existing Patient, referenced by its fullUrl
    entries2 = [
        put_entry(
            {**patient(1), "gender": "female"}, url="Patient?identifier=urn:test:mrn|MRN001", full_url=u3
        ),
        encounter(u3),
    ]
    r = client.post("/fhir", json=bundle("transaction", entries2))
    assert r.status_code == 200, r.json
    resp = [e["response"] for e in r.json["entry"]]
    assert resp[0]["status"] == "200 OK" and resp[0]["location"] == "Patient/existing/_history/2"
    assert resp[0]["etag"] == 'W/"2"'
    enc = client.get(f"/fhir/{resp[1]['location'].rsplit('/_history', 1)[0]}").json
    assert enc["subject"]["reference"] == "Patient/existing"
    assert client.get("/fhir/Patient/existing").json["gender"] == "female"
    # the first bundle again creates only the Encounters
    r = client.post("/fhir", json=bundle("transaction", entries))
    assert r.status_code == 200, r.json
    assert [e["response"]["status"] for e in r.json["entry"][:3]] == ["200 OK"] * 3
    assert counts(server)[0] == before[0] + 6 + 3


def test_conditional_entry_matching_several_fails_the_transaction(client: Any, server: Any) -> None:
    for _ in range(2):
        assert client.post("/fhir/Patient", json=patient(9)).status_code == 201
    before = counts(server)
    entries = [
        post_entry(patient(10)),
        post_entry(
            patient(9),
            "urn:uuid:99999999-0000-4000-8000-000000000000",
            ifNoneExist="identifier=urn:test:mrn|MRN009",
        ),
    ]
    body = outcome_of(client.post("/fhir", json=bundle("transaction", entries)), 412)
    assert body["issue"][0]["expression"][0].startswith("Bundle.entry[1]")
    assert counts(server) == before


def test_processing_order_delete_post_put_get(client: Any, server: Any) -> None:
    tag = "urn:test:order|1"
    r = client.put(
        "/fhir/Patient/doomed",
        json={
            "resourceType": "Patient",
            "id": "doomed",
            "identifier": [{"system": "urn:test:order", "value": "1"}],
        },
    )
    assert r.status_code == 201
    entries = [
        {"request": {"method": "GET", "url": f"Patient?identifier={tag}&_sort=_id"}},
        put_entry(
            {
                "resourceType": "Patient",
                "id": "put-one",
                "identifier": [{"system": "urn:test:order", "value": "1"}],
            }
        ),
        post_entry({"resourceType": "Patient", "identifier": [{"system": "urn:test:order", "value": "1"}]}),
        {"request": {"method": "DELETE", "url": "Patient/doomed"}},
        {"request": {"method": "GET", "url": "Patient/put-one"}},
    ]
    r = client.post("/fhir", json=bundle("transaction", entries))
    assert r.status_code == 200, r.json
    out = r.json["entry"]
    assert [e["response"]["status"][:3] for e in out] == ["200", "201", "201", "204", "200"]
    posted = LOCATION_RE.match(out[2]["response"]["location"])
    assert posted
    # The GETs, listed first and last, ran after every write: they see the PUT and the POST and
    # not the deleted Patient.
    found = out[0]["resource"]
    assert found["type"] == "searchset"
    assert sorted(e["resource"]["id"] for e in found["entry"]) == sorted(["put-one", posted["id"]])
    assert out[4]["resource"]["id"] == "put-one"
    assert client.get("/fhir/Patient/doomed").status_code == 410


def test_transaction_failure_names_the_entry_and_its_full_url(client: Any, server: Any) -> None:
    before = counts(server)
    entries = [post_entry(patient(i), f"urn:uuid:aaaaaaaa-0000-4000-8000-{i:012d}") for i in range(4)]
    entries[2]["resource"]["gender"] = "sometimes"
    body = outcome_of(client.post("/fhir", json=bundle("transaction", entries)), 400)
    issue = body["issue"][0]
    assert issue["expression"][0].startswith("Bundle.entry[2]")
    assert "urn:uuid:aaaaaaaa-0000-4000-8000-000000000002" in issue["diagnostics"]
    assert counts(server) == before


# ---------------------------------------------------------------------------------------------
# limits and bad input


def test_entry_limit_is_413(app: Any, client: Any, server: Any) -> None:
    server.settings = server.settings.with_(max_bundle_entries=5)
    before = counts(server)
    for kind in ("transaction", "batch"):
        r = client.post("/fhir", json=bundle(kind, [post_entry(patient(i)) for i in range(6)]))
        outcome_of(r, 413)
        assert counts(server) == before
    r = client.post("/fhir", json=bundle("transaction", [post_entry(patient(i)) for i in range(5)]))
    assert r.status_code == 200
    assert counts(server) == (before[0] + 5, before[1] + 5)


BAD_INPUT: list[tuple[str, Any, str | None]] = [
    (
        "document bundle",
        {
            "resourceType": "Bundle",
            "type": "document",
            "entry": [{"fullUrl": "urn:uuid:11111111-0000-4000-8000-000000000000", "resource": patient(1)}],
        },
        "Bundle.type",
    ),
    (
        "collection bundle",
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient(1)}]},
        "Bundle.type",
    ),
    ("not a bundle", patient(1), None),
    (
        "nested transaction",
        bundle(
            "transaction",
            [
                post_entry(patient(1)),
                post_entry(
                    bundle("transaction", [post_entry(patient(2))]),
                    "urn:uuid:33333333-0000-4000-8000-000000000000",
                ),
            ],
        ),
        "Bundle.entry[1]",
    ),
    (
        "nested batch in a batch-less transaction",
        bundle(
            "transaction",
            [post_entry(patient(1)), put_entry({**bundle("batch", [post_entry(patient(2))]), "id": "b1"})],
        ),
        "Bundle.entry[1]",
    ),
    (
        "entry without request",
        bundle(
            "transaction",
            [
                post_entry(patient(1)),
                {"fullUrl": "urn:uuid:22222222-0000-4000-8000-000000000000", "resource": patient(2)},
            ],
        ),
        "Bundle.entry[1]",
    ),
    (
        "entry without method",
        bundle(
            "transaction", [post_entry(patient(1)), {"resource": patient(2), "request": {"url": "Patient"}}]
        ),
        "Bundle.entry[1]",
    ),
    (
        "unknown method",
        bundle("transaction", [{"resource": patient(2), "request": {"method": "FROB", "url": "Patient"}}]),
        "Bundle.entry[0]",
    ),
    (
        "type mismatch",
        bundle(
            "transaction", [{"resource": patient(2), "request": {"method": "POST", "url": "Organization"}}]
        ),
        "Bundle.entry[0]",
    ),
    ("entry is not an object", bundle("transaction", [post_entry(patient(1)), "Patient"]), "Bundle.entry[1]"),
    (
        "entry not an array",
        {"resourceType": "Bundle", "type": "transaction", "entry": {"resource": patient(1)}},
        "Bundle.entry",
    ),
]


@pytest.mark.parametrize(("name", "body", "expression"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_bundles_are_a_clear_outcome_and_write_nothing(
    client: Any, server: Any, name: str, body: Any, expression: str | None
) -> None:
    before = counts(server)
    r = client.post("/fhir", json=body)
    oo = outcome_of(r, 400)
    if expression:
        assert any(x.startswith(expression) for i in oo["issue"] for x in i.get("expression", [])), oo
    m = re.fullmatch(r"Bundle\.entry\[(\d+)\]", expression or "")
    failing = body["entry"][int(m[1])] if m else None
    full_urls = [failing["fullUrl"]] if isinstance(failing, dict) and "fullUrl" in failing else []
    for url in full_urls:  # the failing entry is named by its fullUrl too
        assert url in oo["issue"][0]["diagnostics"], oo
    assert counts(server) == before


def test_bundle_type_transaction_stored_as_a_resource_is_not_nested_processing(
    client: Any, server: Any
) -> None:
    """A Bundle of type collection is an ordinary resource inside a transaction."""
    before = counts(server)
    coll = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient(5)}]}
    r = client.post("/fhir", json=bundle("transaction", [post_entry(coll)]))
    assert r.status_code == 200, r.json
    assert counts(server) == (before[0] + 1, before[1] + 1)
    assert client.get("/fhir/Patient", query_string={"_summary": "count"}).json["total"] == 0


# ---------------------------------------------------------------------------------------------
# concurrency over real HTTP


def test_concurrent_transactions_conditionally_creating_one_patient(base_url: str) -> None:
    n = 10
    barrier = threading.Barrier(n)

    def go(i: int) -> tuple[int, Any]:
        u = f"urn:uuid:cccccccc-0000-4000-8000-{i:012d}"
        body = bundle(
            "transaction",
            [
                post_entry(
                    {
                        "resourceType": "Patient",
                        "identifier": [{"system": "urn:race-tx", "value": "7"}],
                        "name": [{"family": f"Racer{i}"}],
                    },
                    u,
                    ifNoneExist="identifier=urn:race-tx|7",
                ),
                post_entry(
                    {
                        "resourceType": "Encounter",
                        "status": "finished",
                        "class": {"code": "AMB"},
                        "subject": {"reference": u},
                    }
                ),
            ],
        )
        barrier.wait()
        r = requests.post(base_url, json=body, headers={"Content-Type": "application/fhir+json"}, timeout=60)
        return r.status_code, r.json()

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(go, range(n)))
    assert [s for s, _ in results] == [200] * n, [b for s, b in results if s != 200]
    statuses = sorted(b["entry"][0]["response"]["status"] for _, b in results)
    assert statuses == ["200 OK"] * (n - 1) + ["201 Created"]
    found = requests.get(f"{base_url}/Patient", params={"identifier": "urn:race-tx|7"}, timeout=30).json()
    assert found["total"] == 1
    pid = found["entry"][0]["resource"]["id"]
    encounters = requests.get(
        f"{base_url}/Encounter", params={"subject": f"Patient/{pid}", "_count": "100"}, timeout=30
    ).json()
    assert encounters["total"] == n


# ---------------------------------------------------------------------------------------------
# entries that resolve to the same resource


def test_repeated_conditional_create_in_one_transaction_makes_one_resource(client: Any, server: Any) -> None:
    """Two entries with the same ifNoneExist are the same Patient, and references to either
    fullUrl point at it (a server that created both would leave duplicates)."""
    u1, u2 = "urn:uuid:d1000000-0000-4000-8000-000000000000", "urn:uuid:d2000000-0000-4000-8000-000000000000"
    cond = "identifier=urn:test:mrn|MRN042"
    entries = [
        post_entry(patient(42), u1, ifNoneExist=cond),
        post_entry(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": u2},
            }
        ),
        post_entry(patient(42), u2, ifNoneExist=cond),
    ]
    r = client.post("/fhir", json=bundle("transaction", entries))
    assert r.status_code == 200, r.json
    resp = [e["response"] for e in r.json["entry"]]
    assert resp[0]["status"] == "201 Created" and resp[2]["status"] == "200 OK"
    assert resp[0]["location"] == resp[2]["location"]
    found = client.get("/fhir/Patient", query_string={"identifier": "urn:test:mrn|MRN042"}).json
    assert found["total"] == 1
    pid = found["entry"][0]["resource"]["id"]
    enc = client.get(f"/fhir/{resp[1]['location'].rsplit('/_history', 1)[0]}").json
    assert enc["subject"]["reference"] == f"Patient/{pid}"


@pytest.mark.parametrize(
    "entries",
    [
        [
            put_entry({"resourceType": "Patient", "id": "twice", "gender": "male"}),
            {"request": {"method": "DELETE", "url": "Patient/twice"}},
        ],
        [
            put_entry({"resourceType": "Patient", "id": "twice", "gender": "male"}),
            put_entry({"resourceType": "Patient", "id": "twice", "gender": "female"}),
        ],
        [
            post_entry(patient(7), ifNoneExist="identifier=urn:test:mrn|MRN007"),  # matches Patient/twice
            put_entry({"resourceType": "Patient", "id": "twice", "gender": "female"}),
        ],
        [
            put_entry(patient(8), url="Patient?identifier=urn:test:mrn|MRN008"),
            put_entry({**patient(8), "gender": "other"}, url="Patient?identifier=urn:test:mrn|MRN008"),
        ],
    ],
    ids=["put-delete", "put-put", "matched-post-put", "same-conditional-put"],
)
def test_entries_writing_the_same_resource_fail_the_transaction(
    client: Any, server: Any, entries: list[dict[str, Any]]
) -> None:
    r = client.put("/fhir/Patient/twice", json={"resourceType": "Patient", "id": "twice", **patient(7)})
    assert r.status_code == 201
    before = counts(server)
    body = outcome_of(client.post("/fhir", json=bundle("transaction", entries)), 400)
    assert body["issue"][0]["expression"][0].startswith("Bundle.entry[1]")
    assert "entry 0" in body["issue"][0]["diagnostics"]
    assert counts(server) == before
    assert client.get("/fhir/Patient/twice").json["meta"]["versionId"] == "1"
