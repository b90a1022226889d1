"""Search result parameters (issue 3): _sort, _total, _summary, _elements, _include/_revinclude,
POST _search, lenient and strict handling of unknown parameters, malformed values, _count."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from helpers import FHIR_JSON

ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted((ROOT / "seeds").glob("*.json"))
SEED = [e["resource"] for f in SEEDS for e in json.loads(f.read_text())["entry"]]
CLAIMS = {r["id"]: r for r in SEED if r["resourceType"] == "Claim"}


@pytest.fixture
def seeded(client: Any) -> Any:
    for f in SEEDS:
        r = client.post("/fhir", data=f.read_bytes(), headers=FHIR_JSON)
        assert r.status_code == 200, r.json
    return client


def search(client: Any, rt: str, params: list[tuple[str, str]], status: int = 200, **kw: Any) -> Any:
    r = client.get(f"/fhir/{rt}", query_string=params, **kw)
    assert r.status_code == status, r.json
    return r.json


def mode(body: dict[str, Any], m: str) -> list[dict[str, Any]]:
    return [e for e in body.get("entry", []) if e["search"]["mode"] == m]


def keys(entries: list[dict[str, Any]]) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries]


def link(body: dict[str, Any], rel: str) -> str | None:
    return next((lk["url"] for lk in body["link"] if lk["relation"] == rel), None)


def follow(client: Any, url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    r = client.get(parts.path, query_string=parts.query)
    assert r.status_code == 200, r.json
    return r.json  # type: ignore[no-any-return]


def _created(c: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(c["created"])


# ---------------------------------------------------------------------------------------------
# _sort


def test_sort_on_several_keys_with_ties_and_descending(seeded: Any) -> None:
    # patient ascending (ties: Emma has 3 claims, Linda 3), then created descending
    body = search(seeded, "Claim", [("_sort", "patient,-created")])
    got = [e["resource"]["id"] for e in mode(body, "match")]
    expected = sorted(CLAIMS.values(), key=lambda c: (c["patient"]["reference"], -_created(c).timestamp()))
    assert got == [c["id"] for c in expected]
    body = search(seeded, "Claim", [("_sort", "-patient,created")])
    expected = sorted(
        CLAIMS.values(), key=lambda c: (c["patient"]["reference"], -_created(c).timestamp()), reverse=True
    )
    assert [e["resource"]["id"] for e in mode(body, "match")] == [c["id"] for c in expected]


def test_sort_ties_page_consistently(seeded: Any) -> None:
    """Equal sort keys are ordered by a hidden tie-breaker, so pages neither repeat nor skip."""
    whole = [e["resource"]["id"] for e in mode(search(seeded, "Claim", [("_sort", "patient")]), "match")]
    assert len(whole) == len(CLAIMS)
    assert [CLAIMS[i]["patient"]["reference"] for i in whole] == sorted(
        c["patient"]["reference"] for c in CLAIMS.values()
    )
    paged: list[str] = []
    body = search(seeded, "Claim", [("_sort", "patient"), ("_count", "2")])
    while True:
        paged += [e["resource"]["id"] for e in mode(body, "match")]
        nxt = link(body, "next")
        if nxt is None:
            break
        body = follow(seeded, nxt)
    assert paged == whole
    # and backwards through `previous` gives the same pages in reverse
    back: list[str] = []
    while True:
        back = [e["resource"]["id"] for e in mode(body, "match")] + back
        prev = link(body, "previous")
        if prev is None:
            break
        body = follow(seeded, prev)
    assert back == whole


def test_sort_on_id_and_last_updated(seeded: Any) -> None:
    ids = [e["resource"]["id"] for e in mode(search(seeded, "Patient", [("_sort", "-_id")]), "match")]
    assert ids == sorted(ids, reverse=True) and len(ids) == 3
    body = search(seeded, "Claim", [("_sort", "-_lastUpdated,_id")])
    stamps = [(e["resource"]["meta"]["lastUpdated"], e["resource"]["id"]) for e in mode(body, "match")]
    assert [s[0] for s in stamps] == sorted((s[0] for s in stamps), reverse=True)
    r = seeded.get("/fhir/Claim", query_string={"_sort": "nonsense"})
    assert r.status_code == 400


# ---------------------------------------------------------------------------------------------
# _total, _summary, _elements


def test_total_none_and_accurate(seeded: Any) -> None:
    q = [("patient", "Patient/emma-carter"), ("_count", "1")]
    assert "total" not in search(seeded, "Claim", [*q, ("_total", "none")])
    body = search(seeded, "Claim", [*q, ("_total", "accurate")])
    assert body["total"] == 3 and len(mode(body, "match")) == 1
    nxt = link(body, "next")
    assert nxt and "_total=accurate" in nxt
    assert follow(seeded, nxt)["total"] == 3


def test_total_counts_each_live_match_once(client: Any) -> None:
    """The total of a one-parameter search is counted from index rows: a resource with two
    matching values counts once, a deleted one not at all, however the search is written."""
    people = {
        "twice": {"family": "Doe", "given": ["Doeling"]},  # two `name` values starting with "doe"
        "once": {"family": "Doey"},
        "gone": {"family": "Doe"},
        "other": {"family": "Roe"},
    }
    for pid, name in people.items():
        r = client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "name": [name]})
        assert r.status_code == 201
    assert client.delete("/fhir/Patient/gone").status_code == 204
    for params in (
        [("name", "doe")],
        [("name", "doe"), ("_summary", "count")],
        [("name", "doe"), ("_count", "1"), ("_total", "accurate")],
        [("name", "doe"), ("_id", "twice,once,gone")],  # two clauses: counted on resources
    ):
        body = search(client, "Patient", params)
        assert body["total"] == 2, params
    assert search(client, "Patient", [("name:missing", "false")])["total"] == 3


def test_summary_count_and_true(seeded: Any) -> None:
    body = search(seeded, "Claim", [("patient", "Patient/linda-nguyen"), ("_summary", "count")])
    assert body["total"] == 3 and "entry" not in body
    body = search(seeded, "Claim", [("patient", "Patient/linda-nguyen"), ("_summary", "true")])
    assert len(mode(body, "match")) == 3
    for e in mode(body, "match"):
        res = e["resource"]
        assert "item" not in res and "diagnosis" not in res  # not summary elements
        assert res["patient"] == {"reference": "Patient/linda-nguyen"} and res["status"] == "active"
        assert {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
            "code": "SUBSETTED",
        } in res["meta"]["tag"]


def test_elements(seeded: Any) -> None:
    body = search(seeded, "Claim", [("_id", "john-carter-2026-03-10"), ("_elements", "identifier,total")])
    (res,) = [e["resource"] for e in mode(body, "match")]
    assert set(res) == {"resourceType", "id", "meta", "identifier", "total"}
    assert res["total"] == CLAIMS["john-carter-2026-03-10"]["total"]
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])
    assert search(seeded, "Claim", [("_elements", "not an element!")], status=400)


# ---------------------------------------------------------------------------------------------
# _include and _revinclude


def test_include_marks_and_deduplicates(seeded: Any) -> None:
    body = search(seeded, "Claim", [("patient", "emma-carter"), ("_include", "Claim:patient")])
    assert len(mode(body, "match")) == 3
    assert keys(mode(body, "include")) == ["Patient/emma-carter"]  # three claims, one Patient
    assert body["total"] == 3  # included resources do not count
    body = search(
        seeded,
        "Claim",
        [("patient", "emma-carter"), ("_include", "Claim:patient"), ("_include", "Claim:insurer")],
    )
    assert sorted(keys(mode(body, "include"))) == ["Organization/acme-health-plan", "Patient/emma-carter"]
    # typed target
    body = search(
        seeded, "Claim", [("_id", "john-carter-2026-03-10"), ("_include", "Claim:provider:Organization")]
    )
    assert keys(mode(body, "include")) == ["Organization/riverside-family-medicine"]
    body = search(
        seeded, "Claim", [("_id", "john-carter-2026-03-10"), ("_include", "Claim:provider:Practitioner")]
    )
    assert mode(body, "include") == []


def test_include_star_and_revinclude(seeded: Any) -> None:
    claim = CLAIMS["john-carter-2026-03-10"]
    body = search(seeded, "Claim", [("_id", claim["id"]), ("_include", "Claim:*")])
    included = set(keys(mode(body, "include")))
    assert {
        "Patient/john-carter",
        "Organization/riverside-family-medicine",
        "Organization/acme-health-plan",
        "Encounter/john-carter-2026-03-10",
        "Practitioner/maria-lopez",
        "Location/riverside-clinic",
    } == included  # R4 Claim has no `coverage` search parameter, so no Coverage
    assert "Claim/john-carter-2026-03-10" not in included  # a match is not repeated as an include
    body = search(seeded, "Claim", [("_id", claim["id"]), ("_revinclude", "ClaimResponse:request")])
    assert keys(mode(body, "include")) == ["ClaimResponse/john-carter-2026-03-10"]
    body = search(seeded, "Patient", [("_id", "john-carter"), ("_revinclude", "*")])
    rev = set(keys(mode(body, "include")))
    referring = {
        f"{r['resourceType']}/{r['id']}"
        for r in SEED
        if '"Patient/john-carter"' in json.dumps(r) and r["resourceType"] != "Patient"
    }
    assert rev == referring


def test_include_iterate(seeded: Any) -> None:
    base = [("patient", "Patient/linda-nguyen"), ("_include", "ExplanationOfBenefit:coverage")]
    body = search(seeded, "ExplanationOfBenefit", [*base, ("_include:iterate", "Coverage:payor")])
    assert keys(mode(body, "match")) == ["ExplanationOfBenefit/linda-nguyen-2026-08-04"]
    assert sorted(keys(mode(body, "include"))) == ["Coverage/nguyen-lakeshore", "Organization/lakeshore-blue"]
    # without :iterate the second hop does nothing, and the Bundle says so
    body = search(seeded, "ExplanationOfBenefit", [*base, ("_include", "Coverage:payor")])
    assert keys(mode(body, "include")) == ["Coverage/nguyen-lakeshore"]
    (oo,) = mode(body, "outcome")
    assert "iterate" in oo["resource"]["issue"][0]["diagnostics"]
    # revinclude then iterate forward: Patient <- Claim -> Encounter
    body = search(
        seeded,
        "Patient",
        [
            ("_id", "emma-carter"),
            ("_revinclude", "Claim:patient"),
            ("_include:iterate", "Claim:encounter"),
        ],
    )
    inc = keys(mode(body, "include"))
    assert len(inc) == len(set(inc))
    assert sorted(inc) == sorted(
        [f"Claim/{c}" for c, v in CLAIMS.items() if v["patient"]["reference"] == "Patient/emma-carter"]
        + ["Encounter/emma-carter-2026-05-18", "Encounter/emma-carter-2026-06-02"]
    )


def test_include_rejects_non_references(seeded: Any) -> None:
    search(seeded, "Claim", [("_include", "Claim:created")], status=400)
    search(seeded, "Claim", [("_include", "Claim")], status=400)
    search(seeded, "Claim", [("_include", "Nope:patient")], status=400)


# ---------------------------------------------------------------------------------------------
# POST _search, unknown and malformed parameters, _count


def test_post_search_equals_get(seeded: Any) -> None:
    params = [
        ("patient", "Patient/emma-carter,Patient/linda-nguyen"),
        ("created", "ge2026-06"),
        ("_sort", "-created"),
        ("_include", "Claim:patient"),
        ("_count", "3"),
    ]
    got = search(seeded, "Claim", params)
    r = seeded.post(
        "/fhir/Claim/_search",
        data=urlencode(params),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.json
    posted = r.json
    assert keys(posted["entry"]) == keys(got["entry"])
    assert [e["search"] for e in posted["entry"]] == [e["search"] for e in got["entry"]]
    assert posted["total"] == got["total"] == 5
    assert link(posted, "self") == link(got, "self")
    assert (
        follow(seeded, link(posted, "next") or "")["entry"]
        == follow(seeded, link(got, "next") or "")["entry"]
    )


def test_unknown_parameters_lenient_and_strict(seeded: Any) -> None:
    body = search(seeded, "Patient", [("family", "carter"), ("shoe-size", "42"), ("_sort", "given")])
    assert sorted(keys(mode(body, "match"))) == ["Patient/emma-carter", "Patient/john-carter"]
    (oo,) = mode(body, "outcome")
    assert oo["resource"]["resourceType"] == "OperationOutcome"
    assert "shoe-size" in oo["resource"]["issue"][0]["diagnostics"]
    assert "42" not in oo["resource"]["issue"][0]["diagnostics"]
    self_query = dict(parse_qsl(urlsplit(link(body, "self") or "").query))
    assert "shoe-size" not in self_query and self_query["family"] == "carter"
    r = seeded.get(
        "/fhir/Patient",
        query_string={"family": "carter", "shoe-size": "42"},
        headers={"Prefer": "handling=strict"},
    )
    assert r.status_code == 400
    assert r.json["resourceType"] == "OperationOutcome" and "shoe-size" in r.json["issue"][0]["diagnostics"]
    # strict with only known parameters is fine
    r = seeded.get("/fhir/Patient", query_string={"family": "carter"}, headers={"Prefer": "handling=strict"})
    assert r.status_code == 200 and r.json["total"] == 2


@pytest.mark.parametrize(
    ("rt", "params"),
    [
        ("Patient", {"birthdate": "1974-13-45"}),
        ("Patient", {"birthdate": "yesterday"}),
        ("Claim", {"created": "ge2026-02-30"}),
        ("Claim", {"status.name": "x"}),  # chain through a token
        ("Claim", {"created.value": "x"}),  # chain through a date
        ("Claim", {"patient.nonsense": "x"}),
        ("Claim", {"_count": "-1"}),
        ("Claim", {"_count": "ten"}),
        ("ChargeItem", {"factor-override": "lots"}),
        ("Patient", {"gender:missing": "maybe"}),
        ("Patient", {"gender:bogus": "male"}),
        ("Claim", {"_total": "sometimes"}),
        ("Claim", {"_summary": "brief"}),
    ],
)
def test_malformed_values_are_400(seeded: Any, rt: str, params: dict[str, str]) -> None:
    r = seeded.get(f"/fhir/{rt}", query_string=params)
    assert r.status_code == 400, r.json
    body = r.json
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] in ("error", "fatal") and body["issue"][0]["diagnostics"]
    # the same under POST _search
    r = seeded.post(
        f"/fhir/{rt}/_search", data=params, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 400


def test_count_above_maximum_is_lowered_with_a_warning(seeded: Any) -> None:
    body = search(seeded, "Claim", [("_count", "100000")])
    assert len(mode(body, "match")) == len(CLAIMS)
    (oo,) = mode(body, "outcome")
    issue = oo["resource"]["issue"][0]
    assert issue["severity"] == "warning" and "1000" in issue["diagnostics"]
    assert dict(parse_qsl(urlsplit(link(body, "self") or "").query))["_count"] == "1000"
    body = search(seeded, "Claim", [("_count", "0")])
    assert body["total"] == len(CLAIMS) and "entry" not in body


def test_default_page_size_and_links(seeded: Any, client: Any) -> None:
    entries = [
        {
            "resource": {"resourceType": "Patient", "name": [{"family": f"Page{i:02d}"}]},
            "request": {"method": "POST", "url": "Patient"},
        }
        for i in range(45)
    ]
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200
    body = search(seeded, "Patient", [("family", "page")])
    assert body["total"] == 45 and len(mode(body, "match")) == 20
    assert link(body, "first") and link(body, "next") and link(body, "previous") is None
    page2 = follow(seeded, link(body, "next") or "")
    assert len(mode(page2, "match")) == 20 and link(page2, "previous")
    page3 = follow(seeded, link(page2, "next") or "")
    assert len(mode(page3, "match")) == 5 and link(page3, "next") is None
    seen = keys(mode(body, "match") + mode(page2, "match") + mode(page3, "match"))
    assert len(set(seen)) == 45
    r = client.get("/fhir/Patient", query_string={"family": "page", "_cursor": "garbage!"})
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("rt", "sort", "key"),
    [
        ("ChargeItem", "factor-override", ["abc", 1]),
        ("ChargeItem", "factor-override", ["NaN", 1]),
        ("Patient", "birthdate", [5, 1]),
        ("Patient", "birthdate", ["2020-01-01T00:00:00", "x"]),
        ("Patient", "family", [5, 1]),
        ("Patient", "-_lastUpdated", [["nested"], 1]),
        ("Patient", None, ["1"]),
        ("Patient", None, [None]),
        ("Patient", None, [1, 2]),
    ],
)
def test_tampered_cursor_is_400(seeded: Any, rt: str, sort: str | None, key: list[Any]) -> None:
    from fhirbill.api.pages import encode_cursor

    params = {"_cursor": encode_cursor(["n", key])}
    if sort:
        params["_sort"] = sort
    r = seeded.get(f"/fhir/{rt}", query_string=params)
    assert r.status_code == 400, r.json
    assert r.json["issue"][0]["expression"] == ["_cursor"]
