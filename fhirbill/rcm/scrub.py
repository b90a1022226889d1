"""Claim scrubbing: every check a Claim must pass before it becomes an 837P or 837I.

`scrub_claim` runs the billable-claim profile (`profiles/StructureDefinition-billable-claim-837p`
or `-837i`) and then the rules a profile cannot express, and returns one list of `Issue`s. Each
issue carries a stable rule code in `details_code` and the FHIRPath of the element to fix in
`expression`. Elements of referenced resources are addressed from the Claim with `resolve()`
(`Claim.provider.resolve().identifier[0].value`); the diagnostics name the referenced resource.

Rules in the profiles (cardinality, pattern and FHIRPath invariants on the Claim alone; the same
codes come out of `Claim/[id]/$validate?profile=...`):

- SCRUB-CLAIM-STATUS, SCRUB-CLAIM-USE, SCRUB-CLAIM-TYPE (professional / institutional pattern)
- SCRUB-PCN-MISSING, SCRUB-PCN-LENGTH (CLM01: one identifier in PCN_SYSTEM, at most 20 chars)
- SCRUB-PATIENT-MISSING, SCRUB-BILLING-PROVIDER-MISSING, SCRUB-INSURANCE-MISSING,
  SCRUB-FOCAL-INSURANCE, SCRUB-TOTAL-MISSING
- SCRUB-DIAGNOSIS-MISSING, SCRUB-DIAGNOSIS-COUNT (837P: at most 12), SCRUB-DIAGNOSIS-TYPE
  (a CodeableConcept, not a reference), SCRUB-DIAGNOSIS-SEQUENCE, SCRUB-DIAGNOSIS-PRINCIPAL,
  SCRUB-ICD10-SYSTEM, SCRUB-ICD10-SHAPE
- SCRUB-ITEM-MISSING, SCRUB-ITEM-COUNT (837P 50, 837I 999), SCRUB-ITEM-SEQUENCE,
  SCRUB-LINE-CHARGE-MISSING, SCRUB-SERVICE-DATE-MISSING, SCRUB-CARETEAM-POINTER
- SCRUB-DXPTR-MISSING (837P), SCRUB-DXPTR-COUNT (at most 4), SCRUB-DXPTR-RANGE
- SCRUB-PROCEDURE-CODE-SYSTEM (837P), SCRUB-PROCEDURE-CODE-SHAPE, SCRUB-MODIFIER-COUNT,
  SCRUB-MODIFIER-SHAPE
- SCRUB-FREQUENCY-CODE, SCRUB-FREQUENCY-MULTIPLE, SCRUB-FREQUENCY-ICN-MISSING
- 837I only: SCRUB-STATEMENT-PERIOD-MISSING, SCRUB-TOB-MISSING, SCRUB-TOB-SHAPE,
  SCRUB-FREQUENCY-TOB-MISMATCH, SCRUB-DISCHARGE-STATUS-MISSING, SCRUB-ADMTYPE-MISSING
  (warning), SCRUB-ATTENDING-MISSING, SCRUB-REVENUE-MISSING, SCRUB-REVENUE-SHAPE

Rules in code (they need referenced resources, the clock, a code list or exact decimals,
which FHIRPath in a profile cannot give us; fhirpathpy's `sum()` is also broken):

- SCRUB-TOTAL-MISMATCH, SCRUB-LINE-CHARGE-MISMATCH (Decimal arithmetic)
- SCRUB-SERVICE-DATE-FUTURE, SCRUB-SERVICE-DATE-OUTSIDE-PERIOD (today is a parameter)
- SCRUB-POS-MISSING (837P), SCRUB-POS-UNKNOWN (CMS list in `fhirbill.rcm.codes`)
- SCRUB-BILLING-PROVIDER-UNRESOLVED, SCRUB-BILLING-NPI-MISSING, SCRUB-BILLING-TAXID-MISSING,
  SCRUB-BILLING-TAXID-SHAPE, SCRUB-BILLING-NAME-MISSING, SCRUB-BILLING-ADDRESS-MISSING,
  SCRUB-BILLING-ZIP9
- SCRUB-NPI-CHECKDIGIT (every NPI: billing, care team, facility)
- SCRUB-PAYER-UNRESOLVED, SCRUB-PAYER-ID-MISSING (identifier typed NIIP), SCRUB-PAYER-NAME-MISSING,
  SCRUB-PAYER-MISMATCH (warning: Claim.insurer is not the Coverage.payor)
- SCRUB-COVERAGE-UNRESOLVED, SCRUB-COVERAGE-INACTIVE, SCRUB-COVERAGE-PERIOD,
  SCRUB-COVERAGE-BENEFICIARY, SCRUB-COVERAGE-RELATIONSHIP, SCRUB-SUBSCRIBER-ID-MISSING,
  SCRUB-SUBSCRIBER-UNRESOLVED, SCRUB-SUBSCRIBER-NAME-MISSING, SCRUB-SUBSCRIBER-ADDRESS-MISSING
  (only when the subscriber, another person, has an address: 2010BA N3/N4 are situational)
- SCRUB-PATIENT-UNRESOLVED, SCRUB-PATIENT-NAME-MISSING, SCRUB-PATIENT-BIRTHDATE-MISSING,
  SCRUB-PATIENT-GENDER-MISSING, SCRUB-PATIENT-ADDRESS-MISSING
- SCRUB-CARETEAM-UNRESOLVED, SCRUB-CARETEAM-NPI-MISSING, SCRUB-CARETEAM-NAME-MISSING
- SCRUB-FACILITY-UNRESOLVED, SCRUB-FACILITY-NAME-MISSING, SCRUB-FACILITY-ADDRESS-MISSING,
  SCRUB-FACILITY-ZIP9
- SCRUB-PROFILE-MISSING (warning: the profile is not in the registry; only code rules ran)
- SCRUB-LENGTH (X12 limits: names 60 / first names 35, address lines 55, city 30),
  SCRUB-LINE-CONTROL (line item control numbers at most 30 characters and unique)

Conventions this module expects (and the seeds follow): the name used is the first with use
`official` (else the first), the address used is the first; a replacement or void carries
`Claim.related.relationship.coding` {CLAIM_FREQUENCY_SYSTEM, 7 | 8} and the payer's claim number
in `Claim.related.reference` (system PAYER_ICN_SYSTEM); institutional frequency is the last
digit of the NUBC type of bill.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from fhirbill.fhir.billing import LINE_CONTROL_SYSTEM, NPI_SYSTEM, TAX_ID_SYSTEM, V2_0203
from fhirbill.fhir.errors import Issue
from fhirbill.fhir.profiles import ProfileRegistry, check, default_registry
from fhirbill.rcm.codes import EIN_RE, POS_CODES, POS_SYSTEM, ZIP9_RE, npi_valid

Kind = Literal["837P", "837I"]
Resolver = Callable[[str], "dict[str, Any] | None"]

PROFILE_URLS: dict[str, str] = {
    "837P": "http://fhirbill.dev/fhir/StructureDefinition/billable-claim-837p",
    "837I": "http://fhirbill.dev/fhir/StructureDefinition/billable-claim-837i",
}
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
NAME_MAX, FIRST_NAME_MAX, ADDRESS_LINE_MAX, CITY_MAX, LINE_CONTROL_MAX = 60, 35, 55, 30, 30

_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def claim_kind(claim: dict[str, Any]) -> Kind | None:
    """837P for a professional Claim, 837I for an institutional one, else None."""
    for coding in (claim.get("type") or {}).get("coding", []):
        if coding.get("code") == "professional":
            return "837P"
        if coding.get("code") == "institutional":
            return "837I"
    return None


def date_range(value: str | None) -> tuple[date, date] | None:
    """First and last day a FHIR date/dateTime can mean (2026-03 → March 1 .. March 31)."""
    if not value:
        return None
    m = _DATE_RE.match(value)
    if not m:
        return None
    y = int(m.group(1))
    if m.group(3):
        d = date(y, int(m.group(2)), int(m.group(3)))
        return d, d
    if m.group(2):
        mo = int(m.group(2))
        return date(y, mo, 1), date(y, mo, calendar.monthrange(y, mo)[1])
    return date(y, 1, 1), date(y, 12, 31)


def period_range(period: dict[str, Any] | None) -> tuple[date | None, date | None]:
    """The (earliest, latest) days of a Period; None for an open end."""
    if not period:
        return None, None
    start = date_range(period.get("start"))
    end = date_range(period.get("end"))
    return (start[0] if start else None), (end[1] if end else None)


def _ref_key(ref: str) -> str:
    """A reference reduced to Type/id (absolute URLs and _history stripped) for comparisons."""
    if ref.startswith(("#", "urn:")):
        return ref
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    return "/".join(parts[-2:])


def _money(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@dataclass
class _Scrub:
    claim: dict[str, Any]
    resolver: Resolver
    today: date
    kind: Kind
    issues: list[Issue] = field(default_factory=list)

    def add(
        self,
        rule: str,
        diagnostics: str,
        *expression: str,
        code: str = "business-rule",
        severity: str = "error",
    ) -> None:
        self.issues.append(Issue(severity, code, diagnostics, tuple(expression), rule))

    def resolve(self, reference: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
        """(reference text, resource) with `#id` looked up among the Claim's contained resources."""
        ref = (reference or {}).get("reference")
        if not ref:
            return "", None
        if ref.startswith("#"):
            for res in self.claim.get("contained", []):
                if res.get("id") == ref[1:]:
                    return ref, res
            return ref, None
        return ref, self.resolver(ref)


