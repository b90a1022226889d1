"""FHIR knowledge: resource registry, validation, search parameters, outcomes. Imports nothing of ours."""
