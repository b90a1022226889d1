"""Code shapes and small code lists a billable claim is checked against (data, no I/O)."""

from __future__ import annotations

import re

ICD10CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT_SYSTEM = "http://www.ama-assn.org/go/cpt"
HCPCS_SYSTEMS = frozenset(
    {
        "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
        "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    }
)
PROCEDURE_SYSTEMS = frozenset({CPT_SYSTEM, *HCPCS_SYSTEMS})
POS_SYSTEM = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
NUBC_REVENUE_SYSTEM = "https://www.nubc.org/CodeSystem/RevenueCodes"
NUBC_TOB_SYSTEM = "https://www.nubc.org/CodeSystem/TypeOfBill"
NUBC_ADMTYPE_SYSTEM = "https://www.nubc.org/CodeSystem/PriorityTypeOfAdmitOrVisit"
NUBC_POINT_OF_ORIGIN_SYSTEM = "https://www.nubc.org/CodeSystem/PointOfOrigin"
NUBC_DISCHARGE_STATUS_SYSTEM = "https://www.nubc.org/CodeSystem/PatDischargeStatus"
# Claim.related.relationship coding carrying the 837 claim frequency code (CLM05-3): 1, 7 or 8.
# Claim.related.reference.system for the payer's claim control number (ICN, sent in REF*F8).

# ICD-10-CM: letter, digit, alphanumeric, then up to 4 more after an optional dot (J06.9, S52521A).
ICD10CM_RE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")
# CPT category I (5 digits), II (4 digits + F), III (+ T), PLA (+ U);
# HCPCS level II (A-V + 4 digits).
PROCEDURE_RE = re.compile(r"^([0-9]{4}[0-9FTU]|[A-V][0-9]{4})$")
MODIFIER_RE = re.compile(r"^[0-9A-Z]{2}$")
REVENUE_RE = re.compile(r"^[0-9]{4}$")
NPI_RE = re.compile(r"^[0-9]{10}$")
EIN_RE = re.compile(r"^[0-9]{2}-?[0-9]{7}$")
ZIP9_RE = re.compile(r"^[0-9]{5}-?[0-9]{4}$")

# CMS Place of Service code set (https://www.cms.gov/medicare/coding-billing/place-of-service-codes).
POS_CODES: dict[str, str] = {
    "01": "Pharmacy",
    "02": "Telehealth Provided Other than in Patient's Home",
    "03": "School",
    "04": "Homeless Shelter",
    "05": "Indian Health Service Free-standing Facility",
    "06": "Indian Health Service Provider-based Facility",
    "07": "Tribal 638 Free-standing Facility",
    "08": "Tribal 638 Provider-based Facility",
    "09": "Prison/Correctional Facility",
    "10": "Telehealth Provided in Patient's Home",
    "11": "Office",
    "12": "Home",
    "13": "Assisted Living Facility",
    "14": "Group Home",
    "15": "Mobile Unit",
    "16": "Temporary Lodging",
    "17": "Walk-in Retail Health Clinic",
    "18": "Place of Employment-Worksite",
    "19": "Off Campus-Outpatient Hospital",
    "20": "Urgent Care Facility",
    "21": "Inpatient Hospital",
    "22": "On Campus-Outpatient Hospital",
    "23": "Emergency Room - Hospital",
    "24": "Ambulatory Surgical Center",
    "25": "Birthing Center",
    "26": "Military Treatment Facility",
    "27": "Outreach Site/Street",
    "31": "Skilled Nursing Facility",
    "32": "Nursing Facility",
    "33": "Custodial Care Facility",
    "34": "Hospice",
    "41": "Ambulance - Land",
    "42": "Ambulance - Air or Water",
    "49": "Independent Clinic",
    "50": "Federally Qualified Health Center",
    "51": "Inpatient Psychiatric Facility",
    "52": "Psychiatric Facility-Partial Hospitalization",
    "53": "Community Mental Health Center",
    "54": "Intermediate Care Facility/Individuals with Intellectual Disabilities",
    "55": "Residential Substance Abuse Treatment Facility",
    "56": "Psychiatric Residential Treatment Center",
    "57": "Non-residential Substance Abuse Treatment Facility",
    "58": "Non-residential Opioid Treatment Facility",
    "60": "Mass Immunization Center",
    "61": "Comprehensive Inpatient Rehabilitation Facility",
    "62": "Comprehensive Outpatient Rehabilitation Facility",
    "65": "End-Stage Renal Disease Treatment Facility",
    "66": "Programs of All-Inclusive Care for the Elderly (PACE) Center",
    "71": "Public Health Clinic",
    "72": "Rural Health Clinic",
    "81": "Independent Laboratory",
    "99": "Other Place of Service",
}


def luhn_ok(digits: str) -> bool:
    """True when a digit string passes the Luhn (mod 10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def npi_valid(npi: str) -> bool:
    """True for a 10-digit NPI whose check digit is right (Luhn over the 80840 prefix)."""
    return bool(NPI_RE.match(npi)) and luhn_ok("80840" + npi)


def npi_check_digit(first9: str) -> str:
    """The check digit that completes a 9-digit NPI stem."""
    for d in "0123456789":
        if luhn_ok("80840" + first9 + d):
            return d
    raise ValueError(first9)  # pragma: no cover - one digit always fits