def scrub_claim(
    claim: dict[str, Any],
    resolve: Resolver,
    today: date,
    kind: Kind | None = None,
    registry: ProfileRegistry | None = None,
) -> list[Issue]:
    """Every issue that keeps a Claim from becoming a clean 837 (profile plus code rules)."""
    kind = kind or claim_kind(claim) or "837P"
    s = _Scrub(claim, resolve, today, kind)
    profile = (registry if registry is not None else default_registry()).get(PROFILE_URLS[kind])
    if profile is None:
        s.add(
            "SCRUB-PROFILE-MISSING",
            f"profile {PROFILE_URLS[kind]} is not loaded",
            "Claim",
            code="not-supported",
            severity="warning",
        )
    else:
        s.issues.extend(check(claim, profile))
    _check_amounts(s)
    _check_dates(s)
    if kind == "837P":
        _check_place_of_service(s)
    _check_billing_provider(s)
    _check_patient(s)
    _check_insurance(s)
    _check_care_team(s)
    _check_facility(s)
    _check_line_control(s)
    return s.issues


# -- amounts -----------------------------------------------------------------------------------


def _line_charge(item: dict[str, Any]) -> Decimal | None:
    net = _money((item.get("net") or {}).get("value"))
    if net is not None:
        return net
    unit = _money((item.get("unitPrice") or {}).get("value"))
    if unit is None:
        return None
    qty = _money((item.get("quantity") or {}).get("value"))
    factor = _money(item.get("factor"))
    return unit * (qty if qty is not None else 1) * (factor if factor is not None else 1)


