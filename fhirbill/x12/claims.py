"""The translator's input: a Claim's JSON plus a way to resolve what it references.

`ClaimInput(claim, resolve)` carries the stored Claim JSON and a callable returning the JSON
of a referenced resource (``"Patient/p1"`` -> dict, or None). Contained resources (``"#id"``)
are looked up here, in ``claim["contained"]``, never passed to `resolve`. `ClaimReader` wraps
one input while it is translated: it resolves references and collects the `Issue`s that make
a claim unbillable, each with the FHIRPath of the element to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fhirbill.fhir.billing import NPI_SYSTEM
from fhirbill.fhir.errors import Issue

JSON = dict[str, Any]
Resolve = Callable[[str], JSON | None]


@dataclass(frozen=True, slots=True)
class ClaimInput:
    """A Claim (FHIR JSON) and a resolver for the resources it references."""

    claim: JSON
    resolve: Resolve


def resolver(resources: Iterable[JSON]) -> Resolve:
    """A `resolve` callable over in-memory resources, keyed ``Type/id`` (absolute URLs too)."""
    index = {f"{r['resourceType']}/{r['id']}": r for r in resources if "id" in r}

    def resolve(reference: str) -> JSON | None:
        found = index.get(reference)
        if found is None and reference.count("/") > 1:
            # An absolute reference ("https://host/fhir/Patient/p1"): its last two parts.
            found = index.get("/".join(reference.rstrip("/").split("/")[-2:]))
        return found

    return resolve


@dataclass(slots=True)
class Translated:
    """One claim turned into 837 segments (HL*1 onwards, no ST/BHT/1000 loops, no terminators)."""

    kind: str  # "837P" or "837I"
    payer_id: str
    body: list[str]
    clm01: str
    frequency: str
    line_controls: dict[int, str]  # Claim.item.sequence -> REF*6R


class ClaimReader:
    """One claim being translated: reference resolution plus the issues found so far."""

    __slots__ = ("claim", "issues", "_resolve", "_contained")

    def __init__(self, inp: ClaimInput) -> None:
        self.claim = inp.claim
        self.issues: list[Issue] = []
        self._resolve = inp.resolve
        self._contained = {
            "#" + r["id"]: r for r in self.claim.get("contained") or () if isinstance(r, dict) and "id" in r
        }

    def error(self, code: str, rule: str, diagnostics: str, expression: str) -> None:
        """Record an error issue (`code` from FHIR issue-type, `rule` a stable rule id)."""
        self.issues.append(Issue("error", code, diagnostics, (expression,), rule))

    def require(self, value: Any, rule: str, diagnostics: str, expression: str) -> Any:
        """Return `value`, recording a `required` issue when it is empty."""
        if not value:
            self.error("required", rule, diagnostics, expression)
        return value

    def resolve(
        self, ref: Any, expression: str, types: tuple[str, ...], what: str, required: bool = True
    ) -> JSON | None:
        """Resolve a Reference element to the resource JSON, recording an issue when it fails."""
        reference = ref.get("reference") if isinstance(ref, dict) else None
        if not reference:
            if required:
                self.error(
                    "required",
                    "X12-REFERENCE",
                    f"{what} must be a resolvable reference to {' or '.join(types)}",
                    expression,
                )
            return None
        found = self._contained.get(reference) if reference.startswith("#") else self._resolve(reference)
        if found is None:
            self.error("not-found", "X12-REFERENCE", f"{what} {reference} cannot be resolved", expression)
            return None
        if found.get("resourceType") not in types:
            self.error(
                "value",
                "X12-REFERENCE",
                f"{what} {reference} is a {found.get('resourceType')}, not {' or '.join(types)}",
                expression,
            )
            return None
        return found


def codes(concept: Any, system: str | tuple[str, ...] | None = None) -> list[str]:
    """The codes of a CodeableConcept, optionally only those of `system`."""
    if not isinstance(concept, dict):
        return []
    systems = (system,) if isinstance(system, str) else system
    return [
        c["code"]
        for c in concept.get("coding") or ()
        if isinstance(c, dict) and c.get("code") and (systems is None or c.get("system") in systems)
    ]


def first_code(concept: Any, system: str | tuple[str, ...] | None = None) -> str | None:
    """The first code of a CodeableConcept (of `system` when given)."""
    found = codes(concept, system)
    return found[0] if found else None


def identifier(resource: JSON | None, system: str) -> str | None:
    """The value of the resource's first identifier in `system`."""
    for ident in (resource or {}).get("identifier") or ():
        if isinstance(ident, dict) and ident.get("system") == system and ident.get("value"):
            return str(ident["value"])
    return None


def typed_identifier(resource: JSON | None, type_system: str, type_code: str) -> str | None:
    """The value of the resource's first identifier whose `type` has the given coding."""
    for ident in (resource or {}).get("identifier") or ():
        if (
            isinstance(ident, dict)
            and ident.get("value")
            and type_code in codes(ident.get("type"), type_system)
        ):
            return str(ident["value"])
    return None


def npi(resource: JSON | None) -> str | None:
    """The resource's NPI (identifier system http://hl7.org/fhir/sid/us-npi)."""
    return identifier(resource, NPI_SYSTEM)


def official_name(resource: JSON | None) -> JSON | None:
    """The HumanName to bill with: `use` official (or usual) first, else the first name."""
    names = [n for n in (resource or {}).get("name") or () if isinstance(n, dict)]
    for use in ("official", "usual"):
        for name in names:
            if name.get("use") == use:
                return name
    return names[0] if names else None


def postal_address(resource: JSON | None) -> JSON | None:
    """The address to bill with: the first current one that is not `old`, else the first."""
    raw = (resource or {}).get("address") or ()
    # Location.address is a single Address; Patient/Organization/Practitioner have a list.
    addresses = [raw] if isinstance(raw, dict) else [a for a in raw if isinstance(a, dict)]
    for address in addresses:
        if address.get("use") != "old" and not (address.get("period") or {}).get("end"):
            return address
    return addresses[0] if addresses else None


def in_system(concept: Any, code: str, systems: tuple[str, ...]) -> bool:
    """True when the CodeableConcept has `code` in one of `systems`."""
    return code in codes(concept, systems)
