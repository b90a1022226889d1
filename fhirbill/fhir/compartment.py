"""Which records belong to a patient, for patient-confined (SMART `patient/`) access.

A resource is in patient P's compartment when its patient search parameter points at
Patient/P. Billing types use the stricter element the SMART issue names: the claim's
`patient` (not payee), the Coverage `beneficiary` (not subscriber or policy holder), the
Account's subject. Types with no patient link are either reference data anyone with the
scope may read (providers, payers, places) or closed to patient tokens (for example
PaymentReconciliation, which lists many patients' payments).
"""

from __future__ import annotations

from fhirbill.fhir.searchparams import SearchParamRegistry

# The search parameter that names the patient, where it differs from the general rule.
PATIENT_PARAMS = {
    "Claim": "patient",
    "ClaimResponse": "patient",
    "ExplanationOfBenefit": "patient",
    "Coverage": "beneficiary",
    "Account": "patient",
    "CoverageEligibilityRequest": "patient",
    "CoverageEligibilityResponse": "patient",
}
# Not patient data: directories of providers, payers and places.
REFERENCE_TYPES = frozenset(
    {
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Location",
        "HealthcareService",
        "Endpoint",
        "InsurancePlan",
        "Medication",
        "Substance",
    }
)
_FALLBACK = ("patient", "subject", "beneficiary")


def patient_param(resource_type: str, registry: SearchParamRegistry) -> str | None:
    """The reference parameter that puts a resource of this type in a patient's compartment."""
    if resource_type in PATIENT_PARAMS:
        return PATIENT_PARAMS[resource_type]
    params = registry.for_type(resource_type)
    for code in _FALLBACK:
        p = params.get(code)
        if p is not None and p.type == "reference" and (not p.targets or "Patient" in p.targets):
            return code
    return None


def patient_access(resource_type: str, registry: SearchParamRegistry) -> str:
    """How a patient-confined token may see this type: 'self', 'compartment', 'open' or 'none'."""
    if resource_type == "Patient":
        return "self"
    if resource_type in REFERENCE_TYPES:
        return "open"
    return "compartment" if patient_param(resource_type, registry) else "none"