def _check_amounts(s: _Scrub) -> None:
    items = s.claim.get("item", [])
    charges: list[Decimal] = []
    for i, item in enumerate(items):
        net = _money((item.get("net") or {}).get("value"))
        unit = _money((item.get("unitPrice") or {}).get("value"))
        if net is not None and unit is not None:
            qty = _money((item.get("quantity") or {}).get("value"))
            factor = _money(item.get("factor"))
            expected = unit * (qty if qty is not None else 1) * (factor if factor is not None else 1)
            if expected != net:
                s.add(
                    "SCRUB-LINE-CHARGE-MISMATCH",
                    f"item {item.get('sequence')}: net {net} is not unitPrice x quantity"
                    f" x factor = {expected}",
                    f"Claim.item[{i}].net",
                    code="value",
                )
        charge = _line_charge(item)
        if charge is None:
            return  # SCRUB-LINE-CHARGE-MISSING (profile) already says so
        charges.append(charge)
    total = _money((s.claim.get("total") or {}).get("value"))
    if total is None or not items:
        return
    line_sum = sum(charges, Decimal(0))
    if line_sum != total:
        s.add(
            "SCRUB-TOTAL-MISMATCH",
            f"Claim.total {total} must equal the sum of the line charges {line_sum} (CLM02 = sum of SV1-02)",
            "Claim.total.value",
            code="value",
        )


