"""fhirbill.api."""
