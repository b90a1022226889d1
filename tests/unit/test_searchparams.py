"""The search-parameter registry and its expression compiler (fhirbill.fhir.searchparams)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from fhirbill.fhir.searchparams import (
    CompileError,
    ExistsNotFalse,
    LinearPath,
    SearchParam,
    SearchParamRegistry,
    compile_branch,
    compile_expression,
    expression_root,
    reference_type,
)

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"
DATA = ROOT / "tests" / "data"


def lin(text: str, base: str) -> LinearPath:
    """The single typed path a branch compiles to."""
    (p,) = compile_branch(text, base)
    assert isinstance(p, LinearPath)
    return p


@cache
def registry() -> SearchParamRegistry:
    return SearchParamRegistry.load(PROFILES)


def test_loads_every_core_definition_with_a_base() -> None:
    bundle = json.loads((PROFILES / "search-parameters-r4-all.json").read_text())
    defs = [e["resource"] for e in bundle["entry"]]
    assert len(defs) == 1400
    reg = registry()
    # the only ones skipped are the extension definitions that have no base at all
    no_base = {d["url"] for d in defs if not d.get("base")}
    assert set(reg.skipped) == no_base
    assert len(no_base) == 10
    for d in defs:
        for base in d.get("base") or ():
            if d.get("experimental") and d["id"].startswith("example"):
                continue  # the spec's example SearchParameters never replace real ones
            target = "Claim" if base in ("Resource", "DomainResource") else base
            p = reg.get(target, d["code"])
            assert p is not None, (base, d["code"])
            assert p.url == d["url"], (base, d["code"])
            assert p.type == d["type"]


def test_claim_parameters() -> None:
    params = registry().for_type("Claim")
    assert {"patient", "created", "use", "identifier", "status", "insurer", "provider"} <= set(params)
    patient = params["patient"]
    assert patient == SearchParam(
        code="patient",
        type="reference",
        base=("Claim",),
        expression="Claim.patient",
        targets=("Patient",),
        url="http://hl7.org/fhir/SearchParameter/Claim-patient",
    )
    assert patient.indexed and patient.searchable
    assert params["created"].type == "date"
    assert params["use"].type == "token"


def test_common_parameters_are_on_every_type() -> None:
    for rtype in ("Claim", "Patient", "ExplanationOfBenefit", "Bundle", "NotARealType"):
        params = registry().for_type(rtype)
        for code in ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"):
            assert code in params, (rtype, code)
    # _text is a DomainResource parameter: Bundle is a Resource, not a DomainResource
    assert "_text" in registry().for_type("Claim")
    assert "_text" not in registry().for_type("Bundle")


def test_main_table_parameters_are_marked_and_not_indexed() -> None:
    params = registry().for_type("Claim")
    assert params["_id"].column == "id"
    assert params["_lastUpdated"].column == "last_updated"
    assert params["_id"].expression == "Resource.id"  # not the spec's example override
    for code in ("_id", "_lastUpdated"):
        assert not params[code].indexed and params[code].searchable
    assert params["_tag"].column is None and params["_tag"].indexed
    assert "_id" not in registry().indexed_for_type("Claim")


def test_composite_and_special_are_registered_but_not_indexed() -> None:
    obs = registry().for_type("Observation")
    assert obs["code-value-quantity"].type == "composite"
    assert obs["code-value-quantity"].components
    assert not obs["code-value-quantity"].indexed
    assert not obs["code-value-quantity"].searchable
    assert obs["_filter"].type == "special" and not obs["_filter"].searchable
    # no expression at all: registered, not indexed
    assert not obs["_content"].indexed


def test_carin_additions_on_eob() -> None:
    eob = registry().for_type("ExplanationOfBenefit")
    assert eob["type"].type == "token" and eob["type"].expression == "ExplanationOfBenefit.type"
    assert eob["insurer"].type == "reference" and eob["insurer"].targets == ("Organization",)
    assert eob["service-date"].type == "date"
    assert eob["service-date"].expression == (
        "ExplanationOfBenefit.billablePeriod | ExplanationOfBenefit.item.serviced"
    )
    assert eob["service-start-date"].type == "date"
    assert eob["billable-period-start"].type == "date"
    for code in ("type", "insurer", "service-date", "service-start-date", "billable-period-start"):
        assert eob[code].url.startswith("http://hl7.org/fhir/us/carin-bb/SearchParameter/")
        ext = eob[code].extractor
        assert ext is not None and ext.fallback is None
    # and they stay on EOB only
    assert "service-date" not in registry().for_type("Claim")


def test_multi_base_expression_is_split_per_base() -> None:
    reg = registry()
    assert reg.get("Claim", "patient") is not None
    acc = reg.get("Account", "patient")
    cond = reg.get("Condition", "patient")
    assert acc is not None and cond is not None
    assert acc.expression == "Account.subject.where(resolve() is Patient)"
    assert cond.expression == "Condition.subject.where(resolve() is Patient)"
    # the clinical-patient definition covers many bases; each gets only its own branch
    assert "|" not in cond.expression


def test_nearly_every_expression_compiles_to_typed_paths() -> None:
    fallback = sorted((p.base[0], p.code) for p in registry() if p.extractor and p.extractor.fallback)
    # fhirpathpy only for `Bundle.entry[0].resource` and a hasExtension() filter
    assert fallback == [
        ("Bundle", "composition"),
        ("Bundle", "message"),
        ("QuestionnaireResponse", "item-subject"),
    ]


def test_compile_simple_paths_with_types() -> None:
    p = lin("Claim.patient", "Claim")
    assert p == LinearPath((("f", "patient"),), "Reference")
    p = lin("Claim.item.net", "Claim")
    assert p.fhir_type == "Money"
    p = lin("Resource.meta.tag", "Resource")
    assert p.steps == (("f", "meta"), ("f", "tag")) and p.fhir_type == "Coding"


def test_choice_elements_expand_per_type() -> None:
    paths = compile_branch("ExplanationOfBenefit.item.serviced", "ExplanationOfBenefit")
    assert sorted((p.steps[-1][1], p.fhir_type) for p in paths if isinstance(p, LinearPath)) == [
        ("servicedDate", "date"),
        ("servicedPeriod", "Period"),
    ]
    for text in (
        "(Condition.onset as Period)",
        "Condition.onset.as(Period)",
        "Condition.onset.ofType(Period)",
    ):
        p = lin(text, "Condition")
        assert p.steps == (("f", "onsetPeriod"),) and p.fhir_type == "Period"
    p = lin("(Observation.value as CodeableConcept).text", "Observation")
    assert p.steps == (("f", "valueCodeableConcept"), ("f", "text"))
    assert p.fhir_type == "string"
    p = lin("(Patient.deceased as dateTime)", "Patient")
    assert p.steps == (("f", "deceasedDateTime"),) and p.fhir_type == "dateTime"


def test_content_references_are_followed() -> None:
    # ClaimResponse.addItem.adjudication is defined as ClaimResponse.item.adjudication
    p = lin("ClaimResponse.addItem.adjudication.amount", "ClaimResponse")
    assert p.fhir_type == "Money"


def test_where_filters() -> None:
    p = lin("Account.subject.where(resolve() is Patient)", "Account")
    acct = {"subject": [{"reference": "Patient/1"}, {"reference": "Device/2"}]}
    assert p.evaluate(acct) == [{"reference": "Patient/1"}]
    p = lin("Patient.telecom.where(system='email')", "Patient")
    pat = {"telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}]}
    assert p.evaluate(pat) == [{"system": "email", "value": "a@b"}]
    p = lin("Patient.extension('http://hl7.org/fhir/StructureDefinition/x')", "Patient")
    ext = {"url": "http://hl7.org/fhir/StructureDefinition/x", "valueString": "v"}
    pat = {"extension": [ext, {"url": "other", "valueString": "w"}]}
    assert p.evaluate(pat) == [ext] and p.fhir_type == "Extension"


def test_exists_and_not_false() -> None:
    (p,) = compile_branch("Patient.deceased.exists() and Patient.deceased != false", "Patient")
    assert isinstance(p, ExistsNotFalse)
    assert p.evaluate({}) == [False]
    assert p.evaluate({"deceasedBoolean": False}) == [False]
    assert p.evaluate({"deceasedBoolean": True}) == [True]
    assert p.evaluate({"deceasedDateTime": "2020-01-01"}) == [True]


@pytest.mark.parametrize(
    "text",
    [
        "Bundle.entry[0].resource",
        "Claim.nosuchfield",
        "Patient.name.first()",
        "Claim.item.where(sequence > 1)",
        "Patient.patient",  # rooted elsewhere
    ],
)
def test_unsupported_forms_do_not_compile(text: str) -> None:
    base = "Claim" if text.startswith("Claim") else text.split(".")[0]
    if text == "Patient.patient":
        base = "Claim"
    with pytest.raises(CompileError):
        compile_branch(text, base)


def test_fallback_uses_fhirpathpy() -> None:
    ext = compile_expression("Claim.item.where(sequence > 1).sequence", "Claim")
    assert ext.paths == () and ext.fallback is not None
    claim = {"resourceType": "Claim", "item": [{"sequence": 1}, {"sequence": 2}]}
    assert [v for v, _ in ext.values(claim)] == [2]
    # fast=False compiles everything through fhirpathpy
    slow = compile_expression("Claim.use", "Claim", fast=False)
    assert slow.paths == () and [v for v, _ in slow.values({"resourceType": "Claim", "use": "claim"})] == [
        "claim"
    ]


def test_expression_root() -> None:
    assert expression_root("(Claim.x as Period)") == "Claim"
    assert expression_root("Claim.patient") == "Claim"


def test_reference_type() -> None:
    assert reference_type({"reference": "Patient/1"}) == "Patient"
    assert reference_type({"reference": "http://x/fhir/Patient/1/_history/2"}) == "Patient"
    assert reference_type({"reference": "urn:uuid:abc", "type": "Patient"}) == "Patient"
    assert reference_type({"identifier": {"value": "1"}}) is None
    assert reference_type("Patient/1") is None


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("Observation/a.b-c", "Observation"),
        ("Patient/1/_history/", None),  # no version after _history
        ("Patient/1/_history/a/b", None),
        ("x/Patient/1/_history/2", "Patient"),
        ("a/Patient/_history/x", None),  # "a" is not a type
        ("patient/1", None),
        ("P/1", None),  # a type has two letters at least
        ("Patient/" + "1" * 64, "Patient"),
        ("Patient/" + "1" * 65, None),
        ("Patient/1/extra", None),
        ("Patient//1", None),
        ("Patient/$x", None),
        ("/Patient/1", "Patient"),
        ("#contained", None),
        ("", None),
    ],
)
def test_reference_type_reads_the_last_segments(ref: str, expected: str | None) -> None:
    """Type/id (or Type/id/_history/v) at the end of the reference, after a '/' or at its start."""
    assert reference_type({"reference": ref}) == expected
    assert reference_type({"reference": ref, "type": "Group"}) == (expected or "Group")


def test_later_files_override_and_lists_load(tmp_path: Path) -> None:
    (tmp_path / "SearchParameter-custom.json").write_text(
        json.dumps(
            [
                {
                    "resourceType": "SearchParameter",
                    "url": "urn:test:claim-use",
                    "code": "use",
                    "base": ["Claim"],
                    "type": "string",
                    "expression": "Claim.use",
                },
                {
                    "resourceType": "SearchParameter",
                    "url": "urn:test:no-type",
                    "code": "x",
                    "base": ["Claim"],
                    "type": "bogus",
                },
            ]
        )
    )
    core = json.loads((PROFILES / "search-parameters-r4-all.json").read_text())
    core["entry"] = [e for e in core["entry"] if e["resource"]["id"] == "Claim-use"]
    (tmp_path / "search-parameters-r4-all.json").write_text(json.dumps(core))
    reg = SearchParamRegistry.load(tmp_path)
    use = reg.get("Claim", "use")
    assert use is not None and use.url == "urn:test:claim-use" and use.type == "string"
    assert reg.skipped == ["urn:test:no-type"]
    assert reg.resource_types() == ["Claim"]


def test_carin_file_is_a_valid_bundle() -> None:
    data = json.loads((PROFILES / "SearchParameter-carin-bb.json").read_text())
    assert data["resourceType"] == "Bundle"
    codes = sorted(e["resource"]["code"] for e in data["entry"])
    assert codes == sorted(["type", "insurer", "service-date", "service-start-date", "billable-period-start"])
    for e in data["entry"]:
        r = e["resource"]
        assert r["base"] == ["ExplanationOfBenefit"] and r["status"] == "active"
        assert e["fullUrl"] == r["url"]


def test_a_union_of_other_parameters_reads_their_rows() -> None:
    """Observation's combo parameters are exact unions of two others: they get no index rows and
    search reads their parts' rows; everything else keeps its own."""
    obs = registry().for_type("Observation")
    assert {c: p.indexed_as for c, p in obs.items() if p.indexed_as} == {
        "combo-code": ("code", "component-code"),
        "combo-data-absent-reason": ("component-data-absent-reason", "data-absent-reason"),
        "combo-value-concept": ("component-value-concept", "value-concept"),
        "combo-value-quantity": ("component-value-quantity", "value-quantity"),
    }
    combo = obs["combo-code"]
    assert combo.searchable and not combo.indexed and combo.index_codes == ("code", "component-code")
    assert "combo-code" not in registry().indexed_for_type("Observation")
    assert obs["code"].index_codes == ("code",) and obs["code"].indexed
    assert not any(
        p.indexed_as
        for rt in registry().resource_types()
        if rt != "Observation"
        for p in registry().for_type(rt).values()
    )


def _custom(code: str, ptype: str, expression: str) -> dict[str, object]:
    return {
        "resourceType": "SearchParameter",
        "url": f"http://example.org/SearchParameter/{code}",
        "code": code,
        "base": ["Observation"],
        "type": ptype,
        "expression": expression,
    }


def test_only_exact_unions_of_the_same_type_share_rows() -> None:
    reg = SearchParamRegistry.load(PROFILES)
    reg.add_definition(_custom("code-or-status", "token", "(Observation.code) | Observation.status"))
    reg.add_definition(_custom("code-or-site", "token", "Observation.code | Observation.bodySite"))
    reg.add_definition(_custom("code-as-text", "string", "Observation.code | Observation.component.code"))
    reg.add_definition(
        _custom("subject-or-performer", "reference", "Observation.subject | Observation.performer")
    )
    obs = reg.for_type("Observation")
    assert obs["code-or-status"].indexed_as == ("code", "status")
    assert obs["code-or-site"].indexed  # Observation.bodySite is no parameter's expression
    assert obs["code-as-text"].indexed  # the parts are tokens
    assert obs["subject-or-performer"].indexed  # reference rows are never shared
