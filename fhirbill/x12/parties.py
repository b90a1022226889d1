"""The people and organisations of an 837: billing provider, subscriber, patient, payer, 2310 loops.

Each function reads resources through a `ClaimReader`, records an issue for every missing or
unusable value, and returns finished segments (without the terminator). FHIRPath expressions
point into referenced resources with ``resolve()``: ``Claim.provider.resolve().address``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fhirbill.fhir.billing import TAX_ID_SYSTEM, V2_0203
from fhirbill.x12.claims import (
    JSON,
    ClaimReader,
    codes,
    first_code,
    identifier,
    npi,
    official_name,
    postal_address,
    typed_identifier,
)
from fhirbill.x12.config import X12Config
from fhirbill.x12.text import US_STATES, clean, d8, digits, luhn_npi_ok, segment

NUCC_TAXONOMY = "http://nucc.org/provider-taxonomy"
RELATIONSHIP_SYSTEM = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
SOPT_SYSTEMS = ("https://nahdo.org/sopt", "urn:oid:2.16.840.1.113883.3.221.5")

# Coverage.relationship (subscriber-relationship) -> 2000C PAT01 individual relationship code.
PAT01 = {
    "spouse": "01",
    "child": "19",
    "common": "53",
    "parent": "G8",
    "other": "G8",
    "injured": "21",
}
# Claim.insurance.sequence -> SBR01 payer responsibility sequence.
SBR01 = dict(enumerate("PSTABCDEFGH", start=1))
# Source of Payment Typology (first digits) -> SBR09 claim filing indicator; the default is CI.
_SOPT_FILING = (("311", "CH"), ("32", "VA"), ("1", "MB"), ("2", "MC"), ("3", "OF"), ("6", "BL"))
_GENDER = {"male": "M", "female": "F"}
_TAXONOMY = re.compile(r"^[0-9A-Z]{9}X$")


@dataclass(slots=True)
class Billing:
    """The 2000A/2010AA segments and the facts later loops compare against."""

    segments: list[str]
    npi: str
    address_key: tuple[str, ...]


@dataclass(slots=True)
class Insured:
    """2000B (+2000C) segments, split around where the claim loop goes, and the payer id."""

    subscriber: list[str]  # HL*2, SBR, 2010BA, 2010BB
    patient: list[str]  # HL*3, PAT, 2010CA; empty when the patient is the subscriber
    payer_id: str
    payer_name: str


def taxonomy(concepts: Any) -> str | None:
    """The first NUCC provider taxonomy code among CodeableConcepts."""
    for concept in concepts or ():
        for code in codes(concept, NUCC_TAXONOMY):
            if _TAXONOMY.match(code):
                return code
    return None


def person_name(r: ClaimReader, resource: JSON | None, expr: str) -> list[str]:
    """NM103-NM107 for a person: last, first, middle, prefix (unused), suffix."""
    name = official_name(resource)
    if name is None:
        r.error("required", "X12-NAME", "A name is required", f"{expr}.name")
        return ["", "", "", "", ""]
    last = clean(name.get("family"), 60)
    given = [g for g in name.get("given") or () if isinstance(g, str)]
    first = clean(given[0], 35) if given else ""
    middle = clean(" ".join(given[1:]), 25)
    suffixes = name.get("suffix") or ()
    suffix = clean(suffixes[0], 10) if suffixes else ""
    if not last:
        r.error(
            "required",
            "X12-NAME",
            "A family name with letters or digits of the X12 basic character set is required",
            f"{expr}.name.family",
        )
    return [last, first, middle, "", suffix]


def org_name(r: ClaimReader, resource: JSON | None, expr: str) -> str:
    """NM103 for an organisation."""
    name = clean((resource or {}).get("name"), 60)
    if not name:
        r.error("required", "X12-NAME", "An organization name is required", f"{expr}.name")
    return name


def address(r: ClaimReader, resource: JSON | None, expr: str, zip9: bool, required: bool = True) -> list[str]:
    """N3 and N4 from the resource's address; with `required` False, [] instead of issues."""
    addr = postal_address(resource)
    problems: list[tuple[str, str, str]] = []
    lines = [clean(x, 55) for x in (addr or {}).get("line") or () if isinstance(x, str)]
    lines = [x for x in lines if x]
    city = clean((addr or {}).get("city"), 30)
    state = clean((addr or {}).get("state"), 2)
    postal = digits((addr or {}).get("postalCode"))
    if addr is None:
        problems.append(("required", "An address is required", f"{expr}.address"))
    else:
        if not lines:
            problems.append(("required", "An address line is required", f"{expr}.address.line"))
        if len(city) < 2:
            problems.append(("required", "A city is required", f"{expr}.address.city"))
        if state not in US_STATES:
            problems.append(("value", "A US state code is required", f"{expr}.address.state"))
        if zip9 and len(postal) != 9:
            problems.append(("value", "A 9-digit ZIP code (ZIP+4) is required", f"{expr}.address.postalCode"))
        elif len(postal) not in (5, 9):
            problems.append(("value", "A 5- or 9-digit ZIP code is required", f"{expr}.address.postalCode"))
    if problems:
        if required:
            for code, diagnostics, where in problems:
                r.error(code, "X12-ADDRESS", diagnostics, where)
        return []
    return [segment("N3", *lines[:2]), segment("N4", city, state, postal)]


