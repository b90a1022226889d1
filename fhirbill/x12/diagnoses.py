"""Claim.diagnosis and Claim.procedure as HI composites, principal first, ICD-10 without the dot."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fhirbill.x12.claims import ClaimReader, codes, first_code
from fhirbill.x12.text import d8

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10PCS = ("http://www.cms.gov/Medicare/Coding/ICD10", "http://hl7.org/fhir/sid/icd-10-pcs")
_ICD10CM = re.compile(r"^[A-Z][0-9][0-9A-Z]{1,5}$")
_ICD10PCS = re.compile(r"^[0-9A-HJ-NP-Z]{7}$")
_POA = {"y": "Y", "n": "N", "u": "U", "w": "W", "1": "1"}


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """One Claim.diagnosis: sequence, ICD-10-CM code (no dot), types, present-on-admission."""

    sequence: int
    code: str
    types: tuple[str, ...]
    poa: str


def read_diagnoses(r: ClaimReader) -> list[Diagnosis]:
    """Claim.diagnosis sorted by sequence with the principal diagnosis moved first."""
    found: list[Diagnosis] = []
    for n, dx in enumerate(r.claim.get("diagnosis") or ()):
        where = f"Claim.diagnosis[{n}].diagnosisCodeableConcept"
        code = first_code(dx.get("diagnosisCodeableConcept"), ICD10CM)
        if code is None:
            r.error("required", "X12-ICD10CM", f"An ICD-10-CM code ({ICD10CM}) is required", where)
            continue
        code = code.replace(".", "").strip().upper()
        if not _ICD10CM.match(code):
            r.error("value", "X12-ICD10CM", f"{code!r} is not an ICD-10-CM code shape", where)
            continue
        types = tuple(t for concept in dx.get("type") or () for t in codes(concept))
        poa = _POA.get((first_code(dx.get("onAdmission")) or "").lower(), "")
        found.append(Diagnosis(dx.get("sequence") or n + 1, code, types, poa))
    found.sort(key=lambda d: (0 if "principal" in d.types else 1, d.sequence))
    if not found and not r.issues:
        r.error(
            "required",
            "X12-ICD10CM",
            "At least one ICD-10-CM diagnosis is required",
            "Claim.diagnosis",
        )
    return found


def read_procedures(r: ClaimReader) -> list[tuple[str, str]]:
    """Claim.procedure as (ICD-10-PCS code, CCYYMMDD date), principal first."""
    found: list[tuple[int, str, str]] = []
    for n, proc in enumerate(r.claim.get("procedure") or ()):
        code = first_code(proc.get("procedureCodeableConcept"), ICD10PCS)
        when = d8(proc.get("date"))
        if code is None or not _ICD10PCS.match(code.upper()) or when is None:
            r.error(
                "value",
                "X12-ICD10PCS",
                "An institutional procedure needs an ICD-10-PCS code and a date",
                f"Claim.procedure[{n}]",
            )
            continue
        principal = "principal" in [c for t in proc.get("type") or () for c in codes(t)]
        found.append((0 if principal else 1, code.upper(), when))
    found.sort(key=lambda p: p[0])
    return [(code, when) for _, code, when in found]
