"""`make bench`: fhirbill's speed beside a floor measured in the same run (see bench/README.md)."""
