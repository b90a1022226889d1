"""The X12 text rules: character set, amounts, dates, segments, NPI check digit, config checks."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from fhirbill.x12 import ControlNumbers, X12Config
from fhirbill.x12.text import amount, clean, composite, d8, digits, luhn_npi_ok, quantity, segment


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("José Müller-Łukasz", "JOSE MULLER-LUKASZ"),
        ("O'Brien & Sons", "O'BRIEN & SONS"),
        ("456 Oak Ave #5", "456 OAK AVE 5"),
        ("a*b:c^d~e", "A B C D E"),
        ("Straße 😀 Æther", "STRASSE AETHER"),
        ("  many   spaces\t\n", "MANY SPACES"),
        (None, ""),
    ],
)
def test_clean(raw: str | None, expected: str) -> None:
    assert clean(raw) == expected


def test_clean_truncates_without_trailing_space() -> None:
    assert clean("ABCDE FGHIJ", 6) == "ABCDE"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("150", "150"),
        ("150.50", "150.5"),
        ("150.00", "150"),
        ("0.005", "0.01"),
        ("0", "0"),
        ("1e2", "100"),
    ],
)
def test_amount(value: str, expected: str) -> None:
    assert amount(Decimal(value)) == expected


def test_quantity_dates_digits_segments() -> None:
    assert quantity(Decimal("2.50")) == "2.5" and quantity(Decimal("3")) == "3"
    assert d8("2024-01-10") == "20240110" and d8("2024-01-10T09:30:00Z") == "20240110"
    assert d8("2024-01") is None and d8("2024-02-30") is None and d8(date(2024, 2, 1)) == "20240201"
    assert digits("62701-1234") == "627011234"
    assert segment("NM1", "IL", "", "", "") == "NM1*IL"
    assert composite("HC", "99213", "", "") == "HC:99213"


def test_npi_luhn() -> None:
    assert luhn_npi_ok("1234567893") and luhn_npi_ok("1245319599")
    assert not luhn_npi_ok("1234567890") and not luhn_npi_ok("123456789")


def test_config_and_control_numbers_are_checked() -> None:
    with pytest.raises(ValueError):
        X12Config(usage_indicator="X")
    with pytest.raises(ValueError):
        X12Config(sender_id="has*star")
    with pytest.raises(ValueError):
        ControlNumbers(0, 1, 1)
    with pytest.raises(ValueError):
        ControlNumbers(1_000_000_000, 1, 1)
    config = X12Config(payer_id_overrides={"a": "B"})
    with pytest.raises(TypeError):
        config.payer_id_overrides["a"] = "C"  # type: ignore[index]
