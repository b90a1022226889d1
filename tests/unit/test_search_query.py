"""Search request parsing (fhirbill.fhir.search_query)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhirbill.fhir.errors import FHIRError
from fhirbill.fhir.search_query import (
    DateValue,
    IncludeSpec,
    NumberValue,
    ParsedSearch,
    QuantityValue,
    ReferenceValue,
    SearchClause,
    StringValue,
    TextValue,
    TokenValue,
    UriValue,
    parse_search,
    split_escaped,
    unescape,
)
from fhirbill.fhir.searchparams import SearchParamRegistry

ROOT = Path(__file__).resolve().parents[2]
BASE = "http://127.0.0.1:8080/fhir"


@cache
def registry() -> SearchParamRegistry:
    return SearchParamRegistry.load(ROOT / "profiles")


def parse(rtype: str, *pairs: tuple[str, str], **kw: object) -> ParsedSearch:
    return parse_search(rtype, list(pairs), registry(), base_url=BASE, **kw)  # type: ignore[arg-type]


def one(rtype: str, name: str, value: str) -> SearchClause:
    (clause,) = parse(rtype, (name, value)).clauses
    return clause


def bad(rtype: str, *pairs: tuple[str, str], **kw: object) -> FHIRError:
    with pytest.raises(FHIRError) as exc:
        parse(rtype, *pairs, **kw)
    err = exc.value
    assert err.status == 400
    return err


# ---------------------------------------------------------------------------------------------
# token


def test_token_forms() -> None:
    c = one("Claim", "identifier", "sys|123,|456,sys2|,789")
    assert c.param.code == "identifier" and c.index_params == ("identifier",)
    assert c.values == (
        TokenValue("sys", "123"),
        TokenValue(None, "456", no_system=True),
        TokenValue("sys2", None),
        TokenValue(None, "789"),
    )


def test_token_modifiers() -> None:
    c = one("Claim", "status:not", "active")
    assert c.modifier == "not" and c.negated and c.values == (TokenValue(None, "active"),)
    c = one("Account", "type:text", "Patient Billing")
    assert c.values == (TextValue("patient billing"),)
    c = one("Patient", "identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|123")
    assert c.index_params == ("identifier:of-type",)
    assert c.values == (TokenValue("http://terminology.hl7.org/CodeSystem/v2-0203", "MR|123"),)
    bad("Patient", ("identifier:of-type", "MR|123"))
    bad("Patient", ("identifier:of-type", "sys||123"))


def test_token_escapes() -> None:
    c = one("Claim", "identifier", r"sys\|x|a\,b,c\\d")
    assert c.values == (TokenValue("sys|x", "a,b"), TokenValue(None, "c\\d"))


def test_missing() -> None:
    c = one("Claim", "status:missing", "true")
    assert c.missing is True and c.values == () and c.modifier == "missing"
    assert one("Claim", "patient:missing", "false").missing is False
    err = bad("Claim", ("status:missing", "maybe"))
    assert "status:missing" in err.issues[0].diagnostics


def test_empty_token_rejected() -> None:
    bad("Claim", ("identifier", "|"))


def test_unsupported_and_unknown_modifiers() -> None:
    err = bad("Claim", ("status:in", "http://vs"))
    assert err.issues[0].code == "not-supported"
    err = bad("Claim", ("status:whatever", "x"))
    assert "status:whatever" in err.issues[0].diagnostics and "x'" not in err.issues[0].diagnostics
    bad("Claim", ("patient:identifier", "sys|1"))
    bad("Claim", ("created:exact", "2024"))
    bad("Claim", ("_id:of-type", "a|b|c"))


# ---------------------------------------------------------------------------------------------
# reference


def test_reference_forms() -> None:
    c = one("Claim", "patient", f"Patient/1,2,{BASE}/Patient/3,http://elsewhere/fhir/Patient/4")
    assert c.values == (
        ReferenceValue("Patient", "1"),
        ReferenceValue("Patient", "2"),  # bare id: the only target type
        ReferenceValue("Patient", "3"),
        ReferenceValue(None, None, "http://elsewhere/fhir/Patient/4"),
    )
    c = one("Claim", "provider", "abc")
    assert c.values == (ReferenceValue(None, "abc"),)  # several targets: type unknown
    c = one("Claim", "provider:Organization", "abc")
    assert c.values == (ReferenceValue("Organization", "abc"),)
    c = one("Claim", "patient", "Patient/1/_history/3")
    assert c.values == (ReferenceValue("Patient", "1"),)


def test_reference_errors() -> None:
    err = bad("Claim", ("patient", "Organization/secret1"))  # not a target
    assert "secret1" not in err.issues[0].diagnostics
    assert "Organization" not in err.issues[0].diagnostics
    bad("Claim", ("provider:Organization", "Practitioner/1"))  # contradicts the modifier
    bad("Claim", ("provider:Patient", "1"))  # not a target type
    bad("Claim", ("patient", "not an id!"))


# ---------------------------------------------------------------------------------------------
# date, number, quantity


def test_date_prefixes_and_ranges() -> None:
    c = one("Claim", "created", "ge2024-01,lt2025,2024-03-05T10:00:00Z,sa2023-12-31T23:00:00-05:00")
    assert c.values == (
        DateValue("ge", datetime(2024, 1, 1), datetime(2024, 2, 1)),
        DateValue("lt", datetime(2025, 1, 1), datetime(2026, 1, 1)),
        DateValue("eq", datetime(2024, 3, 5, 10), datetime(2024, 3, 5, 10, 0, 1)),
        DateValue("sa", datetime(2024, 1, 1, 4), datetime(2024, 1, 1, 4, 0, 1)),
    )
    for prefix in ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb", "ap"):
        (v,) = one("Claim", "created", f"{prefix}2024").values
        assert isinstance(v, DateValue) and v.prefix == prefix


def test_date_plus_sign_decoded_as_space() -> None:
    (v,) = one("Claim", "created", "2024-03-05T10:00:00 02:00").values
    assert v == DateValue("eq", datetime(2024, 3, 5, 8), datetime(2024, 3, 5, 8, 0, 1))


@pytest.mark.parametrize("value", ["2024-13", "yesterday", "ge", "gt2024-02-30", "2024-01-01T10", "xx2024"])
def test_malformed_date_is_400_without_the_value(value: str) -> None:
    err = bad("Claim", ("created", value))
    diag = err.issues[0].diagnostics
    assert "'created'" in diag
    assert value not in diag


def test_repeated_parameters_are_and() -> None:
    ps = parse("Claim", ("created", "ge2024"), ("created", "lt2025"))
    assert [c.values[0].prefix for c in ps.clauses] == ["ge", "lt"]  # type: ignore[union-attr]


def test_number_precision() -> None:
    c = one("ChargeItem", "factor-override", "100,gt0.80,1e2")
    assert c.values == (
        NumberValue("eq", Decimal("100"), Decimal("99.5"), Decimal("100.5")),
        NumberValue("gt", Decimal("0.80"), Decimal("0.795"), Decimal("0.805")),
        NumberValue("eq", Decimal("1e2"), Decimal("50"), Decimal("150")),
    )
    bad("ChargeItem", ("factor-override", "abc"))
    bad("ChargeItem", ("factor-override", "NaN"))


def test_quantity_forms() -> None:
    c = one("Observation", "value-quantity", "5.4|http://unitsofmeasure.org|mg,le5.4||mg,gt5")
    assert c.values == (
        QuantityValue(
            "eq",
            Decimal("5.4"),
            Decimal("5.35"),
            Decimal("5.45"),
            "http://unitsofmeasure.org",
            "mg",
        ),
        QuantityValue("le", Decimal("5.4"), Decimal("5.35"), Decimal("5.45"), None, "mg"),
        QuantityValue("gt", Decimal("5"), Decimal("4.5"), Decimal("5.5"), None, None),
    )
    c = one("Invoice", "totalnet", "ge40|urn:iso:std:iso:4217|EUR")
    assert c.values[0] == QuantityValue(
        "ge", Decimal("40"), Decimal("39.5"), Decimal("40.5"), "urn:iso:std:iso:4217", "EUR"
    )
    bad("Observation", ("value-quantity", "5|mg"))
    bad("Observation", ("value-quantity", "five||mg"))


# ---------------------------------------------------------------------------------------------
# string, uri


def test_string_modifiers() -> None:
    c = one("Patient", "name", "Müller,JOSÉ")
    assert c.modifier is None
    assert c.values == (StringValue("Müller", "muller"), StringValue("JOSÉ", "jose"))
    assert one("Patient", "family:exact", "Chalmers").modifier == "exact"
    assert one("Patient", "family:contains", "alm").modifier == "contains"
    c = one("Patient", "address", r"1\, Main St")
    assert c.values == (StringValue("1, Main St", "1, main st"),)


def test_uri_modifiers() -> None:
    c = one("Claim", "_profile:below", "http://hl7.org/fhir/us/carin-bb")
    assert c.modifier == "below" and c.values == (UriValue("http://hl7.org/fhir/us/carin-bb"),)
    assert one("Claim", "_source:above", "http://x/a/b").modifier == "above"


# ---------------------------------------------------------------------------------------------
# chains and _has


def test_chain_one_level() -> None:
    c = one("Claim", "patient.identifier", "sys|123")
    assert c.param.code == "identifier" and c.on_types == ("Patient",)
    assert [(link.param.code, link.target_types) for link in c.chain] == [("patient", ("Patient",))]
    assert c.values == (TokenValue("sys", "123"),)
    c = one("ExplanationOfBenefit", "coverage.payor", "Organization/x")
    assert c.on_types == ("Coverage",) and c.values == (ReferenceValue("Organization", "x"),)


def test_chain_with_type_modifier_and_several_targets() -> None:
    c = one("Condition", "subject:Patient.name", "peter")
    assert c.chain[0].target_types == ("Patient",) and c.values == (StringValue("peter", "peter"),)
    c = one("Claim", "provider.name", "acme")
    # Practitioner, Organization and PractitionerRole? only those defining `name`
    assert set(c.chain[0].target_types) == {"Practitioner", "Organization"}


def test_chain_two_levels_and_modifiers_at_the_end() -> None:
    c = one("ExplanationOfBenefit", "coverage.payor.name:exact", "Acme")
    assert [link.param.code for link in c.chain] == ["coverage", "payor"]
    assert c.modifier == "exact"
    assert one("Claim", "patient.identifier:missing", "true").missing is True


def test_chain_errors() -> None:
    err = bad("Claim", ("status.name", "x"))
    assert "not a reference" in err.issues[0].diagnostics
    bad("Claim", ("patient.nosuch", "x"))
    bad("Claim", ("patient:Organization.name", "x"))
    bad("Claim", ("a.b.c.d.e", "x"))


def test_has() -> None:
    c = one("Patient", "_has:Claim:patient:status", "active")
    assert [(h.source_type, h.param.code) for h in c.has] == [("Claim", "patient")]
    assert c.param.code == "status" and c.on_types == ("Claim",)
    c = one("Patient", "_has:ExplanationOfBenefit:patient:service-date", "ge2015")
    assert c.values == (DateValue("ge", datetime(2015, 1, 1), datetime(2016, 1, 1)),)
    c = one("Patient", "_has:Claim:patient:_has:ClaimResponse:request:outcome", "complete")
    assert [(h.source_type, h.param.code) for h in c.has] == [
        ("Claim", "patient"),
        ("ClaimResponse", "request"),
    ]
    c = one("Patient", "_has:Claim:patient:insurer.name", "acme")
    assert c.has[0].source_type == "Claim" and c.chain[0].param.code == "insurer"


def test_has_errors() -> None:
    bad("Patient", ("_has:Claim:patient", "x"))
    bad("Patient", ("_has:Nope:patient:status", "x"))
    bad("Patient", ("_has:Claim:status:status", "x"))  # not a reference
    bad("Organization", ("_has:Claim:patient:status", "x"))  # Claim.patient never points here
    bad("Patient", ("_has:Claim:patient:nosuch", "x"))


# ---------------------------------------------------------------------------------------------
# unknown and unsupported parameters


def test_unknown_parameters_are_listed_not_parsed() -> None:
    ps = parse("Claim", ("foo", "1"), ("status", "active"), ("bar:exact", "2"), ("nope.x", "3"))
    assert ps.unknown == ("foo", "bar:exact", "nope.x")
    assert [c.name for c in ps.clauses] == ["status"]
    assert ps.self_params == (("status", "active"),)
    assert ps.ignored == ps.unknown


def test_unsupported_parameters() -> None:
    ps = parse("Observation", ("code-value-quantity", "x$5"), ("_content", "y"))
    assert ps.unsupported == ("code-value-quantity", "_content")
    assert ps.clauses == ()


def test_strict_refuses_unknown() -> None:
    err = bad("Claim", ("foo", "secret-value"), strict=True)
    assert "foo" in err.issues[0].diagnostics and "secret" not in err.issues[0].diagnostics
    assert parse("Claim", ("status", "active"), strict=True).clauses


def test_empty_values_are_ignored() -> None:
    ps = parse("Claim", ("status", ""), ("created", ","), ("_count", ""))
    assert ps.clauses == () and ps.count == 20 and ps.unknown == ()


# ---------------------------------------------------------------------------------------------
# result parameters


def test_count() -> None:
    assert parse("Claim").count == 20
    assert parse("Claim", ("_count", "5")).count == 5
    assert parse("Claim", ("_count", "0")).count == 0
    ps = parse("Claim", ("_count", "100000"))
    assert ps.count == 1000 and ps.self_params == (("_count", "1000"),)
    (w,) = ps.warnings
    assert w.severity == "warning" and "1000" in w.diagnostics
    assert parse("Claim", ("_count", "50"), default_count=10, max_count=30).count == 30
    for v in ("-1", "abc", "1.5", "٣"):
        err = bad("Claim", ("_count", v))
        assert "_count" in err.issues[0].diagnostics
    bad("Claim", ("_count", "1"), ("_count", "2"))
    bad("Claim", ("_count:exact", "1"))


def test_sort() -> None:
    ps = parse("ExplanationOfBenefit", ("_sort", "-service-date,_id,created"))
    assert [(k.param.code, k.descending) for k in ps.sort] == [
        ("service-date", True),
        ("_id", False),
        ("created", False),
    ]
    assert parse("Claim", ("_sort", "-_lastUpdated")).sort[0].param.column == "last_updated"
    bad("Claim", ("_sort", "nope"))
    bad("Claim", ("_sort", "created,-created"))
    bad("Claim", ("_sort", "created,,status"))
    bad("Observation", ("_sort", "code-value-quantity"))


def test_total_summary_elements() -> None:
    ps = parse("Claim", ("_total", "accurate"), ("_summary", "count"), ("_elements", "id,status, patient"))
    assert ps.total == "accurate" and ps.summary == "count"
    assert ps.elements == ("id", "status", "patient")
    bad("Claim", ("_total", "some"))
    bad("Claim", ("_summary", "yes"))
    bad("Claim", ("_elements", "a b"))


def test_include_and_revinclude() -> None:
    ps = parse(
        "Claim",
        ("_include", "Claim:patient"),
        ("_include", "Claim:provider:Organization"),
        ("_include:iterate", "Patient:general-practitioner"),
        ("_include", "*"),
        ("_revinclude", "ClaimResponse:request"),
        ("_revinclude:iterate", "ExplanationOfBenefit:claim"),
        ("_revinclude", "*"),
        ("_include", "Claim:*"),
    )
    reg = registry()
    assert ps.includes == (
        IncludeSpec("Claim", reg.get("Claim", "patient")),
        IncludeSpec("Claim", reg.get("Claim", "provider"), "Organization"),
        IncludeSpec("Patient", reg.get("Patient", "general-practitioner"), None, iterate=True),
        IncludeSpec("Claim", None),
        IncludeSpec("Claim", None),
    )
    assert ps.revincludes == (
        IncludeSpec("ClaimResponse", reg.get("ClaimResponse", "request"), reverse=True),
        IncludeSpec(
            "ExplanationOfBenefit",
            reg.get("ExplanationOfBenefit", "claim"),
            iterate=True,
            reverse=True,
        ),
        IncludeSpec(None, None, reverse=True),
    )
    assert ps.warnings == ()
    assert parse("Claim", ("_include:recurse", "Patient:organization")).includes[0].iterate


def test_include_of_another_type_warns() -> None:
    ps = parse("Claim", ("_include", "Patient:organization"))
    assert len(ps.includes) == 1
    (w,) = ps.warnings
    assert "iterate" in w.diagnostics


def test_include_errors() -> None:
    bad("Claim", ("_include", "Claim"))
    bad("Claim", ("_include", "Nope:patient"))
    bad("Claim", ("_include", "Claim:status"))  # not a reference
    bad("Claim", ("_include", "Claim:nosuch"))
    bad("Claim", ("_include", "Claim:patient:Organization"))  # not a target
    bad("Claim", ("_include:deep", "Claim:patient"))


def test_passthrough_and_format() -> None:
    ps = parse(
        "Claim",
        ("_format", "json"),
        ("_cursor", "abc"),
        ("status", "active"),
        passthrough={"_cursor"},
    )
    assert ps.extra == (("_format", "json"), ("_cursor", "abc"))
    assert ps.unknown == () and len(ps.clauses) == 1
    assert parse("Claim", ("_cursor", "abc")).unknown == ("_cursor",)


def test_main_table_parameters() -> None:
    c = one("Claim", "_id", "a,b")
    assert c.param.column == "id" and c.values == (TokenValue(None, "a"), TokenValue(None, "b"))
    c = one("Claim", "_lastUpdated", "gt2024-01-01T00:00:00Z")
    assert c.param.column == "last_updated"


def test_self_params_keep_order_and_drop_unknown() -> None:
    ps = parse("Claim", ("patient", "Patient/1"), ("zzz", "1"), ("_sort", "-created"), ("_count", "10"))
    assert ps.self_params == (("patient", "Patient/1"), ("_sort", "-created"), ("_count", "10"))


def test_search_modules_are_pure() -> None:
    """fhirbill.fhir imports no web or database library (checked in a fresh interpreter)."""
    code = (
        "import sys, fhirbill.fhir.search_query, fhirbill.fhir.indexer;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('flask', 'sqlalchemy', 'werkzeug')"
        " or (m.startswith('fhirbill.') and not m.startswith('fhirbill.fhir'))];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------------------------------------
# escaping


def test_split_and_unescape() -> None:
    assert split_escaped(r"a\,b,c", ",") == [r"a\,b", "c"]
    assert split_escaped("a|b|c", "|", 1) == ["a", "b|c"]
    assert split_escaped("", ",") == [""]
    assert unescape(r"a\,b\|c\$d\\e") == "a,b|c$d\\e"
    assert unescape(r"a\nb") == r"a\nb"


@given(st.lists(st.text(alphabet="ab,|$\\", max_size=6), min_size=1, max_size=4))
def test_escaping_round_trips(items: list[str]) -> None:
    def escape(s: str) -> str:
        return s.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")

    joined = ",".join(escape(i) for i in items)
    assert [unescape(p) for p in split_escaped(joined, ",")] == items
