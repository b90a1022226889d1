"""Claim bookkeeping done on every write: the patient control number that becomes CLM01."""

from __future__ import annotations

from typing import Any

from fhirbill.fhir.billing import PCN_SYSTEM
from fhirbill.fhir.ids import random_bytes

# Crockford base32 without look-alikes; 16 characters carry 80 random bits and fit CLM01 (<= 20).
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_control_number() -> str:
    """A fresh patient control number: 'FB' plus 16 base32 characters (80 unpredictable bits)."""
    n = int.from_bytes(random_bytes(10), "big")
    return "FB" + "".join(_ALPHABET[(n >> (5 * i)) & 31] for i in range(16))


def control_number(claim: dict[str, Any]) -> str | None:
    """The claim's patient control number, if it has one."""
    for ident in claim.get("identifier") or ():
        if ident.get("system") == PCN_SYSTEM and ident.get("value"):
            return str(ident["value"])
    return None


def assign_control_number(claim: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """Keep the claim's control number stable: reuse the previous version's, or mint one at create."""
    if control_number(claim):
        return claim
    value = (previous and control_number(previous)) or new_control_number()
    out = dict(claim)
    out["identifier"] = [*(claim.get("identifier") or ()), {"system": PCN_SYSTEM, "value": value}]
    return out
