"""Service lines shared by 837P and 837I: procedure code, charge, units, service date, place."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from fhirbill.x12.claims import JSON, ClaimReader, codes, first_code
from fhirbill.x12.text import composite, d8, quantity, segment, to_decimal

PROCEDURE_SYSTEMS = (
    "http://www.ama-assn.org/go/cpt",
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
)
POS_SYSTEMS = (
    "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set",
    "http://terminology.hl7.org/CodeSystem/ex-serviceplace",
)
_PROCEDURE = re.compile(r"^(?:[0-9]{4}[0-9A-Z]|[A-Z][0-9]{4})$")
_MODIFIER = re.compile(r"^[0-9A-Z]{2}$")
_POS = re.compile(r"^[0-9]{2}$")
_ONE = Decimal(1)


@dataclass(slots=True)
class Line:
    """One Claim.item, reduced to what SV1/SV2 and DTP*472 need."""

    index: int
    sequence: int
    charge: Decimal
    units: str
    unit_code: str
    procedure: str  # "HC:99213:25", or "" when the item has no CPT/HCPCS code
    service_date: str  # a finished DTP*472 segment, or ""
    place: str  # CMS place of service, or ""


def procedure(r: ClaimReader, item: JSON, n: int, required: bool) -> str:
    """SV101/SV202: ``HC:<CPT or HCPCS>:<modifiers>``."""
    code = first_code(item.get("productOrService"), PROCEDURE_SYSTEMS)
    where = f"Claim.item[{n}].productOrService"
    if code is None:
        if required:
            r.error("required", "X12-PROCEDURE", "A CPT or HCPCS code is required", where)
        return ""
    code = code.strip().upper()
    if not _PROCEDURE.match(code):
        r.error("value", "X12-PROCEDURE", f"{code!r} is not a CPT/HCPCS code shape", where)
        return ""
    modifiers = [first_code(m) or "" for m in item.get("modifier") or ()]
    if len(modifiers) > 4:
        r.error(
            "value",
            "X12-MODIFIER",
            "At most 4 modifiers fit on a service line",
            f"Claim.item[{n}].modifier",
        )
    for m, mod in enumerate(modifiers[:4]):
        if not _MODIFIER.match(mod.upper()):
            r.error(
                "value",
                "X12-MODIFIER",
                f"{mod!r} is not a 2-character modifier",
                f"Claim.item[{n}].modifier[{m}]",
            )
    return composite("HC", code, *(m.upper() for m in modifiers[:4]))


def charge(r: ClaimReader, item: JSON, n: int) -> Decimal:
    """The line charge: item.net, else unitPrice x quantity x factor."""
    value = to_decimal((item.get("net") or {}).get("value"))
    if value is None:
        price = to_decimal((item.get("unitPrice") or {}).get("value"))
        if price is not None:
            qty = to_decimal((item.get("quantity") or {}).get("value")) or _ONE
            value = price * qty * (to_decimal(item.get("factor")) or _ONE)
    if value is None or value < 0:
        r.error(
            "required",
            "X12-CHARGE",
            "A non-negative line charge (item.net) is required",
            f"Claim.item[{n}].net",
        )
        return Decimal(0)
    return value


def service_date(r: ClaimReader, item: JSON, n: int, required: bool) -> str:
    """DTP*472 from item.servicedDate/servicedPeriod, falling back to Claim.billablePeriod."""
    start = end = None
    if item.get("servicedDate"):
        start = end = d8(item["servicedDate"])
    elif item.get("servicedPeriod"):
        period = item["servicedPeriod"]
        start = d8(period.get("start"))
        end = d8(period.get("end")) or start
    else:
        period = r.claim.get("billablePeriod") or {}
        start = d8(period.get("start"))
        end = d8(period.get("end")) or start
    if start is None or end is None:
        if required:
            r.error(
                "required",
                "X12-SERVICE-DATE",
                "A full service date is required",
                f"Claim.item[{n}].servicedDate",
            )
        return ""
    if start == end:
        return segment("DTP", "472", "D8", start)
    return segment("DTP", "472", "RD8", f"{start}-{end}")


def place_of_service(item: JSON) -> str:
    """The item's CMS place of service code, or ""."""
    for code in codes(item.get("locationCodeableConcept"), POS_SYSTEMS):
        if _POS.match(code):
            return code
    return ""


def read_lines(r: ClaimReader, items: list[JSON], require_procedure: bool, require_date: bool) -> list[Line]:
    """Every Claim.item as a `Line`, recording issues for what is missing."""
    lines = []
    for n, item in enumerate(items):
        qty = to_decimal((item.get("quantity") or {}).get("value"))
        if qty is None:
            qty = _ONE
        elif qty <= 0:
            r.error("value", "X12-UNITS", "The quantity must be positive", f"Claim.item[{n}].quantity")
        unit = "MJ" if (item.get("quantity") or {}).get("code") == "min" else "UN"
        lines.append(
            Line(
                index=n,
                sequence=item.get("sequence") or n + 1,
                charge=charge(r, item, n),
                units=quantity(qty),
                unit_code=unit,
                procedure=procedure(r, item, n, require_procedure),
                service_date=service_date(r, item, n, require_date),
                place=place_of_service(item),
            )
        )
    return lines