# -- dates ---------------------------------------------------------------------------------------


def _service_range(item: dict[str, Any]) -> tuple[date, date] | None:
    if item.get("servicedDate"):
        return date_range(item["servicedDate"])
    if item.get("servicedPeriod"):
        start, end = period_range(item["servicedPeriod"])
        if start is None:
            return None
        return start, end or start
    return None


def _claim_service_ranges(claim: dict[str, Any]) -> list[tuple[date, date]]:
    """The service date range of each line, falling back to the billable period."""
    bp_start, bp_end = period_range(claim.get("billablePeriod"))
    out = []
    for item in claim.get("item", []):
        rng = _service_range(item)
        if rng is None and bp_start is not None:
            rng = (bp_start, bp_end or bp_start)
        if rng is not None:
            out.append(rng)
    return out


def _check_dates(s: _Scrub) -> None:
    bp = s.claim.get("billablePeriod")
    bp_start, bp_end = period_range(bp)
    if bp_end is not None and bp_end > s.today:
        s.add(
            "SCRUB-SERVICE-DATE-FUTURE",
            f"Claim.billablePeriod ends after today ({s.today.isoformat()})",
            "Claim.billablePeriod.end",
            code="value",
        )
    if bp_start is not None and bp_end is not None and bp_start > bp_end:
        s.add(
            "SCRUB-SERVICE-DATE-OUTSIDE-PERIOD",
            "Claim.billablePeriod starts after it ends",
            "Claim.billablePeriod",
            code="value",
        )
    for i, item in enumerate(s.claim.get("item", [])):
        rng = _service_range(item)
        if rng is None:
            continue
        where = (
            f"Claim.item[{i}].servicedDate" if "servicedDate" in item else f"Claim.item[{i}].servicedPeriod"
        )
        if rng[1] > s.today:
            s.add(
                "SCRUB-SERVICE-DATE-FUTURE",
                f"item {item.get('sequence')}: service date is after today ({s.today.isoformat()})",
                where,
                code="value",
            )
        if (bp_start is not None and rng[0] < bp_start) or (bp_end is not None and rng[1] > bp_end):
            s.add(
                "SCRUB-SERVICE-DATE-OUTSIDE-PERIOD",
                f"item {item.get('sequence')}: service date is outside Claim.billablePeriod"
                f" {bp.get('start') if bp else ''}..{bp.get('end') if bp else ''}",
                where,
                code="value",
            )


# -- place of service ----------------------------------------------------------------------------


def _pos_codings(concept: dict[str, Any] | None) -> list[tuple[int, str]]:
    return [
        (j, c.get("code", ""))
        for j, c in enumerate((concept or {}).get("coding", []))
        if c.get("system") == POS_SYSTEM
    ]


def _check_place_of_service(s: _Scrub) -> None:
    found = False
    for i, item in enumerate(s.claim.get("item", [])):
        concept = item.get("locationCodeableConcept")
        if concept is None:
            continue
        codings = _pos_codings(concept)
        if not codings:
            s.add(
                "SCRUB-POS-UNKNOWN",
                f"item {item.get('sequence')}: locationCodeableConcept has no CMS place-of-service"
                f" coding ({POS_SYSTEM})",
                f"Claim.item[{i}].locationCodeableConcept",
                code="code-invalid",
            )
        for j, code in codings:
            found = True
            if code not in POS_CODES:
                s.add(
                    "SCRUB-POS-UNKNOWN",
                    f"item {item.get('sequence')}: {code!r} is not a CMS place-of-service code",
                    f"Claim.item[{i}].locationCodeableConcept.coding[{j}].code",
                    code="code-invalid",
                )
    ref, loc = s.resolve(s.claim.get("facility"))
    if loc is not None:
        for k, concept in enumerate(loc.get("type", [])):
            for j, code in _pos_codings(concept):
                found = True
                if code not in POS_CODES:
                    s.add(
                        "SCRUB-POS-UNKNOWN",
                        f"{ref}: type {code!r} is not a CMS place-of-service code",
                        f"Claim.facility.resolve().type[{k}].coding[{j}].code",
                        code="code-invalid",
                    )
    if not found:
        s.add(
            "SCRUB-POS-MISSING",
            "no place of service (CLM05-1): give item.locationCodeableConcept a CMS"
            f" place-of-service coding ({POS_SYSTEM}), or Claim.facility a Location.type with one",
            "Claim.item[0].locationCodeableConcept",
            code="required",
        )


