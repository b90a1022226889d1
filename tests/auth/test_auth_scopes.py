"""Scope algebra: v1 and v2 syntax, wildcards, granular parameters, narrowing."""

from __future__ import annotations

import pytest

from fhirbill.auth import scopes as sc

PHARMACY = "http://terminology.hl7.org/CodeSystem/claim-type|pharmacy"


def test_parse_v2_letters_in_order() -> None:
    s = sc.parse("patient/ExplanationOfBenefit.rs")
    assert s is not None
    assert (s.context, s.resource, s.perms, s.version) == (
        "patient",
        "ExplanationOfBenefit",
        frozenset("rs"),
        2,
    )


@pytest.mark.parametrize(
    "raw",
    [
        "patient/Claim.dus",
        "patient/Claim.sr",
        "patient/Claim.x",
        "patient/Claim.",
        "Claim.rs",
        "group/Claim.rs",
        "patient/claim.rs",
        "patient/Claim.read?category=x",
        "patient/Claim.rs?",
    ],
)
def test_invalid_scopes_never_guessed(raw: str) -> None:
    assert sc.parse(raw) is None
    assert not sc.allows([raw], "patient", "Claim", "r")


@pytest.mark.parametrize(
    ("raw", "letters"),
    [("patient/Claim.read", "rs"), ("patient/Claim.write", "cud"), ("patient/Claim.*", "cruds")],
)
def test_v1_equivalents(raw: str, letters: str) -> None:
    s = sc.parse(raw)
    assert s is not None and s.version == 1
    for letter in "cruds":
        assert sc.allows([raw], "patient", "Claim", letter) is (letter in letters)


def test_v1_write_gives_no_read() -> None:
    assert not sc.allows("patient/Claim.write", "patient", "Claim", "r")
    assert sc.allows("patient/Claim.write", "patient", "Claim", "u")


def test_rs_vs_r_vs_s() -> None:
    assert sc.allows("patient/ExplanationOfBenefit.rs", "patient", "ExplanationOfBenefit", "r")
    assert sc.allows("patient/ExplanationOfBenefit.rs", "patient", "ExplanationOfBenefit", "s")
    assert sc.allows("patient/ExplanationOfBenefit.r", "patient", "ExplanationOfBenefit", "r")
    assert not sc.allows("patient/ExplanationOfBenefit.r", "patient", "ExplanationOfBenefit", "s")
    assert sc.allows("patient/ExplanationOfBenefit.s", "patient", "ExplanationOfBenefit", "s")
    assert not sc.allows("patient/ExplanationOfBenefit.s", "patient", "ExplanationOfBenefit", "r")
    # scopes union
    assert sc.allows("patient/Claim.r patient/Claim.s", "patient", "Claim", "s")


def test_type_and_context_must_match() -> None:
    assert not sc.allows("patient/ExplanationOfBenefit.rs", "patient", "Coverage", "r")
    assert not sc.allows("patient/Claim.rs", "user", "Claim", "r")
    assert not sc.allows("system/Claim.c", "system", "Claim", "r")
    assert sc.allows("system/Claim.c", "system", "Claim", "c")


def test_wildcards_cover_types_but_not_audit_events() -> None:
    assert sc.allows("system/*.rs", "system", "Coverage", "s")
    assert sc.allows("patient/*.read", "patient", "ExplanationOfBenefit", "r")
    assert not sc.allows("system/*.rs", "system", "AuditEvent", "s")
    assert not sc.allows("system/*.*", "system", "AuditEvent", "r")
    assert sc.allows("system/AuditEvent.rs", "system", "AuditEvent", "s")


def test_audit_events_are_read_only_whatever_the_scope() -> None:
    for letter in "cud":
        assert not sc.allows("system/AuditEvent.cruds", "system", "AuditEvent", letter)


def test_granular_constraints() -> None:
    granted = f"patient/ExplanationOfBenefit.rs?type={PHARMACY}"
    assert sc.allows(granted, "patient", "ExplanationOfBenefit", "s")
    assert sc.constraints(granted, "patient", "ExplanationOfBenefit", "s") == [{"type": PHARMACY}]
    both = granted + " patient/ExplanationOfBenefit.r"
    assert sc.constraints(both, "patient", "ExplanationOfBenefit", "r") == [{}]
    assert sc.constraints(both, "patient", "ExplanationOfBenefit", "s") == [{"type": PHARMACY}]
    assert sc.constraints(granted, "patient", "Claim", "s") == []


def test_granular_percent_encoded_value() -> None:
    s = sc.parse("patient/Observation.rs?category=http%3A%2F%2Fx%7Clab")
    assert s is not None and dict(s.params) == {"category": "http://x|lab"}


def test_unknown_letter_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        sc.allows("system/*.rs", "system", "Claim", "x")


def test_narrow_keeps_covered_requests_verbatim() -> None:
    reg = "openid fhirUser launch/patient patient/*.rs"
    assert sc.narrow("openid fhirUser patient/Claim.read", reg) == [
        "openid",
        "fhirUser",
        "patient/Claim.read",
    ]


def test_narrow_drops_unregistered_and_intersects() -> None:
    reg = "patient/*.rs user/Claim.r"
    assert sc.narrow("offline_access patient/Claim.cruds", reg) == ["patient/Claim.rs"]
    assert sc.narrow("patient/*.cruds", reg) == ["patient/*.rs"]
    assert sc.narrow("user/*.rs", reg) == ["user/Claim.r"]
    assert sc.narrow("system/*.rs", reg) == []
    assert sc.narrow("patient/Claim.dus", reg) == []


def test_narrow_never_reaches_audit_events_through_wildcards() -> None:
    assert sc.narrow("system/AuditEvent.rs", "system/*.rs") == []
    assert sc.narrow("system/AuditEvent.rs", "system/AuditEvent.rs") == ["system/AuditEvent.rs"]
    # a wildcard request does not name AuditEvent either
    assert sc.narrow("system/*.rs", "system/AuditEvent.rs") == []


def test_narrow_granular() -> None:
    reg = f"patient/ExplanationOfBenefit.rs?type={PHARMACY}"
    got = sc.narrow("patient/ExplanationOfBenefit.rs", reg)
    assert len(got) == 1
    s = sc.parse(got[0])
    assert s is not None and dict(s.params) == {"type": PHARMACY}
    # a granular request under an unrestricted registration is covered as written
    assert sc.narrow(reg, "patient/*.rs") == [reg]
    # conflicting values of one parameter: refuse rather than guess
    assert sc.narrow("patient/ExplanationOfBenefit.rs?type=a|b", reg) == []


def test_covered_by() -> None:
    granted = "openid patient/*.rs offline_access"
    assert sc.covered_by("patient/Claim.r", granted)
    assert sc.covered_by("openid patient/*.rs", granted)
    assert not sc.covered_by("patient/Claim.c", granted)
    assert not sc.covered_by("fhirUser", granted)
    assert not sc.covered_by("patient/AuditEvent.r", granted)
    assert not sc.covered_by("nonsense", granted)
