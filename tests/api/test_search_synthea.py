"""Synthea transaction Bundles through `POST /fhir` (issue 3): every internal reference resolved to
a server id, then the patient-app searches return exactly the sets computed from the files.

The helpers here are shared with test_import_cli.py, which loads the same files through
`fhirbill import`.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select

from fhirbill.fhir.billing import PCN_SYSTEM
from fhirbill.store.tables import idx_quantity, idx_token, resources

SYNTHEA = sorted((Path(__file__).resolve().parents[1] / "data" / "synthea").glob("*.json"))
CUTOFF = datetime(2015, 1, 1)
CLM_ID = "https://bluebutton.cms.gov/resources/variables/clm_id"
SYNTHEA_ID = "https://github.com/synthetichealth/synthea"


def _strip(v: Any) -> Any:
    if isinstance(v, dict):
        out = {
            k: ("*" if k == "reference" and not str(x).startswith("#") else _strip(x))
            for k, x in v.items()
            if k not in ("id", "meta")
        }
        if out.get("identifier") == []:  # only the control number the server added
            del out["identifier"]
        return out
    if isinstance(v, list):
        return [_strip(x) for x in v if not (isinstance(x, dict) and x.get("system") == PCN_SYSTEM)]
    return v


def sig(resource: dict[str, Any]) -> str:
    """A resource's content without id, meta, the server's control number and reference targets."""
    return json.dumps(_strip(resource), sort_keys=True)


def _refs(v: Any) -> list[str]:
    out: list[str] = []
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "reference" and isinstance(x, str) and not x.startswith("#"):
                out.append(x)
            elif k != "contained":
                out += _refs(x)
    elif isinstance(v, list):
        for x in v:
            out += _refs(x)
    return out


def linked(resources: dict[str, dict[str, Any]]) -> Counter[str]:
    """Each resource's signature with the signatures of what its references point at, as a multiset
    (equal for the file, keyed by fullUrl, and for the server, keyed by Type/id, exactly when every
    reference was resolved to the right resource)."""
    return Counter(
        json.dumps([sig(r), [sig(resources[ref]) for ref in _refs(r)]]) for r in resources.values()
    )


def file_resources(path: Path) -> dict[str, dict[str, Any]]:
    return {e["fullUrl"]: e["resource"] for e in json.loads(path.read_text())["entry"]}


def stored_resources(server: Any) -> dict[str, dict[str, Any]]:
    """Every current resource in the database, by Type/id."""
    with server.engine.connect() as conn:
        rows = conn.execute(
            select(resources.c.res_type, resources.c.res_id, resources.c.content).where(
                resources.c.deleted.is_(False)
            )
        ).all()
    return {f"{t}/{i}": orjson.loads(c) for t, i, c in rows}


def _utc(text: str, end: bool = False) -> datetime:
    d = datetime.fromisoformat(text)
    if len(text) == 10 and end:
        d = d.replace(hour=23, minute=59, second=59)
    return d.astimezone(UTC).replace(tzinfo=None) if d.tzinfo else d


def _service_ranges(eob: dict[str, Any]) -> list[tuple[datetime, datetime]]:
    """service-date values: billablePeriod | item.serviced (date or Period), as (start, end)."""
    periods = [eob.get("billablePeriod")] + [i.get("servicedPeriod") for i in eob.get("item", [])]
    out = [(_utc(p["start"]), _utc(p.get("end") or "9999-12-31", True)) for p in periods if p]
    out += [
        (_utc(i["servicedDate"]), _utc(i["servicedDate"], True))
        for i in eob.get("item", [])
        if "servicedDate" in i
    ]
    return out


def expected_eobs(path: Path) -> list[str]:
    """clm_ids of `ExplanationOfBenefit?patient=<id>&service-date=ge2015&_sort=-service-date`,
    computed from the file: some service date range reaches 2015; latest start first."""
    eobs = [r for r in file_resources(path).values() if r["resourceType"] == "ExplanationOfBenefit"]
    hits = [e for e in eobs if any(end >= CUTOFF for _, end in _service_ranges(e))]
    hits.sort(key=lambda e: max(s for s, _ in _service_ranges(e)), reverse=True)
    return [clm_id(e) for e in hits]


def clm_id(eob: dict[str, Any]) -> str:
    return next(i["value"] for i in eob["identifier"] if i["system"] == CLM_ID)


def expected_claims(path: Path) -> tuple[Counter[str], Counter[str]]:
    """(Claims of the patient, Encounters their items point at) as signature multisets."""
    res = file_resources(path)
    claims = [r for r in res.values() if r["resourceType"] == "Claim"]
    encounters = {
        ref
        for c in claims
        for i in c.get("item", [])
        for e in i.get("encounter", [])
        for ref in [e["reference"]]
    }
    return Counter(sig(c) for c in claims), Counter(sig(res[e]) for e in encounters)


def patient_id(client: Any, path: Path) -> str:
    pat = next(r for r in file_resources(path).values() if r["resourceType"] == "Patient")
    uuid = next(i["value"] for i in pat["identifier"] if i.get("system") == SYNTHEA_ID)
    r = client.get("/fhir/Patient", query_string={"identifier": f"{SYNTHEA_ID}|{uuid}"})
    assert r.json["total"] == 1, r.json
    return str(r.json["entry"][0]["resource"]["id"])


def check_loaded(client: Any, server: Any, paths: list[Path]) -> None:
    """Everything in the files is on the server, linked the same way, with no urn:uuid left; the
    two patient-app searches give the sets computed from the files."""
    stored = stored_resources(server)
    sent: dict[str, dict[str, Any]] = {}
    for p in paths:
        sent.update(file_resources(p))
    assert Counter(k.split("/")[0] for k in stored) == Counter(r["resourceType"] for r in sent.values())
    for key, res in stored.items():
        assert "urn:uuid:" not in json.dumps(res), key
        for ref in _refs(res):
            assert ref in stored, f"{key} refers to {ref}, which is not on the server"
    assert linked(stored) == linked(sent)
    for p in paths:
        pid = patient_id(client, p)
        claims, encounters = expected_claims(p)
        r = client.get(
            "/fhir/Claim", query_string={"patient": pid, "_include": "Claim:encounter", "_count": "500"}
        )
        assert r.status_code == 200, r.json
        body = r.json
        matches = [e["resource"] for e in body["entry"] if e["search"]["mode"] == "match"]
        included = [e["resource"] for e in body["entry"] if e["search"]["mode"] == "include"]
        assert body["total"] == len(matches) == sum(claims.values())
        assert Counter(sig(c) for c in matches) == claims
        assert all(e["resourceType"] == "Encounter" for e in included)
        assert Counter(sig(e) for e in included) == encounters, p.name
        r = client.get(
            "/fhir/ExplanationOfBenefit",
            query_string={
                "patient": pid,
                "service-date": "ge2015",
                "_sort": "-service-date",
                "_count": "500",
            },
        )
        assert r.status_code == 200, r.json
        got = [clm_id(e["resource"]) for e in r.json["entry"] if e["search"]["mode"] == "match"]
        want = expected_eobs(p)
        assert got == want, p.name
        assert r.json["total"] == len(want)


def test_expected_sets_are_not_trivial() -> None:
    """The files exercise what the searches should show: EOBs both sides of 2015, one whose billable
    Period only reaches into 2015, and Claims with and without encounters."""
    assert len(SYNTHEA) >= 2
    kermit = next(p for p in SYNTHEA if p.name.startswith("Kermit"))
    eobs = [r for r in file_resources(kermit).values() if r["resourceType"] == "ExplanationOfBenefit"]
    assert 0 < len(expected_eobs(kermit)) < len(eobs)
    straddles = [
        e for e in eobs if e["billablePeriod"]["start"] < "2015" and e["billablePeriod"]["end"] >= "2015"
    ]
    assert straddles and all(clm_id(e) in expected_eobs(kermit) for e in straddles)
    claims, encounters = expected_claims(kermit)
    assert sum(encounters.values()) < sum(claims.values())


def test_synthea_bundles_load_through_post(client: Any, server: Any) -> None:
    for p in SYNTHEA:
        r = client.post("/fhir", data=p.read_bytes(), headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 200, r.json
        body = r.json
        sent = json.loads(p.read_text())["entry"]
        assert body["type"] == "transaction-response" and len(body["entry"]) == len(sent)
        assert all(e["response"]["status"] == "201 Created" for e in body["entry"])
        # each fullUrl became the server id in the response location, and the stored resource
        # refers to exactly those ids
        ids = {
            s["fullUrl"]: e["response"]["location"].rsplit("/_history/", 1)[0]
            for s, e in zip(sent, body["entry"], strict=True)
        }
        for s in sent[:40]:
            stored = client.get(f"/fhir/{ids[s['fullUrl']]}").json
            assert _refs(stored) == [ids.get(ref, ref) for ref in _refs(s["resource"])]
    check_loaded(client, server, SYNTHEA)


def test_synthea_bundle_as_a_batch_cannot_resolve_urns(client: Any, server: Any) -> None:
    """In a batch entries are independent, so urn:uuid references between them do not resolve: the
    entries without references are stored, each of the others fails with its own outcome, and no
    urn:uuid reference reaches the database."""
    p = next(p for p in SYNTHEA if p.name.startswith("Clemente"))
    data = json.loads(p.read_text())
    data["type"] = "batch"
    r = client.post("/fhir", json=data)
    assert r.status_code == 200, r.json
    assert r.json["type"] == "batch-response"
    for sent, got in zip(data["entry"], r.json["entry"], strict=True):
        if any(ref.startswith("urn:uuid:") for ref in _refs(sent["resource"])):
            assert got["response"]["status"].startswith("400"), got
            issue = got["response"]["outcome"]["issue"][0]
            assert sent["fullUrl"] in issue["diagnostics"]
        else:
            assert got["response"]["status"] == "201 Created", got
    stored = stored_resources(server)
    assert 0 < len(stored) < len(data["entry"])
    assert not any("urn:uuid:" in json.dumps(v) for v in stored.values())


def _codes(concept: dict[str, Any] | None) -> set[str]:
    return {c["code"] for c in (concept or {}).get("coding") or []}


def _quantities(obs: dict[str, Any]) -> list[float]:
    parts = [obs, *(obs.get("component") or [])]
    return [p["valueQuantity"]["value"] for p in parts if "valueQuantity" in p]


def test_combo_parameters_read_the_rows_of_their_parts(client: Any, server: Any) -> None:
    """Observation `combo-code` is `code | component-code` (and likewise the other combo parameters):
    it has no index rows of its own, and answers from those two parameters' rows exactly what its
    own rows would, with every modifier, in totals and in sorting."""
    for p in SYNTHEA:
        r = client.post("/fhir", data=p.read_bytes(), headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 200, r.json
    obs = {k.split("/")[1]: v for k, v in stored_resources(server).items() if k.startswith("Observation/")}

    def combo(o: dict[str, Any]) -> set[str]:
        return _codes(o["code"]).union(*(_codes(c["code"]) for c in o.get("component") or []))

    def expect(pred: Any) -> set[str]:
        return {i for i, o in obs.items() if pred(o)}

    def got(query: str) -> set[str]:
        r = client.get(f"/fhir/Observation?{query}&_count=1000&_total=accurate")
        assert r.status_code == 200, r.json
        found = [e["resource"]["id"] for e in r.json.get("entry", []) if e["search"]["mode"] == "match"]
        assert r.json["total"] == len(found) and len(set(found)) == len(found), query
        return set(found)

    bp = expect(lambda o: "8480-6" in combo(o))
    assert bp and not expect(lambda o: "8480-6" in _codes(o["code"]))  # only a component code
    cases = {
        "combo-code=8480-6": bp,
        "combo-code=http://loinc.org|8302-2": expect(lambda o: "8302-2" in combo(o)),
        "combo-code=8480-6,8302-2": expect(lambda o: combo(o) & {"8480-6", "8302-2"}),
        "combo-code:not=8480-6": set(obs) - bp,
        "combo-code:missing=false": set(obs),
        "combo-code:missing=true": set(),
        "combo-value-quantity=gt100": expect(lambda o: any(v > 100 for v in _quantities(o))),
        "combo-value-quantity:missing=true": expect(lambda o: not _quantities(o)),
        "combo-value-concept:missing=false": expect(
            lambda o: (
                "valueCodeableConcept" in o
                or any("valueCodeableConcept" in c for c in o.get("component") or [])
            )
        ),
        "combo-code=8480-6&combo-value-quantity=gt100": expect(
            lambda o: "8480-6" in combo(o) and any(v > 100 for v in _quantities(o))
        ),
    }
    assert all(0 < len(v) < len(obs) for k, v in cases.items() if not k.startswith("combo-code:missing"))
    assert {q: got(q) for q in cases} == cases
    # sorting on a union sorts each Observation on its least (or greatest) code of either part
    for order, pick in (("combo-code", min), ("-combo-code", max)):
        r = client.get(f"/fhir/Observation?_sort={order}&_count=1000")
        keys = [pick(combo(obs[e["resource"]["id"]])) for e in r.json["entry"]]
        assert keys == sorted(keys, reverse=order.startswith("-")) and len(keys) == len(obs)
    with server.engine.connect() as conn:
        own = (
            conn.execute(
                select(func.count()).select_from(idx_token).where(idx_token.c.param.like("combo-%"))
            ).scalar_one()
            + conn.execute(
                select(func.count()).select_from(idx_quantity).where(idx_quantity.c.param.like("combo-%"))
            ).scalar_one()
        )
    assert own == 0
