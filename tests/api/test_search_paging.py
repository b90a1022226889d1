"""Paging through 2,500 ExplanationOfBenefits while other clients keep inserting (issue 3): keyset
cursors give no duplicate and no missing entry, in both the default order and a sort with ties."""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

N = 2500
START = date(2020, 1, 1)


def eob(i: int, day: int) -> dict[str, Any]:
    d = (START + timedelta(days=day)).isoformat()
    return {
        "resourceType": "ExplanationOfBenefit",
        "identifier": [{"system": "urn:test:eob", "value": str(i)}],
        "status": "active",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]
        },
        "use": "claim",
        "patient": {"reference": "Patient/pager"},
        "billablePeriod": {"start": d, "end": d},
        "created": d,
        "insurer": {"reference": "Organization/payer"},
        "provider": {"reference": "Organization/payer"},
        "outcome": "complete",
        "insurance": [{"focal": True, "coverage": {"reference": "Coverage/pager"}}],
    }


def _transaction(client: Any, entries: list[dict[str, Any]]) -> list[str]:
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.json
    return [e["response"]["location"].split("/")[1] for e in r.json["entry"]]


def _posts(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in resources]


@pytest.fixture
def eobs(client: Any) -> dict[str, int]:
    """2,500 EOBs over 40 distinct service days (so ~62 share each day); id -> day."""
    base = [
        {"resourceType": "Patient", "id": "pager"},
        {"resourceType": "Organization", "id": "payer", "name": "Payer"},
        {
            "resourceType": "Coverage",
            "id": "pager",
            "status": "active",
            "beneficiary": {"reference": "Patient/pager"},
            "payor": [{"reference": "Organization/payer"}],
        },
    ]
    setup = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in base
    ]
    days = [(i * 7) % 40 for i in range(N)]
    t = time.perf_counter()
    ids = _transaction(client, setup + _posts([eob(i, d) for i, d in enumerate(days)]))[3:]
    assert time.perf_counter() - t < 60
    return dict(zip(ids, days, strict=True))


def _walk(client: Any, params: dict[str, str], on_page: Any) -> list[dict[str, Any]]:
    """Follow `next` links from the first page, calling on_page(n) after each page."""
    r = client.get("/fhir/ExplanationOfBenefit", query_string=params)
    assert r.status_code == 200, r.json
    body = r.json
    out: list[dict[str, Any]] = []
    pages = 0
    while True:
        out += [e["resource"] for e in body.get("entry", []) if e["search"]["mode"] == "match"]
        pages += 1
        assert pages < 100
        on_page(pages)
        nxt = next((lk["url"] for lk in body["link"] if lk["relation"] == "next"), None)
        if nxt is None:
            return out
        u = urlsplit(nxt)
        r = client.get(u.path, query_string=u.query)
        assert r.status_code == 200, r.json
        body = r.json


def test_paging_2500_eobs_with_inserts_between_pages(client: Any, eobs: dict[str, int]) -> None:
    """One load, three walks (insertion order, a sort with ties, two keys); every walk must return
    each resource that existed when it began exactly once, whatever is inserted meanwhile."""
    existing = dict.fromkeys(eobs)
    rounds = 0
    for sort in (None, "-service-date", "service-date,-_lastUpdated"):
        inserted: list[str] = []

        def insert(page: int, inserted: list[str] = inserted) -> None:
            nonlocal rounds
            rounds += 1
            # each round adds EOBs on the earliest, a middle and the latest service days, and beyond
            new = [eob(10_000 + page * 10 + k, day) for k, day in enumerate((0, 20, 39, 45))]
            inserted.extend(_transaction(client, _posts(new)))

        params = {"patient": "Patient/pager", "_count": "250"}
        if sort:
            params["_sort"] = sort
        seen = _walk(client, params, insert)
        ids = [r["id"] for r in seen]
        assert len(ids) == len(set(ids)), f"{sort}: a resource was returned twice"
        missing = set(existing) - set(ids)
        assert not missing, f"{sort}: {len(missing)} resources that existed before paging were skipped"
        assert set(ids) - set(existing) <= set(inserted)
        assert len(inserted) >= 40
        if sort is None:
            assert ids[: len(existing)] == list(existing)  # insertion order, then the new ones
        else:
            starts = [r["billablePeriod"]["start"] for r in seen]
            assert starts == sorted(starts, reverse=sort.startswith("-")), sort
        existing.update(dict.fromkeys(inserted))

    r = client.get(
        "/fhir/ExplanationOfBenefit",
        query_string={"service-date": "2020-01-01", "_count": "1000", "_total": "accurate"},
    )
    body = r.json
    day0 = [i for i, d in eobs.items() if d == 0]
    assert body["total"] == len(day0) + rounds  # one insert on day 0 per page walked
    assert set(day0) <= {e["resource"]["id"] for e in body["entry"]}


def test_revinclude_cap_is_stated_not_silent(client: Any, eobs: dict[str, int]) -> None:
    """2,500 EOBs point at one Patient: the includes stop at the cap and the Bundle says so."""
    r = client.get(
        "/fhir/Patient", query_string={"_id": "pager", "_revinclude": "ExplanationOfBenefit:patient"}
    )
    assert r.status_code == 200, r.json
    entries = r.json["entry"]
    modes = [e["search"]["mode"] for e in entries]
    included = [e["resource"]["id"] for e in entries if e["search"]["mode"] == "include"]
    assert modes.count("match") == 1 and modes.count("outcome") == 1
    assert 0 < len(included) < N and len(set(included)) == len(included) and set(included) <= set(eobs)
    (oo,) = [e["resource"] for e in entries if e["search"]["mode"] == "outcome"]
    issue = oo["issue"][0]
    assert issue["severity"] == "warning" and str(len(included)) in issue["diagnostics"]
