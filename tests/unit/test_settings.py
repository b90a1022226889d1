"""Settings come from FHIRBILL_* variables, with clear errors for bad values."""

from __future__ import annotations

import pytest

from fhirbill.settings import Settings


def test_defaults_and_overrides() -> None:
    s = Settings.from_env({})
    assert s.token_cache_seconds == 1.0
    assert s.max_bundle_entries == 10_000
    s = Settings.from_env({"FHIRBILL_TOKEN_CACHE_SECONDS": "0", "FHIRBILL_MAX_BUNDLE_ENTRIES": "50"})
    assert s.token_cache_seconds == 0.0
    assert s.max_bundle_entries == 50


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FHIRBILL_TOKEN_CACHE_SECONDS", "soon", "must be a number"),
        ("FHIRBILL_TOKEN_CACHE_SECONDS", "-1", "must be a finite number, not negative"),
        ("FHIRBILL_TOKEN_CACHE_SECONDS", "nan", "must be a finite number, not negative"),
        ("FHIRBILL_MAX_BODY_BYTES", "10MB", "must be an integer"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"{name} {message}"):
        Settings.from_env({name: value})
