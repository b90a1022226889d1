"""Search parameter types and modifiers (issue 3) against the official R4 examples and the demo seeds.

Every case states the exact set of ids it expects; where a set is long it is computed straight from
the example files, so a wrong index or a wrong SQL condition shows up as a set difference.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import FHIR_JSON, examples
from test_examples import STUBS

ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted((ROOT / "seeds").glob("*.json"))
EXAMPLES = examples()
BASE = "http://127.0.0.1:8080/fhir"
MRN = "http://fhirbill.dev/fhir/sid/riverside-mrn"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

# Resources the examples and seeds lack, for the types of target they do not cover.
EXTRAS: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "accents",
        "name": [{"family": "Müller-Lüdenscheidt", "given": ["Zoë", "Ångström"]}],
        "gender": "unknown",
    },
    {
        "resourceType": "AuditEvent",
        "id": "instant",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
        "recorded": "2024-03-05T10:30:00.123Z",
        "agent": [{"requestor": True, "who": {"display": "billing clerk"}}],
        "source": {"observer": {"display": "fhirbill"}},
    },
    *[
        {
            "resourceType": "ChargeItem",
            "id": cid,
            "status": "billable",
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}]},
            "subject": {"reference": "Patient/john-carter"},
            "quantity": {"value": qty},
            "factorOverride": factor,
            "priceOverride": {"value": price, "currency": "USD"},
        }
        for cid, qty, factor, price in (("ci-low", 2, 0.25, 12.5), ("ci-high", 10, 1.5, 1500))
    ],
    *[
        {"resourceType": "ValueSet", "id": vid, "url": url, "status": "active"}
        for vid, url in (
            ("vs-billing", "http://example.org/fhir/ValueSet/billing"),
            ("vs-billing-sub", "http://example.org/fhir/ValueSet/billing/sub"),
            ("vs-billingx", "http://example.org/fhir/ValueSet/billingx"),
            ("vs-other", "http://example.org/terminology/other"),
        )
    ],
    # Two Periods whose order by start differs from their order by end (or by midpoint).
    {
        "resourceType": "Encounter",
        "id": "long-stay",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/accents"},
        "period": {"start": "2020-01-05", "end": "2020-12-31"},
    },
    {
        "resourceType": "Encounter",
        "id": "short-stay",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/accents"},
        "period": {"start": "2020-03-01T09:00:00Z", "end": "2020-03-01T10:00:00Z"},
    },
]


def _put_all(client: Any, resources: list[dict[str, Any]]) -> None:
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources
    ]
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.json


def _seed_resources() -> list[dict[str, Any]]:
    out = []
    for f in SEEDS:
        out.extend(e["resource"] for e in json.loads(f.read_text())["entry"])
    return out


SEED_RESOURCES = _seed_resources()
ALL = [*STUBS, *EXAMPLES.values(), *SEED_RESOURCES, *EXTRAS]


@pytest.fixture
def loaded(client: Any) -> Any:
    """Seeds, official examples (with the stubs they refer to) and the extras, in one transaction."""
    for f in SEEDS:
        r = client.post("/fhir", data=f.read_bytes(), headers=FHIR_JSON)
        assert r.status_code == 200, r.json
    _put_all(client, [*STUBS, *EXAMPLES.values(), *EXTRAS])
    return client


def ids(client: Any, path: str, params: list[tuple[str, str]] | None = None) -> set[str]:
    """The ids of the matches of a search (asserting 200 and one page)."""
    rt, _, query = path.partition("?")
    pairs = [tuple(p.split("=", 1)) for p in query.split("&")] if query else []
    pairs += params or []
    r = client.get(f"/fhir/{rt}", query_string=[*pairs, ("_count", "1000")])
    assert r.status_code == 200, (path, r.json)
    body = r.json
    assert not any(lk["relation"] == "next" for lk in body["link"]), path
    outcomes = [e for e in body.get("entry", []) if e["search"]["mode"] == "outcome"]
    assert not outcomes, (path, outcomes)
    found = [e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "match"]
    assert len(found) == len(set(found)), (path, found)
    assert all(e["resource"]["resourceType"] == rt for e in body.get("entry", [])), path
    if "total" in body:
        assert body["total"] == len(found), path
    return set(found)


def where(rt: str, pred: Callable[[dict[str, Any]], bool]) -> set[str]:
    """Ids of the loaded resources of type rt for which pred holds (computed from the files)."""
    return {r["id"] for r in ALL if r["resourceType"] == rt and pred(r)}


def check(client: Any, cases: list[tuple[str, set[str]]]) -> None:
    """Run every case and report all mismatches at once."""
    bad = []
    for path, expected in cases:
        got = ids(client, path)
        if got != expected:
            bad.append(f"{path}: missing {sorted(expected - got)}, unexpected {sorted(got - expected)}")
    assert not bad, "\n".join(bad)


def _idents(r: dict[str, Any]) -> list[dict[str, Any]]:
    return r.get("identifier") or []


# ---------------------------------------------------------------------------------------------
# token


def test_token_code_system_and_code_forms(loaded: Any) -> None:
    check(
        loaded,
        [
            ("Patient?gender=female", where("Patient", lambda r: r.get("gender") == "female")),
            ("Patient?identifier=urn:oid:0.1.2.3.4.5.6.7|654321", {"pat1"}),
            ("Patient?identifier=12345", {"example", "xcda"}),  # any system, exact value
            ("Patient?identifier=1234", set()),
            ("Patient?identifier=|AB60001", {"ihe-pcd"}),  # only values without a system
            ("Patient?identifier=|654321", set()),
            ("Patient?identifier=urn:oid:0.1.2.3.4.5.6.7|", {"pat1", "pat2", "pat3", "pat4"}),
            (f"Patient?identifier={MRN}|RFM100232", {"emma-carter"}),
            (f"Patient?identifier={MRN}|", {"john-carter", "emma-carter", "linda-nguyen"}),
            ("Patient?identifier=http://example.org/other|RFM100232", set()),
            # Coding with a system, CodeableConcept, boolean
            (
                "ExplanationOfBenefit?type=http://terminology.hl7.org/CodeSystem/claim-type|professional",
                {"john-carter-2026-03-10", "linda-nguyen-2026-08-04"},
            ),
            (
                "Coverage?type=http://terminology.hl7.org/CodeSystem/v3-ActCode|HIP",
                {"carter-acme-2026", "carter-acme-2026-emma", "nguyen-lakeshore"},
            ),
            ("ExplanationOfBenefit?type=oral", {"EB3500", "EB3501"}),
            ("Patient?deceased=true", {"pat3", "pat4"}),
            ("Claim?use=claim&patient=Patient/emma-carter", {e for e in _claims_of("emma-carter")}),
        ],
    )


def _claims_of(patient: str) -> set[str]:
    return where("Claim", lambda r: r["patient"].get("reference") == f"Patient/{patient}")


def test_token_not_and_missing(loaded: Any) -> None:
    all_patients = where("Patient", lambda r: True)
    check(
        loaded,
        [
            # :not includes resources with no value at all
            ("Patient?gender:not=male", where("Patient", lambda r: r.get("gender") != "male")),
            (
                "Patient?gender:not=male,female",
                where("Patient", lambda r: r.get("gender") not in ("male", "female")),
            ),
            ("Patient?gender:missing=true", where("Patient", lambda r: "gender" not in r)),
            ("Patient?gender:missing=false", where("Patient", lambda r: "gender" in r)),
            ("Patient?identifier:missing=true", where("Patient", lambda r: not _idents(r))),
            (f"Patient?identifier:not={MRN}|RFM100231", all_patients - {"john-carter"}),
            ("Patient?gender:missing=true&gender:missing=false", set()),
        ],
    )
    assert "ihe-pcd" in where("Patient", lambda r: "gender" not in r)  # the case is not vacuous


def test_token_text(loaded: Any) -> None:
    check(
        loaded,
        [
            # CodeableConcept.text, case-insensitive starts-with
            ("Encounter?type:text=established", {"john-carter-2026-03-10", "linda-nguyen-2026-08-04"}),
            ("Encounter?type:text=SICK", {"emma-carter-2026-05-18"}),
            ("Encounter?type:text=visit", set()),  # starts-with, not contains
            ("Encounter?type:text=emergency department", {"linda-nguyen-2026-09-14-ed"}),
        ],
    )


def test_identifier_of_type(loaded: Any) -> None:
    check(
        loaded,
        [
            (f"Patient?identifier:of-type={V2_0203}|MR|12345", {"example", "xcda"}),
            (f"Patient?identifier:of-type={V2_0203}|SS|444222222", {"mom", "genetics-example1"}),
            (f"Patient?identifier:of-type={V2_0203}|MR|444222222", set()),
            (f"Patient?identifier:of-type={V2_0203}|MR|RFM100377", {"linda-nguyen"}),
            (
                f"Coverage?identifier:of-type={V2_0203}|MB|ACM884512301",
                {"carter-acme-2026", "carter-acme-2026-emma"},
            ),
        ],
    )
    r = loaded.get("/fhir/Patient", query_string={"identifier:of-type": "MR|12345"})
    assert r.status_code == 400, r.json


# ---------------------------------------------------------------------------------------------
# reference


def test_reference_forms(loaded: Any) -> None:
    emma = _claims_of("emma-carter")
    linda = _claims_of("linda-nguyen")
    assert len(emma) == 3 and len(linda) == 3
    check(
        loaded,
        [
            ("Claim?patient=Patient/emma-carter", emma),
            ("Claim?patient=emma-carter", emma),  # bare id
            (f"Claim?patient={BASE}/Patient/linda-nguyen", linda),  # absolute URL on this server
            ("Claim?patient=Patient/emma-carter,Patient/linda-nguyen", emma | linda),
            ("Claim?patient=http://elsewhere.example/fhir/Patient/emma-carter", set()),
            (
                "Coverage?payor:Organization=acme-health-plan",
                {"carter-acme-2026", "carter-acme-2026-emma"},
            ),
            ("Coverage?payor:Patient=acme-health-plan", set()),
            (
                "Coverage?payor=Organization/2",
                where("Coverage", lambda r: {"reference": "Organization/2"} in r.get("payor", [])),
            ),
            # an external reference is searchable by its URL
            ("Coverage?policy-holder=http://benefitsinc.com/FHIR/Organization/CBI35", {"9876B1"}),
            ("Patient?link=Patient/pat2", {"pat1"}),
        ],
    )
    r = loaded.get("/fhir/Claim", query_string={"patient": "Organization/acme-health-plan"})
    assert r.status_code == 400  # not a target type of Claim.patient


def test_reference_missing(loaded: Any) -> None:
    def has_encounter(r: dict[str, Any]) -> bool:
        return any(i.get("encounter") for i in r.get("item", []))

    check(
        loaded,
        [
            ("Claim?patient=linda-nguyen&encounter:missing=true", {"linda-nguyen-2026-09-14-ed"}),
            ("Claim?encounter:missing=true", where("Claim", lambda r: not has_encounter(r))),
            ("Claim?encounter:missing=false", where("Claim", has_encounter)),
            # a Reference with only a display has no literal reference to search on
            (
                "Patient?organization:missing=true",
                where("Patient", lambda r: "reference" not in r.get("managingOrganization", {})),
            ),
        ],
    )


def test_chained_references(loaded: Any) -> None:
    check(
        loaded,
        [
            (f"Claim?patient.identifier={MRN}|RFM100232", _claims_of("emma-carter")),
            (f"Claim?patient.identifier={MRN}|NOPE", set()),
            ("Claim?patient.name=nguyen", _claims_of("linda-nguyen")),
            (
                "Claim?patient:Patient.birthdate=lt1990",
                _claims_of("john-carter") | _claims_of("linda-nguyen"),
            ),
            ("ExplanationOfBenefit?coverage.payor=Organization/lakeshore-blue", {"linda-nguyen-2026-08-04"}),
            ("ExplanationOfBenefit?coverage.payor=Organization/acme-health-plan", {"john-carter-2026-03-10"}),
            ("ExplanationOfBenefit?coverage.payor=Organization/2", {"EB3500", "EB3501"}),
            (
                "Encounter?subject.gender=female&subject.birthdate=ge2000",
                {"emma-carter-2026-05-18", "emma-carter-2026-06-02"},
            ),
        ],
    )


def test_reverse_chaining_has(loaded: Any) -> None:
    check(
        loaded,
        [
            (
                "Patient?_has:ExplanationOfBenefit:patient:insurer=Organization/lakeshore-blue",
                {"linda-nguyen"},
            ),
            ("Patient?_has:Encounter:subject:type:text=sick", {"emma-carter"}),
            (
                "Patient?_has:Claim:patient:identifier=urn:fhirbill:patient-control-number|RFM-000101",
                {"john-carter"},
            ),
            ("Organization?_has:Coverage:payor:beneficiary=Patient/emma-carter", {"acme-health-plan"}),
            ("Patient?_has:Claim:patient:identifier=urn:fhirbill:patient-control-number|NONE", set()),
        ],
    )


# ---------------------------------------------------------------------------------------------
# date: date, dateTime, instant and Period targets


def test_date_against_date_target(loaded: Any) -> None:
    def born(pred: Callable[[str], bool]) -> set[str]:
        return where("Patient", lambda r: "birthDate" in r and pred(r["birthDate"]))

    check(
        loaded,
        [
            ("Patient?birthdate=1974", {"example", "ch-example"}),
            ("Patient?birthdate=1974-12", {"example", "ch-example"}),
            ("Patient?birthdate=1974-12-25", {"example", "ch-example"}),
            ("Patient?birthdate=eq1974-12-24", set()),
            ("Patient?birthdate=1974-12-25T10:00:00Z", set()),  # a day is not within a second
            ("Patient?birthdate=ne1974-12-25", born(lambda d: d != "1974-12-25")),
            ("Patient?birthdate=lt1944-11-17", born(lambda d: d < "1944-11-17")),
            ("Patient?birthdate=le1944-11-17", born(lambda d: d <= "1944-11-17")),
            ("Patient?birthdate=gt2017-05-15", born(lambda d: d > "2017-05-15")),
            ("Patient?birthdate=ge2017-05-15", born(lambda d: d >= "2017-05-15")),
            ("Patient?birthdate=gt2017-05", born(lambda d: d >= "2017-06")),
            ("Patient?birthdate=sa1995", born(lambda d: d >= "1996")),
            ("Patient?birthdate=eb1933", born(lambda d: d < "1933")),
            # ap: within 10% of the gap between now and the value (about a year here)
            ("Patient?birthdate=ap2015-07-20", {"emma-carter"}),
            ("Patient?birthdate=ge1960&birthdate=lt1970", born(lambda d: "1960" <= d < "1970")),
        ],
    )


def test_date_against_datetime_target(loaded: Any) -> None:
    # Claim/john-carter-2026-03-10 was created 2026-03-11T10:02:00-05:00 (15:02:00Z)
    jc = {"john-carter-2026-03-10"}
    check(
        loaded,
        [
            ("Claim?created=2026-03-11", jc),
            ("Claim?created=2026-03", jc),
            ("Claim?created=2026-03-11T15:02:00Z", jc),
            ("Claim?created=2026-03-11T10:02:00-05:00", jc),
            ("Claim?created=2026-03-11T15:02Z", jc),  # minute precision covers the second
            ("Claim?created=2026-03-11T15:03:00Z", set()),
            ("Claim?created=gt2026-03-11T15:02:00Z&created=lt2026-05", set()),
            ("Claim?created=ge2026-03-11T15:02:00Z&created=lt2026-05", jc),
            ("Claim?created=le2026-03-11T15:01:59Z", where("Claim", lambda r: r["created"][:4] < "2026")),
            (
                "Claim?created=gt2026-09-16T12:44:59Z",
                {"linda-nguyen-2026-09-14-ed"},
            ),  # 07:45-05:00 is 12:45Z
            ("Claim?created=gt2026-09-16T12:45:00Z", set()),
        ],
    )


def test_date_against_instant_target(loaded: Any) -> None:
    # AuditEvent.recorded is an instant: 2024-03-05T10:30:00.123Z
    one = {"instant"}
    check(
        loaded,
        [
            ("AuditEvent?date=2024", one),
            ("AuditEvent?date=2024-03-05", one),
            ("AuditEvent?date=2024-03-05T10:30:00Z", one),
            ("AuditEvent?date=2024-03-05T05:30:00-05:00", one),
            ("AuditEvent?date=2024-03-05T10:30:00.123Z", one),
            ("AuditEvent?date=2024-03-05T10:30:00.124Z", set()),
            ("AuditEvent?date=2024-03-06", set()),
            ("AuditEvent?date=gt2024-03-05T10:30:00Z", set()),
            ("AuditEvent?date=ge2024-03-05T10:30:00Z", one),
            ("AuditEvent?date=lt2024-03-05T10:30:00.124Z", one),
            ("AuditEvent?date=lt2024-03-05T10:30:00.123Z", set()),
            ("AuditEvent?date=sa2024-03-05T10:29:59Z", one),
            ("AuditEvent?date=eb2024-03-05T10:30:01Z", one),
            ("AuditEvent?date=ne2024-03-05", set()),
        ],
    )


def test_date_precision_against_periods(loaded: Any) -> None:
    # Encounter/john-carter-2026-03-10: 2026-03-10T09:15:00-05:00 .. 09:45:00-05:00 (14:15Z..14:45Z)
    jc = {"john-carter-2026-03-10"}
    seeds = {r["id"] for r in SEED_RESOURCES if r["resourceType"] == "Encounter"}
    emerg = {"emerg"}  # open-ended Period starting 2017-02-01
    check(
        loaded,
        [
            ("Encounter?date=2026-03-10", jc),  # the Period lies within the day
            ("Encounter?date=2026-03", jc),
            ("Encounter?date=2026", seeds),
            ("Encounter?date=2026-03-10T14:30:00Z", set()),  # a Period is not within one second
            ("Encounter?date=le2026-03-10T14:15:00Z&subject=john-carter", jc),
            ("Encounter?date=lt2026-03-10T14:15:00Z&subject=john-carter", set()),
            ("Encounter?date=gt2026-03-10T14:45:00Z&subject=john-carter", set()),
            ("Encounter?date=gt2026-03-10T14:44:59Z&subject=john-carter", jc),
            ("Encounter?date=sa2026-03-10T14:14:59Z&subject=john-carter", jc),
            ("Encounter?date=sa2026-03-10T14:15:00Z&subject=john-carter", set()),  # starts inside
            ("Encounter?date=eb2026-03-10T14:45:01Z&subject=john-carter", jc),
            ("Encounter?date=eb2026-03-10T14:45:00Z&subject=john-carter", set()),
            ("Encounter?date=ne2026-03-10&subject=john-carter", set()),
            ("Encounter?date=ap2026-03-10&subject=john-carter", jc),
            # Period of dates: 2013-03-11 .. 2013-03-20 (inclusive of the whole last day)
            ("Encounter?date=2013-03", {"f203"}),
            ("Encounter?date=2013-03-15", set()),  # overlaps, but eq needs containment
            ("Encounter?date=ge2013-03-20&date=le2013-03-20", {"f203"}),
            ("Encounter?date=ge2013-03-21&date=lt2014", set()),
            # open-ended Period: goes on for ever
            ("Encounter?date=ge2100", emerg),
            # 2017-02-01T07:15:00+10:00 is 2017-01-31T21:15:00Z
            ("Encounter?date=gt2017-01-31&date=lt2017-02-01", emerg),
            ("Encounter?date=gt2017-01-31&date=lt2017-01-31T21:15:00Z", set()),
            (
                "Encounter?date=eb2017",
                where("Encounter", lambda r: r.get("period", {}).get("end", "9") < "2017"),
            ),
            (
                "Account?period=ge2030&owner=Organization/riverside-family-medicine",
                {"carter-family", "linda-nguyen"},
            ),
            ("Account?period=2026&owner=Organization/riverside-family-medicine", set()),
            ("Account?period=lt2026&owner=Organization/riverside-family-medicine", set()),
        ],
    )


def test_sort_on_a_period_uses_its_start(loaded: Any) -> None:
    def order(sort: str) -> list[str]:
        r = loaded.get("/fhir/Encounter", query_string={"subject": "Patient/accents", "_sort": sort})
        assert r.status_code == 200, r.json
        return [e["resource"]["id"] for e in r.json["entry"]]

    # long-stay starts 2020-01-05 and ends 2020-12-31; short-stay is on 2020-03-01.
    assert order("date") == ["long-stay", "short-stay"]
    assert order("-date") == ["short-stay", "long-stay"]


# ---------------------------------------------------------------------------------------------
# string, number, quantity, uri


def test_string_default_exact_contains(loaded: Any) -> None:
    check(
        loaded,
        [
            ("Patient?name=chal", {"example"}),
            ("Patient?name=CHALMERS", {"example"}),
            ("Patient?name=hmers", set()),  # starts-with, not contains
            ("Patient?name=muller", {"accents"}),  # accents removed
            ("Patient?name=MÜLLER-LÜD", {"accents"}),
            ("Patient?name=zoe", {"accents"}),
            ("Patient?name=angstrom", {"accents"}),
            ("Patient?name=eve", {"mom", "genetics-example1"}),
            ("Patient?family=carter", {"john-carter", "emma-carter"}),
            ("Patient?given=emma,linda", {"emma-carter", "linda-nguyen"}),
            ("Patient?name:exact=Zoë", {"accents"}),
            ("Patient?name:exact=zoë", set()),
            ("Patient?name:exact=Zoe", set()),
            ("Patient?name:exact=Chal", set()),
            ("Patient?name:contains=lmer", {"example"}),
            ("Patient?name:contains=LUDENSCH", {"accents"}),
            ("Patient?name:contains=arte", {"john-carter", "emma-carter"}),
            ("Patient?address-city=spring", {"linda-nguyen"}),
            ("Patient?family=carter&given=john", {"john-carter"}),
            ("Patient?name:missing=true", where("Patient", lambda r: not r.get("name"))),
        ],
    )


def test_number_with_prefixes(loaded: Any) -> None:
    check(
        loaded,
        [
            ("ChargeItem?factor-override=0.8", {"example"}),
            ("ChargeItem?factor-override=0.80", {"example"}),
            ("ChargeItem?factor-override=0.81", set()),
            ("ChargeItem?factor-override=1.5", {"ci-high"}),
            ("ChargeItem?factor-override=2", {"ci-high"}),  # 2 means [1.5, 2.5)
            ("ChargeItem?factor-override=2.0", set()),
            ("ChargeItem?factor-override=gt0.8", {"ci-high"}),
            ("ChargeItem?factor-override=ge0.8", {"example", "ci-high"}),
            ("ChargeItem?factor-override=lt0.8", {"ci-low"}),
            ("ChargeItem?factor-override=le0.8", {"ci-low", "example"}),
            ("ChargeItem?factor-override=ne0.8", {"ci-low", "ci-high"}),
            ("ChargeItem?factor-override=sa0.25", {"example", "ci-high"}),
            ("ChargeItem?factor-override=eb0.25", set()),
            ("ChargeItem?factor-override=ap0.26", {"ci-low"}),
            ("ChargeItem?factor-override=0.25,1.5", {"ci-low", "ci-high"}),
        ],
    )


def test_quantity_with_prefixes_and_units(loaded: Any) -> None:
    ucum = "http://unitsofmeasure.org"
    iso = "urn:iso:std:iso:4217"
    check(
        loaded,
        [
            ("Encounter?length=140", {"f001", "f002"}),
            (f"Encounter?length=140|{ucum}|min", {"f001", "f002"}),
            (f"Encounter?length=140|{ucum}|h", set()),
            ("Encounter?length=140||min", {"f001", "f002"}),
            ("Encounter?length=56||minutes", {"f202"}),  # the human unit
            (f"Encounter?length=lt100|{ucum}|min", {"f003", "f202"}),
            (f"Encounter?length=ge90|{ucum}|min", {"f001", "f002", "f003"}),
            (f"Encounter?length=gt90|{ucum}|min", {"f001", "f002"}),
            ("Encounter?length=ne140", {"f003", "f202"}),
            (f"ChargeItem?price-override=40|{iso}|EUR", {"example"}),
            (f"ChargeItem?price-override=40|{iso}|USD", set()),
            (f"ChargeItem?price-override=gt12.5|{iso}|USD", {"ci-high"}),
            (f"ChargeItem?price-override=ge12.5|{iso}|USD", {"ci-low", "ci-high"}),
            ("ChargeItem?price-override=le40", {"example", "ci-low"}),
            ("ChargeItem?quantity=lt5", {"example", "ci-low"}),
            ("ChargeItem?quantity=10", {"ci-high"}),
            (f"Invoice?totalgross=48|{iso}|EUR", {"example"}),
            ("Invoice?totalgross=ap50", {"example"}),
        ],
    )


def test_uri_below_and_above(loaded: Any) -> None:
    vs = "http://example.org/fhir/ValueSet/billing"
    check(
        loaded,
        [
            (f"ValueSet?url={vs}", {"vs-billing"}),
            (f"ValueSet?url={vs}/", set()),
            (f"ValueSet?url:below={vs}", {"vs-billing", "vs-billing-sub", "vs-billingx"}),
            ("ValueSet?url:below=http://example.org/fhir", {"vs-billing", "vs-billing-sub", "vs-billingx"}),
            (
                "ValueSet?url:below=http://example.org",
                {"vs-billing", "vs-billing-sub", "vs-billingx", "vs-other"},
            ),
            (f"ValueSet?url:above={vs}/sub/deeper", {"vs-billing", "vs-billing-sub"}),
            (f"ValueSet?url:above={vs}", {"vs-billing"}),
            ("ValueSet?url:above=http://example.org/terminology/other/x", {"vs-other"}),
        ],
    )


# ---------------------------------------------------------------------------------------------
# OR and AND


def test_comma_is_or_and_repeats_are_and(loaded: Any) -> None:
    enc = {r["id"]: r for r in SEED_RESOURCES if r["resourceType"] == "Encounter"}
    check(
        loaded,
        [
            ("Patient?gender=male,other", where("Patient", lambda r: r.get("gender") in ("male", "other"))),
            (
                "Patient?gender=male,other&birthdate=ge1980",
                where(
                    "Patient",
                    lambda r: r.get("gender") in ("male", "other") and r.get("birthDate", "0") >= "1980",
                ),
            ),
            (
                "Encounter?date=ge2026-05-01&date=lt2026-09-01",
                {k for k in enc if "-05-" in k or "-06-" in k or "-08-" in k} | {"emerg"},
            ),
            ("Encounter?date=2026-03,2026-09", {"john-carter-2026-03-10", "linda-nguyen-2026-09-14-ed"}),
            ("Patient?given=john&given=michael", {"john-carter"}),
            ("Patient?given=john&given=rose", set()),
            ("Patient?given=john,rose", {"john-carter", "emma-carter", "xds"}),
            # an escaped comma is part of the value, not an OR
            ("Patient?name=carter\\,x", set()),
        ],
    )


def test_id_and_last_updated(loaded: Any) -> None:
    r = loaded.get("/fhir/Patient/john-carter")
    updated = r.json["meta"]["lastUpdated"]
    check(
        loaded,
        [
            ("Patient?_id=john-carter,emma-carter", {"john-carter", "emma-carter"}),
            ("Patient?_id:not=john-carter&family=carter", {"emma-carter"}),
            ("Patient?_id=john-carter&_lastUpdated=gt2000", {"john-carter"}),
            ("Patient?_id=john-carter&_lastUpdated=lt2000", set()),
        ],
    )
    assert ids(loaded, "Patient?_id=john-carter", [("_lastUpdated", f"ge{updated}")]) == {"john-carter"}
