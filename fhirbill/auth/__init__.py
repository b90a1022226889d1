"""fhirbill.auth."""