# -- people, organizations, places ---------------------------------------------------------------


def _identifier(resource: dict[str, Any], system: str) -> tuple[int, str] | None:
    for i, ident in enumerate(resource.get("identifier", [])):
        if ident.get("system") == system and ident.get("value"):
            return i, ident["value"]
    return None


def _check_npi(s: _Scrub, resource: dict[str, Any], ref: str, root: str) -> bool:
    """Check the NPI's check digit if there is one; False when there is no NPI."""
    found = _identifier(resource, NPI_SYSTEM)
    if found is None:
        return False
    i, npi = found
    if not npi_valid(npi):
        s.add(
            "SCRUB-NPI-CHECKDIGIT",
            f"{ref}: NPI {npi!r} is not 10 digits with a valid check digit (Luhn over 80840)",
            f"{root}.identifier[{i}].value",
            code="value",
        )
    return True


def _check_length(s: _Scrub, value: Any, limit: int, expr: str, what: str, ref: str) -> None:
    if isinstance(value, str) and len(value) > limit:
        s.add(
            "SCRUB-LENGTH",
            f"{ref}: {what} is {len(value)} characters; X12 allows {limit}",
            expr,
            code="value",
        )


def _name_index(resource: dict[str, Any]) -> int | None:
    names = resource.get("name") or []
    if not isinstance(names, list) or not names:
        return None
    for i, n in enumerate(names):
        if n.get("use") == "official":
            return i
    return 0


def _check_person_name(s: _Scrub, resource: dict[str, Any], ref: str, root: str, rule: str) -> None:
    i = _name_index(resource)
    name = resource["name"][i] if i is not None else {}
    if not name.get("family"):
        s.add(
            rule,
            f"{ref}: a family name is required",
            f"{root}.name" + (f"[{i}].family" if i is not None else ""),
            code="required",
        )
        return
    _check_length(s, name["family"], NAME_MAX, f"{root}.name[{i}].family", "family name", ref)
    given = name.get("given") or []
    if given:
        _check_length(s, given[0], FIRST_NAME_MAX, f"{root}.name[{i}].given[0]", "first name", ref)


def _check_address(
    s: _Scrub, resource: dict[str, Any], ref: str, root: str, rule: str, zip_rule: str | None
) -> None:
    addresses = resource.get("address")
    if isinstance(addresses, dict):  # Location.address is 0..1
        addr, path = addresses, f"{root}.address"
    elif addresses:
        addr, path = addresses[0], f"{root}.address[0]"
    else:
        s.add(rule, f"{ref}: an address is required", f"{root}.address", code="required")
        return
    lines = addr.get("line") or []
    missing = [
        name
        for name, present in (
            ("line", bool(lines and lines[0])),
            ("city", bool(addr.get("city"))),
            ("state", bool(addr.get("state"))),
            ("postalCode", bool(addr.get("postalCode"))),
        )
        if not present
    ]
    for name in missing:
        s.add(rule, f"{ref}: address {name} is required", f"{path}.{name}", code="required")
    for k, line in enumerate(lines[:2]):
        _check_length(s, line, ADDRESS_LINE_MAX, f"{path}.line[{k}]", "address line", ref)
    _check_length(s, addr.get("city"), CITY_MAX, f"{path}.city", "city", ref)
    postal = addr.get("postalCode")
    if zip_rule and postal and not ZIP9_RE.match(postal):
        s.add(
            zip_rule,
            f"{ref}: postal code {postal!r} must be the 9-digit ZIP+4",
            f"{path}.postalCode",
            code="value",
        )


