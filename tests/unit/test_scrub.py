"""Claim scrubbing: each rule fails on a broken claim (naming the FHIRPath to fix) and passes on
the demo seeds; plus the official R4 examples, which are not billable as they stand."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from fhirbill.fhir.billing import CLAIM_FREQUENCY_SYSTEM, PAYER_ICN_SYSTEM
from fhirbill.fhir.profiles import ProfileRegistry
from fhirbill.rcm.codes import npi_check_digit, npi_valid
from fhirbill.rcm.scrub import claim_kind, date_range, scrub_claim

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 11, 28)
P = "Claim/john-carter-2026-03-10"  # professional, patient is the subscriber
D = "Claim/emma-carter-2026-05-18"  # professional, dependent child on the parent's policy
L = "Claim/linda-nguyen-2026-08-04"  # professional, other payer; line 2 priced by unitPrice only
R = "Claim/linda-nguyen-2026-08-04-r1"  # replacement of L
I = "Claim/linda-nguyen-2026-09-14-ed"  # noqa: E741 - institutional (837I)

Res = dict[str, dict[str, Any]]


def load_seeds() -> Res:
    out: Res = {}
    for path in sorted((ROOT / "seeds").glob("*.json")):
        for entry in json.loads(path.read_text())["entry"]:
            r = entry["resource"]
            out[f"{r['resourceType']}/{r['id']}"] = r
    return out


SEEDS = load_seeds()


def run(claim_id: str, mutate: Callable[[dict[str, Any], Res], Any] | None = None, **kw: Any):
    res = copy.deepcopy(SEEDS)
    claim = res[claim_id]
    if mutate:
        mutate(claim, res)
    return scrub_claim(claim, res.get, TODAY, **kw)


def find(issues, code: str):
    return [i for i in issues if i.details_code == code]


def dset(path: str, value: Any) -> Callable[[dict[str, Any], Res], None]:
    """A mutation setting `key.0.key` on the claim (or on a resource: `Type/id.key...`)."""

    def apply(claim: dict[str, Any], res: Res) -> None:
        parts = path.split(".")
        node: Any = claim
        if "/" in parts[0]:
            node = res[parts.pop(0)]
        for p in parts[:-1]:
            node = node[int(p)] if p.isdigit() else node[p]
        last = parts[-1]
        if value is DELETE:
            if last.isdigit():
                del node[int(last)]
            else:
                del node[last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return apply


DELETE = object()
BILLING = "Organization/riverside-family-medicine"
COV_P = "Coverage/carter-acme-2026"
COV_D = "Coverage/carter-acme-2026-emma"
CI = "Claim.insurance[0].coverage.resolve()"


def _many_dx(claim: dict[str, Any], _: Res) -> None:
    claim["diagnosis"] = [
        {
            "sequence": n,
            "diagnosisCodeableConcept": {
                "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": f"R{n + 10}.9"}]
            },
        }
        for n in range(1, 14)
    ]


def _many_items(claim: dict[str, Any], _: Res) -> None:
    first = claim["item"][0]
    claim["item"] = [dict(copy.deepcopy(first), sequence=n) for n in range(1, 52)]
    claim["total"]["value"] = 185.0 * 51


def _five_pointers(claim: dict[str, Any], _: Res) -> None:
    _many_dx(claim, _)
    claim["item"][0]["diagnosisSequence"] = [1, 2, 3, 4, 5]
    claim["item"][1]["diagnosisSequence"] = [1]


def _five_modifiers(claim: dict[str, Any], _: Res) -> None:
    claim["item"][0]["modifier"] = [{"coding": [{"code": m}]} for m in ("25", "59", "XS", "76", "GT")]


def _freq(code: str, icn: str | None = "ICN1") -> Callable[[dict[str, Any], Res], None]:
    def apply(claim: dict[str, Any], _: Res) -> None:
        rel: dict[str, Any] = {"relationship": {"coding": [{"system": CLAIM_FREQUENCY_SYSTEM, "code": code}]}}
        if icn:
            rel["reference"] = {"system": PAYER_ICN_SYSTEM, "value": icn}
        claim["related"] = [rel]

    return apply


def _two_freqs(claim: dict[str, Any], res: Res) -> None:
    claim["related"] = claim["related"] * 2


def _no_pos(claim: dict[str, Any], _: Res) -> None:
    for item in claim["item"]:
        del item["locationCodeableConcept"]
    del claim["facility"]


def _dup_line_control(claim: dict[str, Any], _: Res) -> None:
    ext = [{"url": "urn:fhirbill:line-item-control-number", "valueString": "RFM-000101-1"}]
    claim["item"][0]["extension"] = ext
    claim["item"][1]["extension"] = copy.deepcopy(ext)


def _long_line_control(claim: dict[str, Any], _: Res) -> None:
    ext = [{"url": "urn:fhirbill:line-item-control-number", "valueString": "X" * 31}]
    claim["item"][0]["extension"] = ext


def _bad_npi(key: str) -> Callable[[dict[str, Any], Res], None]:
    def apply(_: dict[str, Any], res: Res) -> None:
        ident = res[key]["identifier"][0]
        ident["value"] = ident["value"][:9] + str((int(ident["value"][9]) + 1) % 10)

    return apply


# (rule code, claim, mutation, expected FHIRPath, kind)
CASES: list[tuple[str, str, Callable[[dict[str, Any], Res], Any], str, str | None]] = [
    # -- profile rules
    ("SCRUB-CLAIM-STATUS", P, dset("status", "draft"), "Claim.status", None),
    ("SCRUB-CLAIM-USE", P, dset("use", "preauthorization"), "Claim.use", None),
    ("SCRUB-CLAIM-TYPE", I, lambda c, r: None, "Claim.type", "837P"),
    ("SCRUB-PCN-MISSING", P, dset("identifier", DELETE), "Claim.identifier", None),
    (
        "SCRUB-PCN-LENGTH",
        P,
        dset("identifier.0.value", "X" * 21),
        "Claim.identifier[0].value",
        None,
    ),
    ("SCRUB-PATIENT-MISSING", P, dset("patient", DELETE), "Claim.patient", None),
    ("SCRUB-BILLING-PROVIDER-MISSING", P, dset("provider", DELETE), "Claim.provider", None),
    ("SCRUB-INSURANCE-MISSING", P, dset("insurance", DELETE), "Claim.insurance", None),
    ("SCRUB-FOCAL-INSURANCE", P, dset("insurance.0.focal", False), "Claim.insurance", None),
    ("SCRUB-TOTAL-MISSING", P, dset("total", DELETE), "Claim.total", None),
    ("SCRUB-DIAGNOSIS-MISSING", P, dset("diagnosis", DELETE), "Claim.diagnosis", None),
    ("SCRUB-DIAGNOSIS-COUNT", P, _many_dx, "Claim.diagnosis[12]", None),
    (
        "SCRUB-DIAGNOSIS-TYPE",
        P,
        dset("diagnosis.1", {"sequence": 2, "diagnosisReference": {"reference": "Condition/x"}}),
        "Claim.diagnosis[1].diagnosisReference",
        None,
    ),
    ("SCRUB-DIAGNOSIS-SEQUENCE", P, dset("diagnosis.1.sequence", 1), "Claim.diagnosis", None),
    (
        "SCRUB-DIAGNOSIS-PRINCIPAL",
        P,
        dset("diagnosis.1.type", [{"coding": [{"code": "principal"}]}]),
        "Claim.diagnosis",
        None,
    ),
    ("SCRUB-DIAGNOSIS-PRINCIPAL", I, dset("diagnosis.0.type", DELETE), "Claim.diagnosis", None),
    (
        "SCRUB-ICD10-SYSTEM",
        P,
        dset("diagnosis.0.diagnosisCodeableConcept.coding.0.system", "http://hl7.org/fhir/sid/icd-10"),
        "Claim.diagnosis[0].diagnosisCodeableConcept.coding",
        None,
    ),
    (
        "SCRUB-ICD10-SHAPE",
        P,
        dset("diagnosis.0.diagnosisCodeableConcept.coding.0.code", "I1"),
        "Claim.diagnosis[0].diagnosisCodeableConcept.coding[0].code",
        None,
    ),
    ("SCRUB-ITEM-MISSING", P, dset("item", DELETE), "Claim.item", None),
    ("SCRUB-ITEM-COUNT", P, _many_items, "Claim.item[50]", None),
    ("SCRUB-ITEM-SEQUENCE", P, dset("item.1.sequence", 1), "Claim.item", None),
    (
        "SCRUB-LINE-CHARGE-MISSING",
        L,
        dset("item.1.unitPrice", DELETE),
        "Claim.item[1].net",
        None,
    ),
    (
        "SCRUB-SERVICE-DATE-MISSING",
        P,
        lambda c, r: (c["item"][0].pop("servicedDate"), c.pop("billablePeriod")),
        "Claim.item[0].servicedDate",
        None,
    ),
    (
        "SCRUB-CARETEAM-POINTER",
        P,
        dset("item.0.careTeamSequence", [9]),
        "Claim.item[0].careTeamSequence",
        None,
    ),
    (
        "SCRUB-DXPTR-MISSING",
        P,
        dset("item.0.diagnosisSequence", DELETE),
        "Claim.item[0].diagnosisSequence",
        None,
    ),
    ("SCRUB-DXPTR-COUNT", P, _five_pointers, "Claim.item[0].diagnosisSequence[4]", None),
    (
        "SCRUB-DXPTR-RANGE",
        P,
        dset("item.1.diagnosisSequence", [3]),
        "Claim.item[1].diagnosisSequence",
        None,
    ),
    (
        "SCRUB-PROCEDURE-CODE-SYSTEM",
        P,
        dset("item.0.productOrService.coding.0.system", "http://example.org/codes"),
        "Claim.item[0].productOrService.coding",
        None,
    ),
    (
        "SCRUB-PROCEDURE-CODE-SHAPE",
        P,
        dset("item.0.productOrService.coding.0.code", "9921"),
        "Claim.item[0].productOrService.coding[0].code",
        None,
    ),
    ("SCRUB-MODIFIER-COUNT", P, _five_modifiers, "Claim.item[0].modifier[4]", None),
    (
        "SCRUB-MODIFIER-SHAPE",
        P,
        dset("item.0.modifier.0.coding.0.code", "025"),
        "Claim.item[0].modifier[0].coding",
        None,
    ),
    (
        "SCRUB-FREQUENCY-CODE",
        R,
        dset("related.0.relationship.coding.0.code", "5"),
        "Claim.related[0].relationship",
        None,
    ),
    ("SCRUB-FREQUENCY-MULTIPLE", R, _two_freqs, "Claim.related", None),
    (
        "SCRUB-FREQUENCY-ICN-MISSING",
        R,
        dset("related.0.reference", DELETE),
        "Claim.related[0].reference",
        None,
    ),
    (
        "SCRUB-FREQUENCY-ICN-MISSING",
        I,
        dset("supportingInfo.0.code.coding.0.code", "0137"),
        "Claim.related",
        None,
    ),
    ("SCRUB-FREQUENCY-TOB-MISMATCH", I, _freq("7"), "Claim.related", None),
    (
        "SCRUB-STATEMENT-PERIOD-MISSING",
        I,
        dset("billablePeriod.end", DELETE),
        "Claim.billablePeriod.end",
        None,
    ),
    ("SCRUB-TOB-MISSING", I, dset("supportingInfo.0", DELETE), "Claim.supportingInfo", None),
    (
        "SCRUB-TOB-SHAPE",
        I,
        dset("supportingInfo.0.code.coding.0.code", "01"),
        "Claim.supportingInfo[0].code",
        None,
    ),
    (
        "SCRUB-DISCHARGE-STATUS-MISSING",
        I,
        dset("supportingInfo.3", DELETE),
        "Claim.supportingInfo",
        None,
    ),
    ("SCRUB-ADMTYPE-MISSING", I, dset("supportingInfo.1", DELETE), "Claim.supportingInfo", None),
    (
        "SCRUB-ATTENDING-MISSING",
        I,
        dset("careTeam.0.role.coding.0.code", "operating"),
        "Claim.careTeam",
        None,
    ),
    ("SCRUB-REVENUE-MISSING", I, dset("item.0.revenue", DELETE), "Claim.item[0].revenue", None),
    (
        "SCRUB-REVENUE-SHAPE",
        I,
        dset("item.0.revenue.coding.0.code", "450"),
        "Claim.item[0].revenue.coding",
        None,
    ),
    # -- code rules
    ("SCRUB-TOTAL-MISMATCH", P, dset("total.value", 251.0), "Claim.total.value", None),
    ("SCRUB-TOTAL-MISMATCH", L, dset("item.1.quantity.value", 2), "Claim.total.value", None),
    ("SCRUB-LINE-CHARGE-MISMATCH", P, dset("item.0.net.value", 186.0), "Claim.item[0].net", None),
    (
        "SCRUB-SERVICE-DATE-FUTURE",
        P,
        lambda c, r: (c["item"][0].update(servicedDate="2026-11-29"), c.pop("billablePeriod")),
        "Claim.item[0].servicedDate",
        None,
    ),
    (
        "SCRUB-SERVICE-DATE-FUTURE",
        I,
        dset("billablePeriod.end", "2026-12-01"),
        "Claim.billablePeriod.end",
        None,
    ),
    (
        "SCRUB-SERVICE-DATE-OUTSIDE-PERIOD",
        P,
        dset("item.0.servicedDate", "2026-03-09"),
        "Claim.item[0].servicedDate",
        None,
    ),
    ("SCRUB-POS-MISSING", P, _no_pos, "Claim.item[0].locationCodeableConcept", None),
    (
        "SCRUB-POS-UNKNOWN",
        P,
        dset("item.0.locationCodeableConcept.coding.0.code", "98"),
        "Claim.item[0].locationCodeableConcept.coding[0].code",
        None,
    ),
    (
        "SCRUB-BILLING-PROVIDER-UNRESOLVED",
        P,
        dset("provider.reference", "Organization/nope"),
        "Claim.provider",
        None,
    ),
    (
        "SCRUB-BILLING-NPI-MISSING",
        P,
        dset(f"{BILLING}.identifier.0", DELETE),
        "Claim.provider.resolve().identifier",
        None,
    ),
    (
        "SCRUB-NPI-CHECKDIGIT",
        P,
        _bad_npi(BILLING),
        "Claim.provider.resolve().identifier[0].value",
        None,
    ),
    (
        "SCRUB-NPI-CHECKDIGIT",
        P,
        _bad_npi("Practitioner/maria-lopez"),
        "Claim.careTeam[0].provider.resolve().identifier[0].value",
        None,
    ),
    (
        "SCRUB-NPI-CHECKDIGIT",
        P,
        _bad_npi("Location/riverside-clinic"),
        "Claim.facility.resolve().identifier[0].value",
        None,
    ),
    (
        "SCRUB-BILLING-TAXID-MISSING",
        P,
        dset(f"{BILLING}.identifier.1", DELETE),
        "Claim.provider.resolve().identifier",
        None,
    ),
    (
        "SCRUB-BILLING-TAXID-SHAPE",
        P,
        dset(f"{BILLING}.identifier.1.value", "12345"),
        "Claim.provider.resolve().identifier[1].value",
        None,
    ),
    (
        "SCRUB-BILLING-NAME-MISSING",
        P,
        dset(f"{BILLING}.name", DELETE),
        "Claim.provider.resolve().name",
        None,
    ),
    (
        "SCRUB-BILLING-ADDRESS-MISSING",
        P,
        dset(f"{BILLING}.address.0.city", DELETE),
        "Claim.provider.resolve().address[0].city",
        None,
    ),
    (
        "SCRUB-BILLING-ADDRESS-MISSING",
        P,
        dset(f"{BILLING}.address", DELETE),
        "Claim.provider.resolve().address",
        None,
    ),
    (
        "SCRUB-BILLING-ZIP9",
        P,
        dset(f"{BILLING}.address.0.postalCode", "62704"),
        "Claim.provider.resolve().address[0].postalCode",
        None,
    ),
    (
        "SCRUB-PAYER-UNRESOLVED",
        P,
        dset("insurer.reference", "Organization/nope"),
        "Claim.insurer",
        None,
    ),
    (
        "SCRUB-PAYER-ID-MISSING",
        P,
        dset("Organization/acme-health-plan.identifier.0.type", DELETE),
        "Claim.insurer.resolve().identifier",
        None,
    ),
    (
        "SCRUB-PAYER-ID-MISSING",
        P,
        lambda c, r: (c.pop("insurer"), r["Organization/acme-health-plan"].pop("identifier")),
        f"{CI}.payor[0].resolve().identifier",
        None,
    ),
    (
        "SCRUB-PAYER-NAME-MISSING",
        P,
        dset("Organization/acme-health-plan.name", DELETE),
        "Claim.insurer.resolve().name",
        None,
    ),
    (
        "SCRUB-PAYER-MISMATCH",
        P,
        dset("insurer.reference", "Organization/lakeshore-blue"),
        "Claim.insurer",
        None,
    ),
    (
        "SCRUB-COVERAGE-UNRESOLVED",
        P,
        dset("insurance.0.coverage.reference", "Coverage/nope"),
        "Claim.insurance[0].coverage",
        None,
    ),
    ("SCRUB-COVERAGE-INACTIVE", P, dset(f"{COV_P}.status", "cancelled"), f"{CI}.status", None),
    ("SCRUB-COVERAGE-PERIOD", P, dset(f"{COV_P}.period.start", "2026-04-01"), f"{CI}.period", None),
    ("SCRUB-COVERAGE-PERIOD", P, dset(f"{COV_P}.period.end", "2026-02"), f"{CI}.period", None),
    (
        "SCRUB-COVERAGE-BENEFICIARY",
        P,
        dset("insurance.0.coverage.reference", COV_D),
        "Claim.patient",
        None,
    ),
    (
        "SCRUB-COVERAGE-RELATIONSHIP",
        D,
        dset(f"{COV_D}.relationship.coding.0.code", "self"),
        f"{CI}.relationship",
        None,
    ),
    (
        "SCRUB-COVERAGE-RELATIONSHIP",
        P,
        dset(f"{COV_P}.relationship", DELETE),
        f"{CI}.relationship",
        None,
    ),
    (
        "SCRUB-SUBSCRIBER-ID-MISSING",
        D,
        dset(f"{COV_D}.subscriberId", DELETE),
        f"{CI}.subscriberId",
        None,
    ),
    (
        "SCRUB-SUBSCRIBER-UNRESOLVED",
        D,
        dset(f"{COV_D}.subscriber.reference", "Patient/nope"),
        f"{CI}.subscriber",
        None,
    ),
    (
        "SCRUB-SUBSCRIBER-NAME-MISSING",
        D,
        dset("Patient/john-carter.name.0.family", DELETE),
        f"{CI}.subscriber.resolve().name[0].family",
        None,
    ),
    (
        "SCRUB-SUBSCRIBER-ADDRESS-MISSING",
        D,
        dset("Patient/john-carter.address.0.state", DELETE),
        f"{CI}.subscriber.resolve().address[0].state",
        None,
    ),
    (
        "SCRUB-PATIENT-UNRESOLVED",
        P,
        dset("patient.reference", "Patient/nope"),
        "Claim.patient",
        None,
    ),
    (
        "SCRUB-PATIENT-NAME-MISSING",
        D,
        dset("Patient/emma-carter.name.0.family", DELETE),
        "Claim.patient.resolve().name[0].family",
        None,
    ),
    (
        "SCRUB-PATIENT-NAME-MISSING",
        D,
        dset("Patient/emma-carter.name", DELETE),
        "Claim.patient.resolve().name",
        None,
    ),
    (
        "SCRUB-PATIENT-BIRTHDATE-MISSING",
        D,
        dset("Patient/emma-carter.birthDate", DELETE),
        "Claim.patient.resolve().birthDate",
        None,
    ),
    (
        "SCRUB-PATIENT-GENDER-MISSING",
        D,
        dset("Patient/emma-carter.gender", DELETE),
        "Claim.patient.resolve().gender",
        None,
    ),
    (
        "SCRUB-PATIENT-ADDRESS-MISSING",
        D,
        dset("Patient/emma-carter.address", DELETE),
        "Claim.patient.resolve().address",
        None,
    ),
    (
        "SCRUB-PATIENT-ADDRESS-MISSING",
        D,
        dset("Patient/emma-carter.address.0.postalCode", DELETE),
        "Claim.patient.resolve().address[0].postalCode",
        None,
    ),
    (
        "SCRUB-CARETEAM-UNRESOLVED",
        P,
        dset("careTeam.0.provider.reference", "Practitioner/nope"),
        "Claim.careTeam[0].provider",
        None,
    ),
    (
        "SCRUB-CARETEAM-NPI-MISSING",
        I,
        dset("Practitioner/aisha-patel.identifier", DELETE),
        "Claim.careTeam[0].provider.resolve().identifier",
        None,
    ),
    (
        "SCRUB-CARETEAM-NAME-MISSING",
        P,
        dset("Practitioner/maria-lopez.name", DELETE),
        "Claim.careTeam[0].provider.resolve().name",
        None,
    ),
    (
        "SCRUB-FACILITY-UNRESOLVED",
        P,
        dset("facility.reference", "Location/nope"),
        "Claim.facility",
        None,
    ),
    (
        "SCRUB-FACILITY-NAME-MISSING",
        P,
        dset("Location/riverside-clinic.name", DELETE),
        "Claim.facility.resolve().name",
        None,
    ),
    (
        "SCRUB-FACILITY-ADDRESS-MISSING",
        I,
        dset("Location/riverside-hospital-ed.address.line", DELETE),
        "Claim.facility.resolve().address.line",
        None,
    ),
    (
        "SCRUB-FACILITY-ZIP9",
        I,
        dset("Location/riverside-hospital-ed.address.postalCode", "62702"),
        "Claim.facility.resolve().address.postalCode",
        None,
    ),
    (
        "SCRUB-LENGTH",
        D,
        dset("Patient/emma-carter.name.0.family", "C" * 61),
        "Claim.patient.resolve().name[0].family",
        None,
    ),
    (
        "SCRUB-LENGTH",
        D,
        dset("Patient/emma-carter.name.0.given.0", "E" * 36),
        "Claim.patient.resolve().name[0].given[0]",
        None,
    ),
    (
        "SCRUB-LENGTH",
        P,
        dset(f"{BILLING}.address.0.line.0", "1" * 56),
        "Claim.provider.resolve().address[0].line[0]",
        None,
    ),
    (
        "SCRUB-LENGTH",
        P,
        dset(f"{BILLING}.address.0.city", "S" * 31),
        "Claim.provider.resolve().address[0].city",
        None,
    ),
    ("SCRUB-LENGTH", P, dset(f"{BILLING}.name", "R" * 61), "Claim.provider.resolve().name", None),
    (
        "SCRUB-LENGTH",
        P,
        dset("Organization/acme-health-plan.name", "A" * 61),
        "Claim.insurer.resolve().name",
        None,
    ),
    ("SCRUB-LINE-CONTROL", P, _dup_line_control, "Claim.item[1].extension[0]", None),
    ("SCRUB-LINE-CONTROL", P, _long_line_control, "Claim.item[0].extension[0]", None),
]


def _case_id(case: tuple[Any, ...]) -> str:
    return f"{case[0]}:{case[3]}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_rule_fails_and_names_the_element(case: tuple[Any, ...]) -> None:
    code, claim_id, mutate, expression, kind = case
    issues = find(run(claim_id, mutate, kind=kind), code)
    assert issues, f"{code} not raised"
    assert any(expression in i.expression for i in issues), [i.expression for i in issues]
    assert all(i.diagnostics for i in issues)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_rule_passes_on_the_unbroken_claim(case: tuple[Any, ...]) -> None:
    code, claim_id, _, _, kind = case
    assert find(run(claim_id, kind=kind if code != "SCRUB-CLAIM-TYPE" else None), code) == []


def test_severities() -> None:
    assert {i.severity for i in find(run(I, dset("supportingInfo.1", DELETE)), "SCRUB-ADMTYPE-MISSING")} == {
        "warning"
    }
    mismatch = find(run(P, dset("insurer.reference", "Organization/lakeshore-blue")), "SCRUB-PAYER-MISMATCH")
    assert {i.severity for i in mismatch} == {"warning"}
    assert {i.severity for i in find(run(P, dset("status", "draft")), "SCRUB-CLAIM-STATUS")} == {"error"}


def test_beneficiary_names_both_ends() -> None:
    (issue,) = find(run(P, dset("insurance.0.coverage.reference", COV_D)), "SCRUB-COVERAGE-BENEFICIARY")
    assert issue.expression == ("Claim.patient", f"{CI}.beneficiary")
    assert "Patient/john-carter" in issue.diagnostics and "Patient/emma-carter" in issue.diagnostics


def test_referenced_resource_is_named_in_diagnostics() -> None:
    (issue,) = find(run(P, _bad_npi(BILLING)), "SCRUB-NPI-CHECKDIGIT")
    assert BILLING in issue.diagnostics


def test_contained_resources_resolve_from_the_claim() -> None:
    def contain(claim: dict[str, Any], res: Res) -> None:
        cov = copy.deepcopy(res[COV_P])
        cov["id"] = "cov"
        claim["contained"] = [cov]
        claim["insurance"][0]["coverage"] = {"reference": "#cov"}
        del res[COV_P]

    assert run(P, contain) == []

    def dangling(claim: dict[str, Any], res: Res) -> None:
        contain(claim, res)
        claim["insurance"][0]["coverage"] = {"reference": "#other"}

    (issue,) = find(run(P, dangling), "SCRUB-COVERAGE-UNRESOLVED")
    assert issue.expression == ("Claim.insurance[0].coverage",)


def test_service_date_on_today_is_fine_and_tomorrow_is_not() -> None:
    def on(day: str) -> Callable[[dict[str, Any], Res], None]:
        def apply(claim: dict[str, Any], res: Res) -> None:
            claim["billablePeriod"] = {"start": day, "end": day}
            for item in claim["item"]:
                item["servicedDate"] = day

        return apply

    assert find(run(P, on("2026-11-28")), "SCRUB-SERVICE-DATE-FUTURE") == []
    assert find(run(P, on("2026-11-29")), "SCRUB-SERVICE-DATE-FUTURE")


def test_kind_is_inferred_from_claim_type() -> None:
    assert claim_kind(SEEDS[P]) == "837P"
    assert claim_kind(SEEDS[I]) == "837I"
    assert claim_kind({"type": {"coding": [{"code": "oral"}]}}) is None
    # an institutional claim checked as professional fails the profile's type pattern
    assert find(run(I, kind="837P"), "SCRUB-CLAIM-TYPE")


def test_missing_profile_is_a_warning_and_code_rules_still_run() -> None:
    issues = scrub_claim(
        copy.deepcopy(SEEDS[P]) | {"total": {"value": 1, "currency": "USD"}},
        SEEDS.get,
        TODAY,
        registry=ProfileRegistry(),
    )
    assert {i.details_code for i in issues} == {"SCRUB-PROFILE-MISSING", "SCRUB-TOTAL-MISMATCH"}


def test_npi_check_digit() -> None:
    assert npi_valid("1234567893")  # the CMS example NPI
    assert npi_valid("1245319599")
    assert not npi_valid("1234567890")
    assert not npi_valid("123456789")
    assert not npi_valid("12345678a3")
    assert npi_check_digit("123456789") == "3"


def test_date_range_handles_partial_dates() -> None:
    assert date_range("2026-02") == (date(2026, 2, 1), date(2026, 2, 28))
    assert date_range("2026") == (date(2026, 1, 1), date(2026, 12, 31))
    assert date_range("2026-03-10T09:15:00-05:00") == (date(2026, 3, 10), date(2026, 3, 10))
    assert date_range("garbage") is None


# -- the official R4 examples (CC0), copied into tests/data/scrub


def _official() -> Res:
    out: Res = {}
    for path in (ROOT / "tests" / "data" / "scrub").glob("*.json"):
        r = json.loads(path.read_text())
        out[f"{r['resourceType']}/{r['id']}"] = r
    return out


def test_official_institutional_example_lists_what_is_missing() -> None:
    res = _official()
    issues = scrub_claim(res["Claim/960150"], res.get, TODAY)
    codes = {i.details_code for i in issues}
    assert {
        "SCRUB-PCN-MISSING",
        "SCRUB-TOB-MISSING",
        "SCRUB-ICD10-SHAPE",
        "SCRUB-BILLING-NPI-MISSING",
        "SCRUB-PAYER-ID-MISSING",
        "SCRUB-SUBSCRIBER-ID-MISSING",
        "SCRUB-COVERAGE-PERIOD",
        "SCRUB-COVERAGE-BENEFICIARY",
        "SCRUB-PATIENT-UNRESOLVED",
    } <= codes
    assert all(i.expression and i.details_code for i in issues)


def test_official_oral_example_is_not_a_professional_claim() -> None:
    res = _official()
    issues = scrub_claim(res["Claim/100150"], res.get, TODAY)
    types = find(issues, "SCRUB-CLAIM-TYPE")
    assert types and types[0].expression == ("Claim.type",)
    assert find(issues, "SCRUB-PROCEDURE-CODE-SHAPE")[0].expression == (
        "Claim.item[0].productOrService.coding[0].code",
    )
