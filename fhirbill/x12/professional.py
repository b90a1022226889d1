"""The 837P (005010X222A1) claim: 2300 CLM/HI, 2310A-C providers and 2400 SV1 lines.

A professional claim over 50 lines is refused, not split: splitting would give one Claim two
CLM01 values and two payer claim numbers, breaking the CLM01/REF*6R matching of the 277CA and
835. The issue tells the sender to split the Claim into Claims of at most 50 items.
"""

from __future__ import annotations

from decimal import Decimal

from fhirbill.x12.claims import ClaimReader, Translated, codes
from fhirbill.x12.config import X12Config
from fhirbill.x12.diagnoses import read_diagnoses
from fhirbill.x12.identifiers import frequency, line_control_numbers, patient_control_number
from fhirbill.x12.lines import POS_SYSTEMS, read_lines
from fhirbill.x12.parties import (
    billing_provider,
    care_team,
    facility_loop,
    insured,
    provider_loop,
    taxonomy,
)
from fhirbill.x12.text import US_STATES, amount, clean, composite, d8, segment

MAX_LINES = 50
MAX_DIAGNOSES = 12
RENDERING_ROLES = ("primary", "rendering", "performing")
# Claim.accident.type (v3 ActIncidentCode) -> CLM11-1 related cause.
_ACCIDENT = {"MVA": "AA", "WPA": "EM"}


def claim_level_refs(r: ClaimReader, payer_claim_number: str) -> list[str]:
    """2300 REF*G1 (prior authorization of the focal insurance) and REF*F8 (payer claim number)."""
    out = []
    for ins in r.claim.get("insurance") or ():
        if ins.get("focal") and ins.get("preAuthRef"):
            auth = clean(ins["preAuthRef"][0], 50)
            if auth:
                out.append(segment("REF", "G1", auth))
    if payer_claim_number:
        out.append(segment("REF", "F8", payer_claim_number))
    return out


def _accident(r: ClaimReader) -> tuple[str, list[str]]:
    """CLM11 and DTP*439 from Claim.accident."""
    accident = r.claim.get("accident")
    if not accident:
        return "", []
    cause = next((_ACCIDENT[c] for c in codes(accident.get("type")) if c in _ACCIDENT), "OA")
    state = clean((accident.get("locationAddress") or {}).get("state"), 2)
    if cause == "AA" and state not in US_STATES:
        r.error(
            "required",
            "X12-ACCIDENT",
            "An auto accident needs the US state",
            "Claim.accident.locationAddress.state",
        )
    when = d8(accident.get("date"))
    if when is None:
        r.error("required", "X12-ACCIDENT", "The accident date is required", "Claim.accident.date")
        return "", []
    clm11 = composite(cause, "", "", state if cause == "AA" else "")
    return clm11, [segment("DTP", "439", "D8", when)]


def build_professional(r: ClaimReader, config: X12Config) -> Translated | None:
    """Translate one professional Claim; None when `r.issues` say why it cannot be billed."""
    claim = r.claim
    pcn = patient_control_number(r)
    items = [i for i in claim.get("item") or () if isinstance(i, dict)]
    if not items:
        r.error("required", "X12-LINES", "At least one Claim.item is required", "Claim.item")
    elif len(items) > MAX_LINES:
        r.error(
            "too-costly",
            "X12-LINES",
            f"An 837P claim carries at most {MAX_LINES} service lines; split this Claim "
            f"({len(items)} items) into Claims of at most {MAX_LINES} items",
            f"Claim.item[{MAX_LINES}]",
        )
    billing = billing_provider(r)
    ins = insured(r, config, institutional=False)
    freq = frequency(r)
    diagnoses = read_diagnoses(r)
    if len(diagnoses) > MAX_DIAGNOSES:
        r.error(
            "value",
            "X12-ICD10CM",
            f"An 837P claim carries at most {MAX_DIAGNOSES} diagnoses",
            "Claim.diagnosis",
        )
    position = {d.sequence: p for p, d in enumerate(diagnoses[:MAX_DIAGNOSES], start=1)}
    lines = read_lines(r, items, require_procedure=True, require_date=True)
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

    place = lines[0].place if lines else ""
    if not place and claim.get("facility"):
        location = r.resolve(claim["facility"], "Claim.facility", ("Location",), "Claim.facility")
        place = next((c for c in codes((location or {}).get("type"), POS_SYSTEMS)), "") if location else ""
    if not place:
        r.error(
            "required",
            "X12-POS",
            "A CMS place of service is required (item.locationCodeableConcept or facility type)",
            "Claim.item[0].locationCodeableConcept",
        )
    clm11, accident_dates = _accident(r)
    body = [*billing.segments, *ins.subscriber, *ins.patient]
    body.append(
        segment(
            "CLM",
            pcn,
            amount(total),
            "",
            "",
            composite(place, "B", freq.code),
            "Y",
            "A",
            "Y",
            "Y",
            "",
            clm11,
        )
    )
    body += accident_dates
    body += claim_level_refs(r, freq.payer_claim_number)
    body.append(
        segment(
            "HI",
            *(composite("ABK" if p == 0 else "ABF", d.code) for p, d in enumerate(diagnoses[:12])),
        )
    )

    referring, ref_expr, _ = care_team(r, ("referring",))
    if referring is not None:
        body += provider_loop(r, "DN", referring, ref_expr, person_only=True)[0]
    rendering, rend_expr, member = care_team(r, RENDERING_ROLES)
    if rendering is not None:
        segs, number = provider_loop(r, "82", rendering, rend_expr, person_only=False)
        if number != billing.npi:
            body += segs
            tax = taxonomy([member.get("qualification") if member else None])
            tax = tax or taxonomy([q.get("code") for q in rendering.get("qualification") or ()])
            if tax:
                body.append(segment("PRV", "PE", "PXC", tax))
    body += facility_loop(r, "77", billing)

    for lx, (line, item) in enumerate(zip(lines, items, strict=True), start=1):
        pointers = []
        for seq in item.get("diagnosisSequence") or [diagnoses[0].sequence if diagnoses else 1]:
            if seq not in position:
                r.error(
                    "value",
                    "X12-DX-POINTER",
                    f"diagnosisSequence {seq} names no diagnosis on this claim",
                    f"Claim.item[{line.index}].diagnosisSequence",
                )
            else:
                pointers.append(str(position[seq]))
        if len(pointers) > 4:
            r.error(
                "value",
                "X12-DX-POINTER",
                "At most 4 diagnosis pointers per line",
                f"Claim.item[{line.index}].diagnosisSequence",
            )
        body.append(segment("LX", str(lx)))
        body.append(
            segment(
                "SV1",
                line.procedure,
                amount(line.charge),
                line.unit_code,
                line.units,
                line.place if line.place != place else "",
                "",
                composite(*pointers[:4]),
            )
        )
        body.append(line.service_date)
        body.append(segment("REF", "6R", controls[lx - 1]))
    if r.issues:
        return None
    return Translated(
        "837P",
        ins.payer_id,
        body,
        pcn,
        freq.code,
        {line.sequence: controls[line.index] for line in lines},
    )