def _check_billing_provider(s: _Scrub) -> None:
    ref, prov = s.resolve(s.claim.get("provider"))
    root = "Claim.provider.resolve()"
    if not ref:
        return  # SCRUB-BILLING-PROVIDER-MISSING (profile)
    if prov is None:
        s.add(
            "SCRUB-BILLING-PROVIDER-UNRESOLVED",
            f"billing provider {ref} cannot be resolved",
            "Claim.provider",
            code="not-found",
        )
        return
    if not _check_npi(s, prov, ref, root):
        s.add(
            "SCRUB-BILLING-NPI-MISSING",
            f"{ref}: the billing provider needs an NPI (identifier with system {NPI_SYSTEM})",
            f"{root}.identifier",
            code="required",
        )
    tax = _identifier(prov, TAX_ID_SYSTEM) or _identifier(prov, SSN_SYSTEM)
    if tax is None:
        s.add(
            "SCRUB-BILLING-TAXID-MISSING",
            f"{ref}: the billing provider needs a tax id (identifier with system {TAX_ID_SYSTEM}, REF*EI)",
            f"{root}.identifier",
            code="required",
        )
    elif not (EIN_RE.match(tax[1]) or re.fullmatch(r"\d{3}-?\d{2}-?\d{4}", tax[1])):
        s.add(
            "SCRUB-BILLING-TAXID-SHAPE",
            f"{ref}: tax id {tax[1]!r} must be 9 digits (EIN 12-3456789)",
            f"{root}.identifier[{tax[0]}].value",
            code="value",
        )
    if prov.get("resourceType") == "Organization":
        if not prov.get("name"):
            s.add(
                "SCRUB-BILLING-NAME-MISSING",
                f"{ref}: the billing provider needs a name",
                f"{root}.name",
                code="required",
            )
        _check_length(s, prov.get("name"), NAME_MAX, f"{root}.name", "name", ref)
    else:
        _check_person_name(s, prov, ref, root, "SCRUB-BILLING-NAME-MISSING")
    _check_address(s, prov, ref, root, "SCRUB-BILLING-ADDRESS-MISSING", "SCRUB-BILLING-ZIP9")


def _check_patient(s: _Scrub) -> None:
    ref, patient = s.resolve(s.claim.get("patient"))
    root = "Claim.patient.resolve()"
    if not ref:
        return
    if patient is None:
        s.add(
            "SCRUB-PATIENT-UNRESOLVED",
            f"patient {ref} cannot be resolved",
            "Claim.patient",
            code="not-found",
        )
        return
    _check_person_name(s, patient, ref, root, "SCRUB-PATIENT-NAME-MISSING")
    if not patient.get("birthDate") or date_range(patient["birthDate"]) is None:
        s.add(
            "SCRUB-PATIENT-BIRTHDATE-MISSING",
            f"{ref}: a birth date is required (DMG02)",
            f"{root}.birthDate",
            code="required",
        )
    if not patient.get("gender"):
        s.add(
            "SCRUB-PATIENT-GENDER-MISSING",
            f"{ref}: a gender is required (DMG03)",
            f"{root}.gender",
            code="required",
        )
    _check_address(s, patient, ref, root, "SCRUB-PATIENT-ADDRESS-MISSING", None)


def _relationship(coverage: dict[str, Any]) -> str | None:
    for c in (coverage.get("relationship") or {}).get("coding", []):
        if c.get("code"):
            return str(c["code"])
    return None