def demographics(r: ClaimReader, person: JSON | None, expr: str, required: bool = True) -> list[str]:
    """DMG with birth date and gender (unknown or other as U)."""
    birth = d8((person or {}).get("birthDate"))
    if birth is None:
        if required:
            r.error("required", "X12-BIRTHDATE", "A full birth date is required", f"{expr}.birthDate")
        return []
    return [segment("DMG", "D8", birth, _GENDER.get((person or {}).get("gender") or "", "U"))]


def checked_npi(r: ClaimReader, resource: JSON | None, expr: str, what: str) -> str:
    """The resource's NPI after the Luhn check, or "" with an issue."""
    value = npi(resource)
    if not value:
        r.error(
            "required",
            "X12-NPI",
            f"{what} needs an NPI (http://hl7.org/fhir/sid/us-npi)",
            f"{expr}.identifier",
        )
        return ""
    if not luhn_npi_ok(value):
        r.error("value", "X12-NPI", f"{what} NPI {value} fails the check digit", f"{expr}.identifier")
        return ""
    return value


def billing_provider(r: ClaimReader) -> Billing:
    """2000A and 2010AA: HL*1, PRV*BI, NM1*85 with NPI, N3/N4 with a 9-digit ZIP, REF*EI."""
    expr = "Claim.provider.resolve()"
    provider = r.resolve(
        r.claim.get("provider"),
        "Claim.provider",
        ("Organization", "Practitioner"),
        "Claim.provider",
    )
    segments = [segment("HL", "1", "", "20", "1")]
    if provider is None:
        return Billing(segments, "", ())
    is_org = provider["resourceType"] == "Organization"
    tax = taxonomy(
        provider.get("type") if is_org else [q.get("code") for q in provider.get("qualification") or ()]
    )
    if tax:
        segments.append(segment("PRV", "BI", "PXC", tax))
    number = checked_npi(r, provider, expr, "The billing provider")
    if is_org:
        segments.append(segment("NM1", "85", "2", org_name(r, provider, expr), "", "", "", "", "XX", number))
    else:
        segments.append(segment("NM1", "85", "1", *person_name(r, provider, expr), "XX", number))
    where = address(r, provider, expr, zip9=True)
    segments += where
    tin = digits(identifier(provider, TAX_ID_SYSTEM))
    if len(tin) != 9:
        r.error(
            "required",
            "X12-TAX-ID",
            f"The billing provider needs a 9-digit tax id (identifier system {TAX_ID_SYSTEM})",
            f"{expr}.identifier",
        )
    segments.append(segment("REF", "EI", tin))
    return Billing(segments, number, tuple(where))


