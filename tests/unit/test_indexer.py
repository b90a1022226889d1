"""Index rows from resources (fhirbill.fhir.indexer) against the official and CARIN examples."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.models import models

from fhirbill.fhir.dates import DATE_MAX, DATE_MIN
from fhirbill.fhir.indexer import IndexRows, extract, normalize, reference_row
from fhirbill.fhir.searchparams import SearchParamRegistry

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
BASE = "http://127.0.0.1:8080/fhir"
KINDS = ("token", "reference", "date", "string", "number", "quantity", "uri")


@cache
def registry() -> SearchParamRegistry:
    return SearchParamRegistry.load(ROOT / "profiles")


def load(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / path).read_text())
    return data


def rows_of(resource: dict[str, Any], base: str = BASE) -> IndexRows:
    return extract(resource, registry().for_type(resource["resourceType"]), base)


def examples() -> list[Path]:
    return sorted((DATA / "fhir-r4-examples").glob("*.json")) + sorted(
        (DATA / "search" / "carin").glob("*.json")
    )


def synthea_resources() -> list[dict[str, Any]]:
    bundle = load("synthea/Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json")
    return [e["resource"] for e in bundle["entry"]]


# ---------------------------------------------------------------------------------------------
# Named examples


def test_claim_100150() -> None:
    rows = rows_of(load("fhir-r4-examples/Claim-100150.json"))
    assert ("patient", "Patient", "1", None) in rows.reference
    assert ("insurer", "Organization", "2", None) in rows.reference
    assert ("provider", "Organization", "1", None) in rows.reference
    assert ("care-team", "Practitioner", "example", None) in rows.reference
    assert ("created", datetime(2014, 8, 16), datetime(2014, 8, 17)) in rows.date
    assert ("use", None, "claim", None) in rows.token
    assert ("status", None, "active", None) in rows.token
    assert ("identifier", "http://happyvalley.com/claim", "12345", None) in rows.token
    # _id and _lastUpdated come from the main table, never from the index
    assert not any(r[0] in ("_id", "_lastUpdated") for r in rows.token + rows.date)


def test_eob_official_example() -> None:
    rows = rows_of(load("fhir-r4-examples/ExplanationOfBenefit-EB3500.json"))
    assert ("patient", "Patient", "pat1", None) in rows.reference
    assert ("insurer", "Organization", "3", None) in rows.reference  # CARIN insurer
    assert ("coverage", "Coverage", "9876B1", None) in rows.reference
    assert ("claim", "Claim", "100150", None) in rows.reference
    assert ("encounter", "Encounter", "example", None) in rows.reference
    assert ("type", "http://terminology.hl7.org/CodeSystem/claim-type", "oral", None) in rows.token
    assert ("service-date", datetime(2014, 8, 16), datetime(2014, 8, 17)) in rows.date
    assert ("disposition", "claim settled as per contract.", "Claim settled as per contract.") in (
        rows.string
    )


def test_carin_inpatient_eob() -> None:
    eob = load("search/carin/ExplanationOfBenefit_InpatientEOBExample1.json")
    rows = rows_of(eob)
    start = eob["billablePeriod"]["start"]
    assert start == "2017-05-23"
    day = (datetime(2017, 5, 23), datetime(2017, 5, 24))
    # billablePeriod, whole (end may be open) and its start
    bp = eob["billablePeriod"]
    bp_high = DATE_MAX if "end" not in bp else None
    if bp_high is not None:
        assert ("service-date", day[0], bp_high) in rows.date
    assert ("billable-period-start", *day) in rows.date
    assert ("service-start-date", *day) in rows.date
    assert ("insurer", "Organization", "PayerOrganizationExample1", None) in rows.reference
    assert ("type", "http://terminology.hl7.org/CodeSystem/claim-type", "institutional", None) in (rows.token)
    # identifier with a type: the plain row plus the :of-type row
    ident = eob["identifier"][0]
    tcode = ident["type"]["coding"][0]
    assert (
        "identifier:of-type",
        tcode["system"],
        f"{tcode['code']}|{ident['value']}",
        None,
    ) in rows.token
    assert ("_profile", eob["meta"]["profile"][0]) in rows.uri


def test_carin_professional_eob_lines() -> None:
    eob = load("search/carin/ExplanationOfBenefit_ProfessionalEOBExample1.json")
    rows = rows_of(eob)
    for item in eob.get("item", []):
        if "servicedDate" in item:
            d = datetime.fromisoformat(item["servicedDate"])
            assert ("service-date", d, d.replace(day=d.day + 1)) in rows.date
            assert ("service-start-date", d, d.replace(day=d.day + 1)) in rows.date


def test_coverage_external_reference_is_url_only() -> None:
    rows = rows_of(load("fhir-r4-examples/Coverage-9876B1.json"))
    assert ("policy-holder", None, None, "http://benefitsinc.com/FHIR/Organization/CBI35") in (rows.reference)
    assert ("payor", "Organization", "2", None) in rows.reference
    assert ("beneficiary", "Patient", "4", None) in rows.reference
    assert (
        "type",
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "EHCPOL",
        "extended healthcare",
    ) in rows.token
    assert ("class-value", "cb135", "CB135") in rows.string


def test_chargeitem_number_quantity_and_periods_with_zones() -> None:
    rows = rows_of(load("fhir-r4-examples/ChargeItem-example.json"))
    assert ("factor-override", Decimal("0.8")) in rows.number
    assert ("price-override", "urn:iso:std:iso:4217", "EUR", Decimal("40")) in rows.quantity
    assert ("quantity", None, None, Decimal("1")) in rows.quantity
    # occurrencePeriod 08:00+01:00 .. 12:35+01:00 in UTC, end second included
    assert (
        "occurrence",
        datetime(2017, 1, 25, 7, 0),
        datetime(2017, 1, 25, 11, 35, 1),
    ) in rows.date
    # identifier-only references are not indexed
    assert not any(r[0] == "performing-organization" for r in rows.reference)
    # accents are removed in the token text (display)
    (code_row,) = [r for r in rows.token if r[0] == "code"]
    assert code_row[2] == "01510" and code_row[3] is not None and "fur beobachtung" in code_row[3]


def test_concept_text_gets_a_row_only_when_no_display_carries_it() -> None:
    """`:text` matches a coding's display or the concept's text; a text equal (once
    normalised) to a display of the same concept adds no row, any other text does."""
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}],
            "text": "body height",
        },
        "category": [
            {
                "coding": [{"system": "http://example.org/c", "code": "v", "display": "Vital"}],
                "text": "Vital signs",
            }
        ],
    }
    rows = rows_of(obs)
    assert [r for r in rows.token if r[0] == "code"] == [
        ("code", "http://loinc.org", "8302-2", "body height")
    ]
    assert ("category", None, None, "vital signs") in rows.token
    obs["code"]["text"] = "Height"
    assert ("code", None, None, "height") in rows_of(obs).token


def test_invoice_money() -> None:
    rows = rows_of(load("fhir-r4-examples/Invoice-example.json"))
    assert ("totalnet", "urn:iso:std:iso:4217", "EUR", Decimal("40")) in rows.quantity
    assert ("totalgross", "urn:iso:std:iso:4217", "EUR", Decimal("48")) in rows.quantity
    assert ("date", datetime(2017, 1, 25, 7, 0), datetime(2017, 1, 25, 7, 0, 1)) in rows.date


def test_account_codeable_concept_text_row() -> None:
    rows = rows_of(load("fhir-r4-examples/Account-example.json"))
    assert (
        "type",
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "PBILLACCT",
        "patient billing account",
    ) in rows.token
    assert ("type", None, None, "patient") in rows.token
    assert ("period", datetime(2016, 1, 1), datetime(2016, 7, 1)) in rows.date
    assert ("patient", "Patient", "example", None) in rows.reference
    assert ("subject", "Patient", "example", None) in rows.reference
    assert (
        "name",
        "hacc funded billing for peter james chalmers",
        "HACC Funded Billing for Peter James Chalmers",
    ) in rows.string


def test_patient_names_addresses_telecom_and_deceased() -> None:
    rows = rows_of(load("fhir-r4-examples/Patient-example.json"))
    assert ("family", "chalmers", "Chalmers") in rows.string
    assert ("given", "jim", "Jim") in rows.string
    assert ("name", "peter", "Peter") in rows.string
    assert ("address-city", "pleasantville", "PleasantVille") in rows.string
    assert ("address", "3999", "3999") in rows.string
    assert ("birthdate", datetime(1974, 12, 25), datetime(1974, 12, 26)) in rows.date
    assert ("gender", None, "male", None) in rows.token
    assert ("active", None, "true", None) in rows.token
    assert ("phone", None, "(03) 5555 6473", None) in rows.token
    assert ("deceased", None, "false", None) in rows.token
    assert ("organization", "Organization", "1", None) in rows.reference
    assert (
        "identifier:of-type",
        "http://terminology.hl7.org/CodeSystem/v2-0203",
        "MR|12345",
        None,
    ) in rows.token


# ---------------------------------------------------------------------------------------------
# Every example


@pytest.mark.parametrize("path", examples(), ids=lambda p: p.name)
def test_every_example_indexes_cleanly(path: Path) -> None:
    resource = json.loads(path.read_text())
    rows = rows_of(resource)
    for kind in KINDS:
        got = getattr(rows, kind)
        assert len(got) == len(set(got)), f"duplicate {kind} rows"
    for r in rows.token:
        assert len(r) == 4 and isinstance(r[0], str)
        assert all(x is None or isinstance(x, str) for x in r[1:])
        assert r[1] is not None or r[2] is not None or r[3] is not None
    for r in rows.reference:
        assert (r[1] is not None and r[2] is not None and r[3] is None) or (
            r[1] is None and r[2] is None and r[3] is not None
        )
        assert r[3] is None or not r[3].startswith(("urn:uuid:", "#"))
    for _, low, high in rows.date:
        assert DATE_MIN <= low < high <= DATE_MAX
        assert low.tzinfo is None and high.tzinfo is None
    for _, norm, value in rows.string:
        assert norm == normalize(value) and value
    for nrow in rows.number:
        assert isinstance(nrow[1], Decimal)
    for qrow in rows.quantity:
        assert isinstance(qrow[3], Decimal)
    # every parameter named in a row is one of the type's (or its :of-type variant)
    codes = set(registry().for_type(resource["resourceType"]))
    for p in rows.params():
        assert p.removesuffix(":of-type") in codes
    # status, when the resource has one, is always indexed as a token
    if isinstance(resource.get("status"), str) and "status" in codes:
        assert ("status", None, resource["status"], None) in rows.token


def test_synthea_bundle_indexes_and_skips_urn_uuid() -> None:
    resources = synthea_resources()
    eobs = [r for r in resources if r["resourceType"] == "ExplanationOfBenefit"]
    assert eobs
    for r in resources:
        rows = rows_of(r)
        for ref in rows.reference:
            assert ref[3] is None or not ref[3].startswith("urn:uuid:")
    rows = rows_of(eobs[0])
    assert any(r[0] == "service-date" for r in rows.date)
    assert not any(r[0] == "patient" for r in rows.reference)  # urn:uuid: until rewritten
    # once the caller rewrites urn:uuid references, they index as local ones
    rewritten = copy.deepcopy(eobs[0])
    rewritten["patient"] = {"reference": "Patient/abc"}
    assert ("patient", "Patient", "abc", None) in rows_of(rewritten).reference


# ---------------------------------------------------------------------------------------------
# The compiled paths agree with fhirpathpy


def test_compiled_paths_agree_with_fhirpathpy() -> None:
    """On every example and a Synthea record: same values for every expression fhirpathpy can
    evaluate (it has no resolve(), and its `as` insists on a single input)."""
    model = models["r4"]
    compiled: dict[str, Any] = {}
    resources = [json.loads(p.read_text()) for p in examples()] + synthea_resources()[:400]
    checked = 0

    def norm(v: Any) -> str:
        def deep(x: Any) -> Any:
            if isinstance(x, float):
                return Decimal(repr(x))
            if isinstance(x, dict):
                return {k: deep(y) for k, y in x.items()}
            if isinstance(x, list):
                return [deep(y) for y in x]
            return x

        return json.dumps(deep(v), sort_keys=True, default=str)

    for res in resources:
        for p in registry().for_type(res["resourceType"]).values():
            ext = p.extractor
            if ext is None or ext.fallback or not p.expression or "resolve()" in p.expression:
                continue
            expr = p.expression.replace("Resource.", "")
            fn = compiled.get(expr) or compiled.setdefault(expr, fhirpath_compile(expr, model))
            try:
                want = {norm(v) for v in fn(res, {})}
            except Exception:  # noqa: BLE001 - fhirpathpy's strict singleton `as`
                continue
            got = {norm(v) for v, _ in ext.values(res)}
            assert got == want, (res["resourceType"], p.code)
            checked += 1
    assert checked > 5000


# ---------------------------------------------------------------------------------------------
# Row builders on hand-made resources


def claim(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Claim", "id": "c1", **fields}


@pytest.mark.parametrize(
    ("ref", "row"),
    [
        ("Patient/123", ("patient", "Patient", "123", None)),
        ("Patient/123/_history/4", ("patient", "Patient", "123", None)),
        (f"{BASE}/Patient/123", ("patient", "Patient", "123", None)),
        (f"{BASE}/Patient/123/_history/2", ("patient", "Patient", "123", None)),
        (
            "http://other.org/fhir/Patient/123",
            ("patient", None, None, "http://other.org/fhir/Patient/123"),
        ),
        (f"{BASE}x/Patient/1", ("patient", None, None, f"{BASE}x/Patient/1")),
        ("urn:oid:1.2.3", ("patient", None, None, "urn:oid:1.2.3")),
        ("#pat", None),
        ("urn:uuid:0b2f7c1e-1111-2222-3333-444455556666", None),
        ("patient/123", None),
        ("Patient/", None),
        ("", None),
    ],
)
def test_reference_forms(ref: str, row: tuple[Any, ...] | None) -> None:
    assert reference_row("patient", ref, BASE) == row
    rows = rows_of(claim(patient={"reference": ref}))
    assert rows.reference == ([row] if row else [])


def test_reference_base_url_trailing_slash_and_identifier_only() -> None:
    res = claim(patient={"reference": f"{BASE}/Patient/9"})
    assert extract(res, registry().for_type("Claim"), BASE + "/").reference == [
        ("patient", "Patient", "9", None)
    ]
    assert rows_of(claim(patient={"identifier": {"system": "s", "value": "v"}})).reference == []
    assert rows_of(claim(patient={"display": "Someone"})).reference == []


def test_where_resolve_is_patient() -> None:
    acct = {
        "resourceType": "Account",
        "subject": [{"reference": "Patient/1"}, {"reference": "Device/2"}],
    }
    rows = extract(acct, registry().for_type("Account"), BASE)
    assert ("patient", "Patient", "1", None) in rows.reference
    assert not any(r[0] == "patient" and r[1] == "Device" for r in rows.reference)
    assert ("subject", "Device", "2", None) in rows.reference


def test_dates_from_periods_and_precisions() -> None:
    eob = {
        "resourceType": "ExplanationOfBenefit",
        "created": "2024-03",
        "billablePeriod": {"start": "2024-03-01"},
        "item": [
            {"servicedDate": "2024-03-05"},
            {"servicedPeriod": {"end": "2024-03-10"}},
            {"servicedDate": "not-a-date"},
        ],
    }
    rows = extract(eob, registry().for_type("ExplanationOfBenefit"), BASE)
    assert ("created", datetime(2024, 3, 1), datetime(2024, 4, 1)) in rows.date
    sd = sorted(r[1:] for r in rows.date if r[0] == "service-date")
    assert sd == [
        (DATE_MIN, datetime(2024, 3, 11)),
        (datetime(2024, 3, 1), DATE_MAX),
        (datetime(2024, 3, 5), datetime(2024, 3, 6)),
    ]
    ssd = sorted(r[1:] for r in rows.date if r[0] == "service-start-date")
    assert ssd == [
        (datetime(2024, 3, 1), datetime(2024, 3, 2)),
        (datetime(2024, 3, 5), datetime(2024, 3, 6)),
    ]


def test_timing_events() -> None:
    req = {
        "resourceType": "ServiceRequest",
        "occurrenceTiming": {
            "event": ["2024-01-01", "2024-01-02"],
            "repeat": {"boundsPeriod": {"start": "2024-01-01", "end": "2024-01-31"}},
        },
    }
    rows = extract(req, registry().for_type("ServiceRequest"), BASE)
    assert sorted(r[1:] for r in rows.date if r[0] == "occurrence") == [
        (datetime(2024, 1, 1), datetime(2024, 1, 2)),
        (datetime(2024, 1, 1), datetime(2024, 2, 1)),
        (datetime(2024, 1, 2), datetime(2024, 1, 3)),
    ]


def test_tokens_from_every_shape() -> None:
    pat = {
        "resourceType": "Patient",
        "active": False,
        "gender": "female",
        "identifier": [
            {
                "system": "urn:mrn",
                "value": "M1",
                "type": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                    "text": "Medical Récord",
                },
            },
            {"value": "nosys"},
        ],
        "telecom": [{"system": "email", "value": "a@example.org"}, {"system": "phone"}],
        "meta": {
            "tag": [{"system": "urn:t", "code": "x", "display": "Tag X"}],
            "security": [{"code": "R"}],
        },
    }
    rows = extract(pat, registry().for_type("Patient"), BASE)
    assert ("active", None, "false", None) in rows.token
    assert ("gender", None, "female", None) in rows.token
    assert ("identifier", "urn:mrn", "M1", "medical record") in rows.token
    assert ("identifier", None, "nosys", None) in rows.token
    assert (
        "identifier:of-type",
        "http://terminology.hl7.org/CodeSystem/v2-0203",
        "MR|M1",
        None,
    ) in rows.token
    assert ("email", None, "a@example.org", None) in rows.token
    assert ("telecom", None, "a@example.org", None) in rows.token
    assert ("_tag", "urn:t", "x", "tag x") in rows.token
    assert ("_security", None, "R", None) in rows.token
    assert not any(r[0] == "phone" for r in rows.token)


def test_strings_are_normalised() -> None:
    assert normalize("Ölçek") == "olcek"
    assert normalize("STRASSE") == "strasse"
    assert normalize("Straße") == "strasse"
    assert normalize("José Müller") == "jose muller"
    pat = {"resourceType": "Patient", "name": [{"family": "Müller", "given": ["José", "José"]}]}
    rows = extract(pat, registry().for_type("Patient"), BASE)
    assert ("family", "muller", "Müller") in rows.string
    assert [r for r in rows.string if r[0] == "given"] == [("given", "jose", "José")]  # de-duplicated


def test_quantities() -> None:
    obs = {
        "resourceType": "Observation",
        "valueQuantity": {
            "value": 5.4,
            "unit": "mg",
            "system": "http://unitsofmeasure.org",
            "code": "mg",
        },
        "component": [
            {
                "valueQuantity": {
                    "value": 120,
                    "unit": "mm Hg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                }
            },
            {"valueQuantity": {"value": 3}},
        ],
    }
    rows = extract(obs, registry().for_type("Observation"), BASE)
    assert ("value-quantity", "http://unitsofmeasure.org", "mg", Decimal("5.4")) in rows.quantity
    comp = sorted((r for r in rows.quantity if r[0] == "component-value-quantity"), key=str)
    assert comp == sorted(
        [
            ("component-value-quantity", "http://unitsofmeasure.org", "mm[Hg]", Decimal("120")),
            ("component-value-quantity", None, "mm Hg", Decimal("120")),  # unit, for `||mm Hg`
            ("component-value-quantity", None, None, Decimal("3")),
        ],
        key=str,
    )


def test_extension_values_unwrap() -> None:
    pat = {
        "resourceType": "Patient",
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-extensions-Patient-mothersMaidenName",
                "valueString": "Ångström",
            }
        ],
    }
    rows = extract(pat, registry().for_type("Patient"), BASE)
    assert ("mothersMaidenName", "angstrom", "Ångström") in rows.string


def test_deceased_token() -> None:
    params = registry().for_type("Patient")
    assert ("deceased", None, "true", None) in extract(
        {"resourceType": "Patient", "deceasedDateTime": "2020-01-01"}, params, BASE
    ).token
    assert ("deceased", None, "false", None) in extract({"resourceType": "Patient"}, params, BASE).token


def test_malformed_values_are_skipped_not_fatal() -> None:
    res = claim(
        created=12,
        patient="Patient/1",
        identifier=[{"system": 5}, "x"],
        total={"value": "abc", "currency": "USD"},
        use=None,
    )
    rows = rows_of(res)
    assert rows.date == [] and rows.reference == []


def test_index_rows_helpers() -> None:
    rows = rows_of(load("fhir-r4-examples/Claim-100150.json"))
    assert len(rows) == sum(len(getattr(rows, k)) for k in KINDS)
    assert {"patient", "created", "use"} <= rows.params()


def test_only_given_params_are_used() -> None:
    params = registry().for_type("Claim")
    rows = extract(load("fhir-r4-examples/Claim-100150.json"), {"patient": params["patient"]}, BASE)
    assert rows.params() == {"patient"}
