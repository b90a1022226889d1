"""Claims that cannot be billed are refused with issues naming the FHIRPath to fix."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from x12_helpers import DATA, assert_pyx12_valid, build, claim_input, find, load, segments

from fhirbill.fhir.billing import LINE_CONTROL_SYSTEM
from fhirbill.x12 import ClaimInput, resolver

EXAMPLES = sorted((DATA / "fhir-r4-examples").glob("Claim-*.json"))


def _examples_resolve() -> Any:
    others = [json.loads(p.read_text()) for p in (DATA / "fhir-r4-examples").glob("[!C]*.json")]
    others += [json.loads((DATA / "fhir-r4-examples" / "Coverage-9876B1.json").read_text())]
    return resolver(others)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_official_examples_are_refused_with_clear_issues(path: Any) -> None:
    claim = json.loads(path.read_text())
    result = build([ClaimInput(claim, _examples_resolve())])
    assert result.text == "" and result.claims == ()
    (refused,) = result.refused
    assert refused.claim_id == claim["id"]
    assert refused.issues
    for issue in refused.issues:
        assert issue.severity == "error" and issue.expression and issue.details_code
        assert issue.expression[0].startswith("Claim")
    codes = {i.details_code for i in refused.issues}
    kind = claim["type"]["coding"][0]["code"]
    if kind in ("professional", "institutional"):
        # None carries fhirbill's patient control number, an NPI or ICD-10-CM codes.
        assert "X12-PCN" in codes
        assert {"X12-NPI", "X12-REFERENCE"} & codes
    elif claim.get("use") == "preauthorization":
        assert codes == {"X12-USE"}
    else:
        assert codes == {"X12-CLAIM-TYPE"}
    outcome = refused.outcome()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"]


def _refusal(claim: dict[str, Any], extra: list[dict[str, Any]] | None = None) -> dict[str, tuple[str, ...]]:
    result = build([claim_input(claim, extra)])
    assert result.text == ""
    return {i.details_code or "": i.expression for i in result.refused[0].issues}


def _subscriber() -> dict[str, Any]:
    return load("claim-professional-subscriber.json")


def test_missing_pcn_is_refused() -> None:
    claim = _subscriber()
    claim["identifier"] = [{"system": "urn:other", "value": "X"}]
    assert _refusal(claim) == {"X12-PCN": ("Claim.identifier",)}


def test_pcn_with_delimiters_or_too_long_is_refused() -> None:
    for bad in ("PAT*1", "A" * 21, "pat~1"):
        claim = _subscriber()
        claim["identifier"][0]["value"] = bad
        assert "X12-PCN" in _refusal(claim)


def test_lowercase_pcn_is_uppercased() -> None:
    claim = _subscriber()
    claim["identifier"][0]["value"] = "patacct001"
    assert build([claim_input(claim)]).claims[0].clm01 == "PATACCT001"


def test_over_50_lines_is_refused_not_split() -> None:
    claim = _subscriber()
    line = claim["item"][1]
    claim["item"] = [dict(copy.deepcopy(line), sequence=n) for n in range(1, 52)]
    claim["total"]["value"] = 50 * 51
    assert _refusal(claim) == {"X12-LINES": ("Claim.item[50]",)}
    claim["item"] = claim["item"][:50]
    claim["total"]["value"] = 50 * 50
    result = build([claim_input(claim)])
    assert len(find(segments(result.text), "LX")) == 50
    assert_pyx12_valid(result.text)


def test_total_mismatch_and_bad_pointer_and_bad_npi() -> None:
    claim = _subscriber()
    claim["total"]["value"] = 151
    claim["item"][0]["diagnosisSequence"] = [1, 7]
    extra = [
        {
            "resourceType": "Practitioner",
            "id": "bad",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567890"}],
            "name": [{"family": "X"}],
        }
    ]
    claim["careTeam"][0]["provider"] = {"reference": "Practitioner/bad"}
    assert _refusal(claim, extra) == {
        "X12-TOTAL": ("Claim.total",),
        "X12-DX-POINTER": ("Claim.item[0].diagnosisSequence",),
        "X12-NPI": ("Claim.careTeam[0].provider.resolve().identifier",),
    }


def test_unresolvable_references_and_missing_payer_id() -> None:
    claim = _subscriber()
    claim["patient"] = {"reference": "Patient/nobody"}
    claim["insurer"] = {"reference": "Organization/springfield-fm"}
    issues = _refusal(claim)
    assert issues["X12-REFERENCE"] == ("Claim.patient",)
    assert issues["X12-PAYER-ID"] == ("Claim.insurer.resolve().identifier",)


def test_billing_zip_must_have_9_digits() -> None:
    org = {
        "resourceType": "Organization",
        "id": "five-zip",
        "name": "Five Zip Clinic",
        "identifier": [
            {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"},
            {"system": "urn:oid:2.16.840.1.113883.4.4", "value": "123456789"},
        ],
        "address": [{"line": ["1 A St"], "city": "Springfield", "state": "IL", "postalCode": "62701"}],
    }
    claim = _subscriber()
    claim["provider"] = {"reference": "Organization/five-zip"}
    assert _refusal(claim, [org]) == {"X12-ADDRESS": ("Claim.provider.resolve().address.postalCode",)}


def test_replacement_without_payer_claim_number_and_bad_code_shapes() -> None:
    claim = load("claim-professional-replacement.json")
    del claim["related"][0]["reference"]
    claim["diagnosis"][1]["diagnosisCodeableConcept"]["coding"][0]["code"] = "R50-9"
    claim["item"][1]["productOrService"]["coding"][0]["code"] = "8788"
    claim["item"][0]["modifier"][0]["coding"][0]["code"] = "255"
    assert _refusal(claim) == {
        "X12-PAYER-CLAIM-NUMBER": ("Claim.related[0].reference",),
        "X12-ICD10CM": ("Claim.diagnosis[1].diagnosisCodeableConcept",),
        "X12-PROCEDURE": ("Claim.item[1].productOrService",),
        "X12-MODIFIER": ("Claim.item[0].modifier[0]",),
        # Item 0 points at the diagnosis that was refused.
        "X12-DX-POINTER": ("Claim.item[0].diagnosisSequence",),
    }


def test_duplicate_or_long_line_control_numbers_are_refused() -> None:
    claim = _subscriber()
    for item in claim["item"]:
        item["extension"] = [{"url": LINE_CONTROL_SYSTEM, "valueString": "SAME"}]
    assert set(_refusal(claim)) == {"X12-LINE-CONTROL"}
    claim["item"][0]["extension"][0]["valueString"] = "L" * 31
    claim["item"][1]["extension"][0]["valueString"] = "OK"
    assert set(_refusal(claim)) == {"X12-LINE-CONTROL"}


def test_institutional_needs_type_of_bill_and_revenue_codes() -> None:
    claim = load("claim-institutional.json")
    claim["supportingInfo"] = [s for s in claim["supportingInfo"] if s["sequence"] != 1]
    del claim["item"][0]["revenue"]
    issues = _refusal(claim)
    assert issues["X12-TYPEOFBILL"] == ("Claim.supportingInfo",)
    assert issues["X12-REVENUE"] == ("Claim.item[0].revenue",)


def test_refused_claims_do_not_hold_back_the_others() -> None:
    bad = _subscriber()
    bad["identifier"] = []
    result = build([claim_input(bad), claim_input(load("claim-institutional.json"))])
    assert [r.index for r in result.refused] == [0]
    assert [c.index for c in result.claims] == [1]
    assert_pyx12_valid(result.text)


def test_contained_resources_are_resolved() -> None:
    claim = _subscriber()
    patient = next(
        r
        for r in json.loads((DATA / "resources.json").read_text())["entry"]
        if r["resource"]["id"] == "john-doe"
    )["resource"]
    claim["contained"] = [dict(patient, id="p")]
    claim["patient"] = {"reference": "#p"}
    result = build([claim_input(claim)])
    assert result.refused == ()
    assert find(segments(result.text), "NM1", "IL")[0][3] == "DOE"
