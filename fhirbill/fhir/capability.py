"""The CapabilityStatement, generated from the registries that drive the server."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhirbill.fhir.registry import BILLING_TYPES, FHIR_VERSION, RESOURCE_TYPES
from fhirbill.fhir.searchparams import SearchParamRegistry

TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
# Instance/type operations every type supports: (name, definition).
TYPE_OPERATIONS = (("validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate"),)
# Extra operations of particular types: type -> ((name, definition), ...).
EXTRA_OPERATIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "Claim": (("x12", "http://fhirbill.dev/fhir/OperationDefinition/Claim-x12"),),
}


def capability_statement(
    *,
    base_url: str,
    software_version: str,
    params: SearchParamRegistry,
    supported_profiles: dict[str, list[str]],
    security: dict[str, Any] | None = None,
    types: Iterable[str] = RESOURCE_TYPES,
    date: str,
) -> dict[str, Any]:
    """Build the server's CapabilityStatement (JSON)."""
    ordered = [t for t in BILLING_TYPES if t in types] + sorted(set(types) - set(BILLING_TYPES))
    resources = []
    for rt in ordered:
        searchable = [p for p in params.for_type(rt).values() if p.searchable]
        entry: dict[str, Any] = {
            "type": rt,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rt}",
        }
        if supported_profiles.get(rt):
            entry["supportedProfile"] = sorted(supported_profiles[rt])
        entry.update(
            {
                "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalRead": "not-supported",
                "conditionalUpdate": True,
                "conditionalDelete": "single",
                "searchParam": [
                    {"name": p.code, "definition": p.url, "type": p.type}
                    for p in sorted(searchable, key=lambda p: p.code)
                    if p.url
                ],
                "operation": [
                    {"name": n, "definition": d} for n, d in TYPE_OPERATIONS + EXTRA_OPERATIONS.get(rt, ())
                ],
            }
        )
        resources.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": resources,
        "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
    }
    if security:
        rest["security"] = security
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "fhirbill",
        "kind": "instance",
        "software": {"name": "fhirbill", "version": software_version},
        "implementation": {"description": "fhirbill FHIR R4 billing server", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    }
