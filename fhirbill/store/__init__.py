"""fhirbill.store."""