def _check_insurance(s: _Scrub) -> None:
    insurance = s.claim.get("insurance", [])
    focal = [i for i, ins in enumerate(insurance) if ins.get("focal") is True] or ([0] if insurance else [])
    if not focal:
        return  # SCRUB-INSURANCE-MISSING (profile)
    idx = focal[0]
    root = f"Claim.insurance[{idx}].coverage.resolve()"
    ref, cov = s.resolve(insurance[idx].get("coverage"))
    if cov is None:
        s.add(
            "SCRUB-COVERAGE-UNRESOLVED",
            f"coverage {ref or '(none)'} cannot be resolved",
            f"Claim.insurance[{idx}].coverage",
            code="not-found",
        )
        _check_payer(s, None, idx)
        return
    if cov.get("status") != "active":
        s.add(
            "SCRUB-COVERAGE-INACTIVE",
            f"{ref}: status is {cov.get('status')!r}, not active",
            f"{root}.status",
            code="business-rule",
        )
    start, end = period_range(cov.get("period"))
    for lo, hi in _claim_service_ranges(s.claim):
        if (start is not None and lo < start) or (end is not None and hi > end):
            period = cov.get("period") or {}
            s.add(
                "SCRUB-COVERAGE-PERIOD",
                f"{ref}: coverage period {period.get('start', '')}..{period.get('end', '')}"
                " does not"
                f" cover the service dates {lo.isoformat()}..{hi.isoformat()}",
                f"{root}.period",
                code="business-rule",
            )
            break
    if not cov.get("subscriberId"):
        s.add(
            "SCRUB-SUBSCRIBER-ID-MISSING",
            f"{ref}: subscriberId (member id, NM109) is required",
            f"{root}.subscriberId",
            code="required",
        )
    patient_ref = (s.claim.get("patient") or {}).get("reference", "")
    beneficiary = (cov.get("beneficiary") or {}).get("reference", "")
    if patient_ref and _ref_key(beneficiary) != _ref_key(patient_ref):
        s.add(
            "SCRUB-COVERAGE-BENEFICIARY",
            f"the claim's patient {patient_ref} is not the beneficiary {beneficiary or '(none)'} of {ref}",
            "Claim.patient",
            f"{root}.beneficiary",
            code="business-rule",
        )
    _check_subscriber(s, cov, ref, root, beneficiary)
    _check_payer(s, cov, idx)


def _check_subscriber(s: _Scrub, cov: dict[str, Any], ref: str, root: str, beneficiary: str) -> None:
    relationship = _relationship(cov)
    sub_ref = (cov.get("subscriber") or {}).get("reference", "")
    is_self = not sub_ref or _ref_key(sub_ref) == _ref_key(beneficiary)
    if relationship is None or (relationship == "self") != is_self:
        s.add(
            "SCRUB-COVERAGE-RELATIONSHIP",
            f"{ref}: relationship must be present, and 'self' exactly when the subscriber is the"
            f" beneficiary (found {relationship!r}, subscriber {sub_ref or '(none)'})",
            f"{root}.relationship",
            code="business-rule",
        )
    if is_self:
        return  # the patient checks cover the subscriber
    sub = s.resolve(cov.get("subscriber"))[1]
    if sub is None and sub_ref.startswith("#"):
        sub = next((r for r in cov.get("contained", []) if r.get("id") == sub_ref[1:]), None)
    sroot = f"{root}.subscriber.resolve()"
    if sub is None:
        s.add(
            "SCRUB-SUBSCRIBER-UNRESOLVED",
            f"{ref}: subscriber {sub_ref} cannot be resolved",
            f"{root}.subscriber",
            code="not-found",
        )
        return
    _check_person_name(s, sub, sub_ref, sroot, "SCRUB-SUBSCRIBER-NAME-MISSING")
    addresses = sub.get("address") or []
    if addresses:
        _check_address(s, sub, sub_ref, sroot, "SCRUB-SUBSCRIBER-ADDRESS-MISSING", None)


def _payer_id(org: dict[str, Any]) -> tuple[int, str] | None:
    for i, ident in enumerate(org.get("identifier", [])):
        for c in (ident.get("type") or {}).get("coding", []):
            if c.get("system") == V2_0203 and c.get("code") == "NIIP" and ident.get("value"):
                return i, ident["value"]
    return None


def _check_payer(s: _Scrub, cov: dict[str, Any] | None, idx: int) -> None:
    insurer = s.claim.get("insurer")
    payors = (cov or {}).get("payor") or []
    if insurer and insurer.get("reference"):
        root, reference = "Claim.insurer.resolve()", insurer
        if payors and payors[0].get("reference"):
            if _ref_key(payors[0]["reference"]) != _ref_key(insurer["reference"]):
                s.add(
                    "SCRUB-PAYER-MISMATCH",
                    f"Claim.insurer {insurer['reference']} is not the coverage's payor"
                    f" {payors[0]['reference']}",
                    "Claim.insurer",
                    severity="warning",
                )
    elif payors:
        root, reference = f"Claim.insurance[{idx}].coverage.resolve().payor[0].resolve()", payors[0]
    else:
        s.add(
            "SCRUB-PAYER-UNRESOLVED",
            "no payer: set Claim.insurer (or Coverage.payor) to the payer Organization",
            "Claim.insurer",
            code="required",
        )
        return
    ref, org = s.resolve(reference)
    if org is None or org.get("resourceType") != "Organization":
        s.add(
            "SCRUB-PAYER-UNRESOLVED",
            f"payer {ref or '(no literal reference)'} cannot be resolved to an Organization",
            root.removesuffix(".resolve()"),
            code="not-found",
        )
        return
    if _payer_id(org) is None:
        s.add(
            "SCRUB-PAYER-ID-MISSING",
            f"{ref}: the payer needs its clearinghouse payer id: an identifier whose type is"
            f" NIIP ({V2_0203}) (2010BB NM109)",
            f"{root}.identifier",
            code="required",
        )
    if not org.get("name"):
        s.add(
            "SCRUB-PAYER-NAME-MISSING",
            f"{ref}: the payer needs a name (NM103)",
            f"{root}.name",
            code="required",
        )
    _check_length(s, org.get("name"), NAME_MAX, f"{root}.name", "name", ref)