def _relationship(r: ClaimReader, coverage: JSON, expr: str) -> str:
    """The patient's subscriber-relationship code to the subscriber ("self" when the same)."""
    code = first_code(coverage.get("relationship"), RELATIONSHIP_SYSTEM)
    if code:
        return code
    subscriber = (coverage.get("subscriber") or {}).get("reference")
    if subscriber is None or subscriber == (r.claim.get("patient") or {}).get("reference"):
        return "self"
    r.error(
        "required",
        "X12-RELATIONSHIP",
        "Coverage.relationship is required when the subscriber is not the patient",
        f"{expr}.relationship",
    )
    return "self"


def filing_indicator(coverage: JSON, institutional: bool) -> str:
    """SBR09 from Coverage.type in the Source of Payment Typology; CI (commercial) otherwise."""
    for code in codes(coverage.get("type"), SOPT_SYSTEMS):
        for prefix, indicator in _SOPT_FILING:
            if code.startswith(prefix):
                return "MA" if indicator == "MB" and institutional else indicator
    return "CI"


def payer_id(r: ClaimReader, payer: JSON, config: X12Config, expr: str) -> str:
    """The clearinghouse payer id: the configured override, else the NIIP-typed identifier."""
    key = payer.get("id") or ""
    value = config.payer_id_overrides.get(key) or config.payer_id_overrides.get(f"Organization/{key}")
    value = clean(value or typed_identifier(payer, V2_0203, "NIIP"), 80)
    if len(value) < 2:
        r.error(
            "required",
            "X12-PAYER-ID",
            "The payer needs a clearinghouse payer id: an identifier with type NIIP "
            f"({V2_0203}) or an entry in the payer id mapping",
            f"{expr}.identifier",
        )
    return value


def insured(r: ClaimReader, config: X12Config, institutional: bool) -> Insured:
    """2000B (SBR, 2010BA subscriber, 2010BB payer) and, for a dependent, 2000C/2010CA."""
    claim = r.claim
    insurance = [i for i in claim.get("insurance") or () if isinstance(i, dict)]
    index = next((n for n, i in enumerate(insurance) if i.get("focal")), 0)
    patient = r.resolve(claim.get("patient"), "Claim.patient", ("Patient",), "Claim.patient")
    if not insurance:
        r.error(
            "required",
            "X12-COVERAGE",
            "Claim.insurance with a focal coverage is required",
            "Claim.insurance",
        )
        return Insured([], [], "", "")
    ins = insurance[index]
    cov_expr = f"Claim.insurance[{index}].coverage.resolve()"
    coverage = r.resolve(
        ins.get("coverage"), f"Claim.insurance[{index}].coverage", ("Coverage",), "The coverage"
    )
    if coverage is None:
        return Insured([], [], "", "")
    relationship = _relationship(r, coverage, cov_expr)
    is_self = relationship == "self"
    if is_self:
        subscriber, sub_expr = patient, "Claim.patient.resolve()"
    else:
        sub_expr = f"{cov_expr}.subscriber.resolve()"
        subscriber = r.resolve(
            coverage.get("subscriber"),
            f"{cov_expr}.subscriber",
            ("Patient", "RelatedPerson"),
            "The subscriber",
        )
    group_no, group_name = "", ""
    for cls in coverage.get("class") or ():
        if "group" in codes(cls.get("type"), COVERAGE_CLASS):
            group_no, group_name = clean(cls.get("value"), 50), clean(cls.get("name"), 60)
            break
    sequence = ins.get("sequence") or index + 1
    sbr = segment(
        "SBR",
        SBR01.get(sequence, "U"),
        "18" if is_self else "",
        group_no,
        "" if group_no else group_name,
        "",
        "",
        "",
        "",
        filing_indicator(coverage, institutional),
    )
    member = clean(coverage.get("subscriberId") or typed_identifier(coverage, V2_0203, "MB"), 80)
    if len(member) < 2:
        r.error(
            "required",
            "X12-SUBSCRIBER-ID",
            "The subscriber's member id is required",
            f"{cov_expr}.subscriberId",
        )
    nm1_il = segment("NM1", "IL", "1", *person_name(r, subscriber, sub_expr), "MI", member)
    # The subscriber's address and DMG are required when the subscriber is the patient.
    sub_segments = [nm1_il, *address(r, subscriber, sub_expr, zip9=False, required=is_self)]
    sub_segments += demographics(r, subscriber, sub_expr, required=is_self)

    payer_expr = "Claim.insurer.resolve()"
    if claim.get("insurer"):
        payer = r.resolve(claim.get("insurer"), "Claim.insurer", ("Organization",), "Claim.insurer")
    else:
        payer_expr = f"{cov_expr}.payor[0].resolve()"
        payors = coverage.get("payor") or [None]
        payer = r.resolve(payors[0], f"{cov_expr}.payor[0]", ("Organization",), "The payer")
    pid, pname = "", ""
    if payer is not None:
        pname = org_name(r, payer, payer_expr)
        pid = payer_id(r, payer, config, payer_expr)
    hl2 = segment("HL", "2", "1", "22", "0" if is_self else "1")
    subscriber_loop = [
        hl2,
        sbr,
        *sub_segments,
        segment("NM1", "PR", "2", pname, "", "", "", "", "PI", pid),
    ]
    patient_loop: list[str] = []
    if not is_self:
        pat_expr = "Claim.patient.resolve()"
        patient_loop = [
            segment("HL", "3", "2", "23", "0"),
            segment("PAT", PAT01.get(relationship, "21")),
            segment("NM1", "QC", "1", *person_name(r, patient, pat_expr)),
            *address(r, patient, pat_expr, zip9=False),
            *demographics(r, patient, pat_expr),
        ]
    return Insured(subscriber_loop, patient_loop, pid, pname)


