"""The StructureDefinition checker: cardinality, choice types, fixed/pattern values, maxLength and
FHIRPath invariants, with FHIRPath expressions that point at the offending element."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhirbill.fhir.profiles import (
    LOCATION_EXT,
    RULE_CODE_EXT,
    Profile,
    ProfileRegistry,
    check,
    compile_fhirpath,
)

ROOT = Path(__file__).resolve().parents[2]
URL = "http://example.org/StructureDefinition/test-claim"
P837 = "http://fhirbill.dev/fhir/StructureDefinition/billable-claim-837p"
I837 = "http://fhirbill.dev/fhir/StructureDefinition/billable-claim-837i"


def sd(*elements: dict[str, Any], rtype: str = "Claim") -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "url": URL,
        "name": "TestClaim",
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": rtype,
        "baseDefinition": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
        "derivation": "constraint",
        "differential": {"element": [{"path": rtype}, *elements]},
    }


def claim(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "resourceType": "Claim",
        "status": "active",
        "item": [
            {"sequence": 1, "diagnosisSequence": [1]},
            {"sequence": 2},
            {"sequence": 3, "diagnosisSequence": [1, 2]},
        ],
    }
    base.update(kw)
    return base


def exprs(issues: Any) -> list[str]:
    return [e for i in issues for e in i.expression]


# -- cardinality


def test_min_on_a_top_level_element() -> None:
    issues = check(claim(), sd({"path": "Claim.total", "min": 1}))
    assert exprs(issues) == ["Claim.total"]
    assert issues[0].severity == "error" and issues[0].code == "required"
    assert issues[0].details_code == "PROFILE-MIN"
    assert check(claim(total={"value": 1}), sd({"path": "Claim.total", "min": 1})) == []


def test_min_is_counted_per_parent_instance() -> None:
    issues = check(claim(), sd({"path": "Claim.item.diagnosisSequence", "min": 1}))
    assert exprs(issues) == ["Claim.item[1].diagnosisSequence"]


def test_min_is_not_checked_when_the_parent_is_absent() -> None:
    assert check(claim(), sd({"path": "Claim.accident.date", "min": 1})) == []


def test_max_points_at_the_first_extra_repeat() -> None:
    issues = check(claim(), sd({"path": "Claim.item", "max": "2"}))
    assert exprs(issues) == ["Claim.item[2]"]
    assert issues[0].details_code == "PROFILE-MAX"
    nested = check(claim(), sd({"path": "Claim.item.diagnosisSequence", "max": "1"}))
    assert exprs(nested) == ["Claim.item[2].diagnosisSequence[1]"]
    assert check(claim(), sd({"path": "Claim.item", "max": "*"})) == []


def test_primitive_with_only_an_extension_counts_as_present() -> None:
    c = claim(_status={"extension": [{"url": "http://example.org/x", "valueString": "y"}]})
    del c["status"]
    assert check(c, sd({"path": "Claim.status", "min": 1})) == []


def test_rule_codes_come_from_the_extension() -> None:
    el = {
        "path": "Claim.item",
        "min": 1,
        "max": "2",
        "extension": [
            {
                "url": RULE_CODE_EXT,
                "extension": [
                    {"url": "min", "valueCode": "ITEM-MISSING"},
                    {"url": "max", "valueCode": "ITEM-COUNT"},
                ],
            }
        ],
    }
    assert [i.details_code for i in check(claim(), sd(el))] == ["ITEM-COUNT"]
    assert [i.details_code for i in check(claim(item=[]), sd(el))] == ["ITEM-MISSING"]


# -- choice types


def _dx(**kw: Any) -> dict[str, Any]:
    return {"sequence": 1, **kw}


CHOICE = {"path": "Claim.diagnosis.diagnosis[x]", "min": 1, "type": [{"code": "CodeableConcept"}]}


def test_choice_element_present_under_any_type_name() -> None:
    c = claim(diagnosis=[_dx(diagnosisCodeableConcept={"text": "x"})])
    assert check(c, sd(CHOICE)) == []


def test_choice_element_missing() -> None:
    issues = check(claim(diagnosis=[_dx(), _dx(diagnosisCodeableConcept={"text": "x"})]), sd(CHOICE))
    assert exprs(issues) == ["Claim.diagnosis[0].diagnosis"]


def test_choice_type_not_allowed_by_the_profile() -> None:
    c = claim(diagnosis=[_dx(diagnosisReference={"reference": "Condition/1"})])
    issues = check(c, sd(CHOICE))
    assert exprs(issues) == ["Claim.diagnosis[0].diagnosisReference"]
    assert issues[0].details_code == "PROFILE-TYPE"


def test_choice_max() -> None:
    el = {"path": "Claim.diagnosis.diagnosis[x]", "max": "0"}
    c = claim(diagnosis=[_dx(diagnosisCodeableConcept={"text": "x"})])
    assert exprs(check(c, sd(el))) == ["Claim.diagnosis[0].diagnosisCodeableConcept"]


def test_path_through_a_renamed_choice() -> None:
    el = {"path": "Claim.diagnosis.diagnosisCodeableConcept.coding.code", "min": 1}
    c = claim(diagnosis=[_dx(diagnosisCodeableConcept={"coding": [{"code": "J06.9"}, {"system": "s"}]})])
    assert exprs(check(c, sd(el))) == ["Claim.diagnosis[0].diagnosisCodeableConcept.coding[1].code"]


# -- fixed, pattern, maxLength


def test_fixed_value() -> None:
    el = {"path": "Claim.use", "fixedCode": "claim"}
    assert check(claim(use="claim"), sd(el)) == []
    issues = check(claim(use="preauthorization"), sd(el))
    assert exprs(issues) == ["Claim.use"] and issues[0].code == "value"


def test_pattern_value() -> None:
    el = {
        "path": "Claim.type",
        "patternCodeableConcept": {"coding": [{"system": "http://t", "code": "professional"}]},
    }
    ok = {
        "coding": [
            {"system": "http://other", "code": "x"},
            {"system": "http://t", "code": "professional", "display": "P"},
        ]
    }
    assert check(claim(type=ok), sd(el)) == []
    assert exprs(check(claim(type={"coding": [{"system": "http://t", "code": "oral"}]}), sd(el))) == [
        "Claim.type"
    ]


def test_max_length() -> None:
    el = {"path": "Claim.identifier.value", "maxLength": 5}
    c = claim(identifier=[{"value": "12345"}, {"value": "123456"}])
    assert exprs(check(c, sd(el))) == ["Claim.identifier[1].value"]


# -- invariants


def _inv(
    path: str, expression: str, severity: str = "error", key: str = "inv-1", **kw: Any
) -> dict[str, Any]:
    c = {"key": key, "severity": severity, "human": "human text", "expression": expression, **kw}
    return {"path": path, "constraint": [c]}


def test_invariant_on_each_instance_with_index() -> None:
    el = _inv("Claim.item", "diagnosisSequence.exists()")
    issues = check(claim(), sd(el))
    assert exprs(issues) == ["Claim.item[1]"]
    assert issues[0].code == "invariant" and issues[0].details_code == "inv-1"
    assert "human text" in issues[0].diagnostics


def test_invariant_sees_the_resource() -> None:
    el = _inv("Claim.item", "diagnosisSequence.all($this <= %resource.item.count() - 2)")
    assert exprs(check(claim(), sd(el))) == ["Claim.item[2]"]


def test_invariant_on_the_root_with_a_location() -> None:
    el = _inv(
        "Claim",
        "total.exists()",
        extension=[{"url": LOCATION_EXT, "valueString": "total"}],
    )
    assert exprs(check(claim(), sd(el))) == ["Claim.total"]
    assert check(claim(total={"value": 1}), sd(el)) == []


def test_invariant_warning_severity() -> None:
    issues = check(claim(), sd(_inv("Claim", "total.exists()", severity="warning")))
    assert [i.severity for i in issues] == ["warning"]


def test_invariant_with_choice_types_through_the_r4_model() -> None:
    el = _inv("Claim.diagnosis", "diagnosis is CodeableConcept")
    good = claim(diagnosis=[_dx(diagnosisCodeableConcept={"text": "x"})])
    assert check(good, sd(el)) == []


def test_invariant_that_yields_empty_fails() -> None:
    assert exprs(check(claim(), sd(_inv("Claim", "total.value > 0")))) == ["Claim"]


def test_fhirpath_is_compiled_once() -> None:
    assert compile_fhirpath("item.count() > 0") is compile_fhirpath("item.count() > 0")
    a = Profile.from_json(sd(_inv("Claim", "item.count() > 7")))
    b = Profile.from_json(sd(_inv("Claim", "item.count() > 7")))
    assert a.elements[1].constraints[0].evaluate is b.elements[1].constraints[0].evaluate


@pytest.mark.parametrize("expression", ["item.where(", "item..x", "(((", "item.count() >", "a b"])
def test_broken_fhirpath_fails_at_load(expression: str) -> None:
    with pytest.raises(ValueError, match="FHIRPath syntax error"):
        Profile.from_json(sd(_inv("Claim", expression)))


def test_wrong_resource_type() -> None:
    issues = check({"resourceType": "Patient"}, sd())
    assert [i.details_code for i in issues] == ["PROFILE-TYPE-MISMATCH"]


# -- registry


def test_registry_loads_our_profiles() -> None:
    reg = ProfileRegistry.load(ROOT / "profiles")
    assert reg.get(P837) is not None and reg.get(I837) is not None
    assert reg.get(P837 + "|0.1.0") is reg.get(P837)
    assert reg.get("http://example.org/unknown") is None
    assert set(reg.by_type()["Claim"]) >= {P837, I837}
    assert set(reg.urls("Claim")) >= {P837, I837} and reg.urls("Patient") == []
    unknown = reg.check({"resourceType": "Claim"}, "http://example.org/unknown")
    assert [i.severity for i in unknown] == ["warning"]


def test_registry_add_and_check_by_url() -> None:
    reg = ProfileRegistry()
    reg.add(sd({"path": "Claim.total", "min": 1}))
    assert len(reg) == 1 and [p.url for p in reg] == [URL]
    assert exprs(reg.check(claim(), URL)) == ["Claim.total"]


@pytest.mark.parametrize(
    "path", sorted((ROOT / "profiles").glob("StructureDefinition-*.json")), ids=lambda p: p.name
)
def test_our_profiles_are_valid_r4_structure_definitions(path: Path) -> None:
    data = json.loads(path.read_text())
    get_fhir_model_class("StructureDefinition").model_validate(data)
    assert data["derivation"] == "constraint" and data["type"] == "Claim"
    assert data["url"].startswith("http://fhirbill.dev/fhir/StructureDefinition/")
    profile = Profile.from_json(data)
    keys = [c.key for e in profile.elements for c in e.constraints]
    assert keys and all(k.startswith("SCRUB-") for k in keys)