def _check_care_team(s: _Scrub) -> None:
    for i, member in enumerate(s.claim.get("careTeam", [])):
        ref, prov = s.resolve(member.get("provider"))
        root = f"Claim.careTeam[{i}].provider.resolve()"
        if prov is None:
            s.add(
                "SCRUB-CARETEAM-UNRESOLVED",
                f"care team provider {ref or '(none)'} cannot be resolved",
                f"Claim.careTeam[{i}].provider",
                code="not-found",
            )
            continue
        if prov.get("resourceType") not in ("Practitioner", "Organization"):
            continue
        if not _check_npi(s, prov, ref, root):
            s.add(
                "SCRUB-CARETEAM-NPI-MISSING",
                f"{ref}: a care team provider named on the 837 needs an NPI"
                f" (identifier with system {NPI_SYSTEM})",
                f"{root}.identifier",
                code="required",
            )
        if prov["resourceType"] == "Practitioner":
            _check_person_name(s, prov, ref, root, "SCRUB-CARETEAM-NAME-MISSING")
        else:
            if not prov.get("name"):
                s.add(
                    "SCRUB-CARETEAM-NAME-MISSING",
                    f"{ref}: a name is required",
                    f"{root}.name",
                    code="required",
                )
            _check_length(s, prov.get("name"), NAME_MAX, f"{root}.name", "name", ref)


def _check_facility(s: _Scrub) -> None:
    ref, loc = s.resolve(s.claim.get("facility"))
    if not ref:
        return
    root = "Claim.facility.resolve()"
    if loc is None:
        s.add(
            "SCRUB-FACILITY-UNRESOLVED",
            f"facility {ref} cannot be resolved",
            "Claim.facility",
            code="not-found",
        )
        return
    if not loc.get("name"):
        s.add(
            "SCRUB-FACILITY-NAME-MISSING",
            f"{ref}: the service facility needs a name (NM103)",
            f"{root}.name",
            code="required",
        )
    _check_length(s, loc.get("name"), NAME_MAX, f"{root}.name", "name", ref)
    _check_npi(s, loc, ref, root)
    _check_address(s, loc, ref, root, "SCRUB-FACILITY-ADDRESS-MISSING", "SCRUB-FACILITY-ZIP9")


def _check_line_control(s: _Scrub) -> None:
    seen: dict[str, int] = {}
    for i, item in enumerate(s.claim.get("item", [])):
        for k, ext in enumerate(item.get("extension", [])):
            if ext.get("url") != LINE_CONTROL_SYSTEM:
                continue
            value = (
                ext.get("valueString")
                or ext.get("valueId")
                or (ext.get("valueIdentifier") or {}).get("value")
            )
            expr = f"Claim.item[{i}].extension[{k}]"
            if not value or len(value) > LINE_CONTROL_MAX:
                s.add(
                    "SCRUB-LINE-CONTROL",
                    f"item {item.get('sequence')}: line item control number must be"
                    f" 1-{LINE_CONTROL_MAX} characters",
                    expr,
                    code="value",
                )
            elif value in seen:
                s.add(
                    "SCRUB-LINE-CONTROL",
                    f"item {item.get('sequence')}: line item control number {value!r}"
                    f" repeats item index {seen[value]}",
                    expr,
                    code="value",
                )
            else:
                seen[value] = i
