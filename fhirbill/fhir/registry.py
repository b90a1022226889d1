"""The resource registry: which FHIR R4 resource types this server stores, and their models.

The list is spec data: the R4 type hierarchy that fhirpathpy ships, intersected with the
models that fhir.resources.R4B defines (R4B's financial module is R4's). Everything that
varies by type (routes, CapabilityStatement, validation) is driven from here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhirpathpy.models import models as _fhirpath_models

FHIR_VERSION = "4.0.1"

# The types billing work centres on: seeded, tested in depth, listed first in metadata.
BILLING_TYPES = (
    "Claim",
    "ClaimResponse",
    "ExplanationOfBenefit",
    "Coverage",
    "Account",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "PaymentReconciliation",
    "PaymentNotice",
    "ChargeItem",
    "Invoice",
    "Patient",
    "RelatedPerson",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "Encounter",
    "Condition",
    "Procedure",
)


def _load_types() -> tuple[str, ...]:
    parents: dict[str, str] = _fhirpath_models["r4"]["type2Parent"]
    names = []
    for name, parent in parents.items():
        if parent not in ("DomainResource", "Resource") or name == "DomainResource":
            continue
        try:
            get_fhir_model_class(name)
        except (ValueError, AttributeError):
            continue  # an R4-only type that R4B dropped
        names.append(name)
    return tuple(sorted(names))


RESOURCE_TYPES: tuple[str, ...] = _load_types()
_TYPE_SET = frozenset(RESOURCE_TYPES)


def is_resource_type(name: str) -> bool:
    """True when the server stores resources of this type."""
    return name in _TYPE_SET


@cache
def model_class(resource_type: str) -> Any:
    """The fhir.resources.R4B model class for a stored type."""
    return get_fhir_model_class(resource_type)
