"""fhirbill.clearinghouse."""
