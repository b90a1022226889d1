"""The 837I (005010X223A2) claim: CLM with type of bill, DTP*434, CL1, HI sets, 2310A-F, SV2 lines.

Inputs follow CARIN Blue Button: `supportingInfo` categories typeofbill, admtype, pointoforigin,
discharge-status and admissionperiod (C4BBSupportingInfoType) with NUBC codes, `item.revenue`
with NUBC revenue codes, careTeam roles attending/operating/otheroperating/referring, and
primary (or rendering) for the rendering provider. Value, condition and occurrence codes are
the supportingInfo entries whose `code` is in the NUBC value/condition/occurrence code systems.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from fhirbill.fhir.billing import CARIN_SUPPORTING_INFO
from fhirbill.x12.claims import JSON, ClaimReader, Translated, codes, first_code
from fhirbill.x12.config import X12Config
from fhirbill.x12.diagnoses import read_diagnoses, read_procedures
from fhirbill.x12.identifiers import frequency, line_control_numbers, patient_control_number
from fhirbill.x12.lines import read_lines
from fhirbill.x12.parties import (
    billing_provider,
    care_team,
    facility_loop,
    insured,
    provider_loop,
    taxonomy,
)
from fhirbill.x12.professional import claim_level_refs
from fhirbill.x12.text import amount, clean, composite, d8, segment, to_decimal

MAX_LINES = 999
NUBC_VALUE = "https://www.nubc.org/CodeSystem/ValueCodes"
NUBC_CONDITION = "https://www.nubc.org/CodeSystem/ConditionCodes"
NUBC_OCCURRENCE = "https://www.nubc.org/CodeSystem/OccurrenceCodes"
_REVENUE = re.compile(r"^[0-9]{4}$")
_TOB = re.compile(r"^0?([0-9]{2})([0-9A-Z])$")


def _info(r: ClaimReader, category: str) -> tuple[JSON | None, int]:
    """The first supportingInfo of a CARIN category, with its index."""
    for n, info in enumerate(r.claim.get("supportingInfo") or ()):
        if category in codes(info.get("category"), CARIN_SUPPORTING_INFO):
            return info, n
    return None, -1


def _info_code(r: ClaimReader, category: str, required: bool, pattern: str) -> str:
    info, n = _info(r, category)
    code = clean(first_code((info or {}).get("code")))
    where = f"Claim.supportingInfo[{n}].code" if info else "Claim.supportingInfo"
    if not code:
        if required:
            r.error(
                "required",
                "X12-" + category.upper(),
                f"supportingInfo with category {category} is required",
                where,
            )
        return ""
    if not re.match(pattern, code):
        r.error("value", "X12-" + category.upper(), f"{code!r} is not a NUBC {category} code", where)
        return ""
    return code


def _hi(
    qualifier_first: str, qualifier_rest: str, parts: list[list[str]], per_segment: int = 12
) -> list[str]:
    """HI segments of at most `per_segment` composites; the first may have its own qualifier."""
    out = []
    for start in range(0, len(parts), per_segment):
        chunk = parts[start : start + per_segment]
        out.append(
            segment(
                "HI",
                *(
                    composite(qualifier_first if start + i == 0 else qualifier_rest, *p)
                    for i, p in enumerate(chunk)
                ),
            )
        )
    return out


def _nubc_codes(r: ClaimReader) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """(occurrence, value, condition) HI component lists from supportingInfo."""
    occurrence, value, condition = [], [], []
    for n, info in enumerate(r.claim.get("supportingInfo") or ()):
        concept: Any = info.get("code")
        if code := first_code(concept, NUBC_CONDITION):
            condition.append([clean(code, 30)])
        elif code := first_code(concept, NUBC_VALUE):
            amt = to_decimal((info.get("valueQuantity") or {}).get("value"))
            if amt is None:
                r.error(
                    "required",
                    "X12-VALUE-CODE",
                    "A value code needs valueQuantity",
                    f"Claim.supportingInfo[{n}]",
                )
                continue
            value.append([clean(code, 30), "", "", amount(amt)])
        elif code := first_code(concept, NUBC_OCCURRENCE):
            when = d8(info.get("timingDate"))
            if when is None:
                r.error(
                    "required",
                    "X12-OCCURRENCE",
                    "An occurrence code needs timingDate",
                    f"Claim.supportingInfo[{n}]",
                )
                continue
            occurrence.append([clean(code, 30), "D8", when])
    return occurrence[:24], value[:24], condition[:24]


def build_institutional(r: ClaimReader, config: X12Config) -> Translated | None:
    """Translate one institutional Claim; None when `r.issues` say why it cannot be billed."""
    claim = r.claim
    pcn = patient_control_number(r)
    items = [i for i in claim.get("item") or () if isinstance(i, dict)]
    if not items:
        r.error("required", "X12-LINES", "At least one Claim.item is required", "Claim.item")
    elif len(items) > MAX_LINES:
        r.error(
            "too-costly",
            "X12-LINES",
            f"An 837I claim carries at most {MAX_LINES} lines",
            f"Claim.item[{MAX_LINES}]",
        )
    billing = billing_provider(r)
    ins = insured(r, config, institutional=True)

    tob_info, tob_n = _info(r, "typeofbill")
    tob = _TOB.match(clean(first_code((tob_info or {}).get("code")) or ""))
    if tob is None:
        r.error(
            "required",
            "X12-TYPEOFBILL",
            "supportingInfo with category typeofbill and a NUBC type of bill (0131) is required",
            f"Claim.supportingInfo[{tob_n}].code" if tob_info else "Claim.supportingInfo",
        )
    freq = frequency(r, default=tob[2] if tob else "1")
    admission_type = _info_code(r, "admtype", False, r"^[0-9]$")
    origin = _info_code(r, "pointoforigin", False, r"^[0-9A-Z]$")
    status = _info_code(r, "discharge-status", True, r"^[0-9]{2}$")

    period = claim.get("billablePeriod") or {}
    start, end = d8(period.get("start")), d8(period.get("end") or period.get("start"))
    if start is None or end is None:
        r.error(
            "required",
            "X12-STATEMENT-DATES",
            "Claim.billablePeriod (statement dates) is required",
            "Claim.billablePeriod",
        )
    admission, _ = _info(r, "admissionperiod")
    admitted = d8(((admission or {}).get("timingPeriod") or {}).get("start"))

    diagnoses = read_diagnoses(r)
    procedures = read_procedures(r)
    lines = read_lines(r, items, require_procedure=False, require_date=False)
    for line, item in zip(lines, items, strict=True):
        if not _REVENUE.match(first_code(item.get("revenue")) or ""):
            r.error(
                "required",
                "X12-REVENUE",
                "A 4-digit NUBC revenue code is required",
                f"Claim.item[{line.index}].revenue",
            )
    controls = line_control_numbers(r, pcn, items)
    total = sum((line.charge for line in lines), Decimal(0))
    stated = (claim.get("total") or {}).get("value")
    if stated is not None and Decimal(str(stated)) != total:
        r.error(
            "value",
            "X12-TOTAL",
            f"Claim.total {stated} differs from the sum of item.net {total}",
            "Claim.total",
        )
    occurrence, values, conditions = _nubc_codes(r)
    if r.issues or tob is None:
        return None

    body = [*billing.segments, *ins.subscriber, *ins.patient]
    body.append(
        segment("CLM", pcn, amount(total), "", "", composite(tob[1], "A", freq.code), "", "A", "Y", "Y")
    )
    body.append(segment("DTP", "434", "RD8", f"{start}-{end}"))
    if admitted:
        body.append(segment("DTP", "435", "D8", admitted))
    body.append(segment("CL1", admission_type, origin, status))
    body += claim_level_refs(r, freq.payer_claim_number)

    principal, *others = diagnoses
    body.append(segment("HI", composite("ABK", principal.code, "", "", "", "", "", "", principal.poa)))
    admitting = [d for d in others if "admitting" in d.types]
    if admitting:
        body.append(segment("HI", composite("ABJ", admitting[0].code)))
    reasons = [d for d in others if "patientreasonforvisit" in d.types][:3]
    if reasons:
        body.append(segment("HI", *(composite("APR", d.code) for d in reasons)))
    rest = [d for d in others if d not in admitting[:1] and d not in reasons][:24]
    body += _hi("ABF", "ABF", [[d.code, "", "", "", "", "", "", d.poa] for d in rest])
    if procedures:
        body += _hi("BBR", "BBR", [[procedures[0][0], "D8", procedures[0][1]]])
        body += _hi("BBQ", "BBQ", [[code, "D8", when] for code, when in procedures[1:25]])
    body += _hi("BH", "BH", occurrence)
    body += _hi("BE", "BE", values)
    body += _hi("BG", "BG", conditions)

    seen = {billing.npi}
    for entity, roles in (
        ("71", ("attending",)),
        ("72", ("operating",)),
        ("ZZ", ("otheroperating",)),
    ):
        found, expr, member = care_team(r, roles)
        if found is not None:
            segs, number = provider_loop(r, entity, found, expr, person_only=True)
            body += segs
            seen.add(number)
            if entity == "71":
                tax = taxonomy([member.get("qualification") if member else None])
                tax = tax or taxonomy([q.get("code") for q in found.get("qualification") or ()])
                if tax:
                    body.append(segment("PRV", "AT", "PXC", tax))
    rendering, rend_expr, _ = care_team(r, ("primary", "rendering"))
    if rendering is not None:
        segs, number = provider_loop(r, "82", rendering, rend_expr, person_only=True)
        if number not in seen:
            body += segs
    body += facility_loop(r, "77", billing)
    referring, ref_expr, _ = care_team(r, ("referring",))
    if referring is not None:
        body += provider_loop(r, "DN", referring, ref_expr, person_only=True)[0]

    for lx, (line, item) in enumerate(zip(lines, items, strict=True), start=1):
        body.append(segment("LX", str(lx)))
        revenue = first_code(item.get("revenue")) or ""
        # SV204 allows only UN and DA: minutes (MJ) are a professional unit.
        body.append(segment("SV2", revenue, line.procedure, amount(line.charge), "UN", line.units))
        if line.service_date:
            body.append(line.service_date)
        body.append(segment("REF", "6R", controls[lx - 1]))
    if r.issues:
        return None
    return Translated(
        "837I",
        ins.payer_id,
        body,
        pcn,
        freq.code,
        {line.sequence: controls[line.index] for line in lines},
    )
