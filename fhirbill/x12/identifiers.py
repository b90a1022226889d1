"""The keys that come back from the payer: CLM01, REF*6R, and the frequency code with REF*F8.

Conventions (fhirbill's own; X12 publishes no public FHIR mapping):

- CLM01 is the value of the Claim identifier with system PCN_SYSTEM. It must already be in the
  basic character set (uppercase is applied) and at most 20 characters, because the 277CA and
  835 echo it back and we match on it; a value that cleaning would alter is refused, not mangled.
- REF*6R (line item control number) is the item's extension ``url = LINE_CONTROL_SYSTEM``
  (``valueString``, ``valueId`` or ``valueIdentifier.value``) when present, else
  ``<CLM01>-<item.sequence>``. Either way it is at most 30 characters and unique in the claim.
- Frequency (CLM05-3): ``Claim.related`` with relationship ``prior`` (ex-relatedclaimrelationship)
  and ``related.reference.value`` = the payer's claim control number marks a replacement (7);
  the same plus ``Claim.status = cancelled`` marks a void (8). REF*F8 carries that number.
  Otherwise 1, or for 837I the fourth digit of the type of bill.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhirbill.fhir.billing import CLAIM_FREQUENCY_SYSTEM, LINE_CONTROL_SYSTEM, PCN_SYSTEM
from fhirbill.x12.claims import JSON, ClaimReader, codes, identifier
from fhirbill.x12.text import clean

RELATED_CLAIM_SYSTEM = "http://terminology.hl7.org/CodeSystem/ex-relatedclaimrelationship"
PCN_MAX = 20
LINE_CONTROL_MAX = 30


@dataclass(frozen=True, slots=True)
class Frequency:
    """CLM05-3 and the payer claim control number for REF*F8 (replacement and void only)."""

    code: str
    payer_claim_number: str = ""


def patient_control_number(r: ClaimReader) -> str:
    """CLM01 from the Claim identifier in PCN_SYSTEM, or "" with an issue."""
    raw = identifier(r.claim, PCN_SYSTEM)
    if not raw:
        r.error(
            "required",
            "X12-PCN",
            f"The Claim needs an identifier with system {PCN_SYSTEM} (the patient control number)",
            "Claim.identifier",
        )
        return ""
    value = clean(raw)
    if value != raw.upper() or not 1 <= len(value) <= PCN_MAX:
        r.error(
            "value",
            "X12-PCN",
            f"The patient control number must be 1-{PCN_MAX} characters of the X12 basic "
            "character set (letters, digits, space and - . / ( ) ' & + , ; ? = !)",
            "Claim.identifier",
        )
        return ""
    return value


def _item_control(item: JSON) -> str | None:
    for ext in item.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == LINE_CONTROL_SYSTEM:
            value = (
                ext.get("valueString")
                or ext.get("valueId")
                or (ext.get("valueIdentifier") or {}).get("value")
            )
            if value:
                return str(value)
    return None


def line_control_numbers(r: ClaimReader, pcn: str, items: list[JSON]) -> list[str]:
    """REF*6R per item (same order): the item's own number or ``<pcn>-<sequence>``."""
    seen: set[str] = set()
    out: list[str] = []
    for n, item in enumerate(items):
        own = _item_control(item)
        value = clean(own) if own else f"{pcn}-{item.get('sequence', n + 1)}"
        where = f"Claim.item[{n}].extension('{LINE_CONTROL_SYSTEM}')"
        if own and (value != own.upper() or not value):
            r.error(
                "value",
                "X12-LINE-CONTROL",
                "The line item control number must be basic-set text",
                where,
            )
        elif len(value) > LINE_CONTROL_MAX:
            r.error(
                "value",
                "X12-LINE-CONTROL",
                f"The line item control number exceeds {LINE_CONTROL_MAX} characters",
                where,
            )
        elif value in seen:
            r.error(
                "value",
                "X12-LINE-CONTROL",
                f"The line item control number {value} repeats in this claim",
                where,
            )
        seen.add(value)
        out.append(value)
    return out


def frequency(r: ClaimReader, default: str = "1") -> Frequency:
    """The claim frequency code and, for a replacement or void, the payer's claim number."""
    claim = r.claim
    void = claim.get("status") == "cancelled"
    for n, related in enumerate(claim.get("related") or ()):
        if "prior" not in codes(related.get("relationship"), RELATED_CLAIM_SYSTEM):
            continue
        # An explicit frequency coding (fhirbill's convention, used by the seeds) says which.
        void = void or "8" in codes(related.get("relationship"), CLAIM_FREQUENCY_SYSTEM)
        number = clean((related.get("reference") or {}).get("value"), 50)
        if not number:
            r.error(
                "required",
                "X12-PAYER-CLAIM-NUMBER",
                "A replacement or void needs the payer's claim number in Claim.related.reference",
                f"Claim.related[{n}].reference",
            )
        return Frequency("8" if void else "7", number)
    if void:
        r.error(
            "required",
            "X12-PAYER-CLAIM-NUMBER",
            "A cancelled (void) claim needs Claim.related 'prior' with the payer's claim number",
            "Claim.related",
        )
        return Frequency("8")
    if default in ("7", "8"):
        r.error(
            "required",
            "X12-PAYER-CLAIM-NUMBER",
            f"Frequency {default} needs Claim.related 'prior' with the payer's claim number",
            "Claim.related",
        )
    return Frequency(default)
