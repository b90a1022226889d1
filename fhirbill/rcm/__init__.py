"""fhirbill.rcm."""
