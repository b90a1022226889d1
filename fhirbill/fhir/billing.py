"""Identifier systems and code systems fhirbill itself mints or relies on."""

# Claim.identifier system for fhirbill's patient control number (837 CLM01, at most 20 characters).
PCN_SYSTEM = "urn:fhirbill:patient-control-number"
# Claim.item extension holding the line item control number sent in REF*6R.
LINE_CONTROL_SYSTEM = "urn:fhirbill:line-item-control-number"
# Identifier.type coding for a payer's clearinghouse id (NAIC / payer id).
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
TAX_ID_SYSTEM = "urn:oid:2.16.840.1.113883.4.4"
CARIN_SUPPORTING_INFO = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBSupportingInfoType"
CARIN_CARE_TEAM_ROLE = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBClaimCareTeamRole"
# Claim.related.relationship coding that states the 837 frequency code (7 replacement, 8 void).
CLAIM_FREQUENCY_SYSTEM = "http://fhirbill.dev/fhir/CodeSystem/claim-frequency"
# Claim.related.reference.system for the payer's claim control number (ICN, sent in REF*F8).
PAYER_ICN_SYSTEM = "urn:fhirbill:payer-claim-number"