def care_team(r: ClaimReader, roles: tuple[str, ...]) -> tuple[JSON | None, str, JSON | None]:
    """The first careTeam member with one of `roles`: (Practitioner, FHIRPath, careTeam entry)."""
    for n, member in enumerate(r.claim.get("careTeam") or ()):
        if any(code in roles for code in codes(member.get("role"))):
            expr = f"Claim.careTeam[{n}].provider"
            found = r.resolve(
                member.get("provider"),
                expr,
                ("Practitioner", "Organization"),
                "The care team member",
            )
            return found, f"{expr}.resolve()", member
    return None, "", None


def provider_loop(
    r: ClaimReader, entity: str, resource: JSON, expr: str, person_only: bool
) -> tuple[list[str], str]:
    """A 2310 provider NM1 (person, or organisation where allowed) with its NPI."""
    number = checked_npi(r, resource, expr, "The provider")
    if resource["resourceType"] == "Organization":
        if person_only:
            r.error("value", "X12-PROVIDER", "This provider role must be a Practitioner", expr)
            return [], number
        return [
            segment("NM1", entity, "2", org_name(r, resource, expr), "", "", "", "", "XX", number)
        ], number
    return [segment("NM1", entity, "1", *person_name(r, resource, expr), "XX", number)], number


def facility_loop(r: ClaimReader, entity: str, billing: Billing) -> list[str]:
    """2310C/2310E service facility (NM1*77, N3, N4) when it is not at the billing address."""
    if not r.claim.get("facility"):
        return []
    location = r.resolve(r.claim["facility"], "Claim.facility", ("Location",), "Claim.facility")
    if location is None:
        return []
    expr = "Claim.facility.resolve()"
    where = address(r, location, expr, zip9=True)
    if not where or tuple(where) == billing.address_key:
        return []
    name = clean(location.get("name"), 60)
    if not name:
        r.error("required", "X12-NAME", "The facility Location needs a name", f"{expr}.name")
    number = npi(location)
    if number and not luhn_npi_ok(number):
        r.error(
            "value",
            "X12-NPI",
            f"The facility NPI {number} fails the check digit",
            f"{expr}.identifier",
        )
        number = None
    nm1 = segment("NM1", entity, "2", name, "", "", "", "", "XX" if number else "", number or "")
    return [nm1, *where]
