"""FHIR date precision as ranges (fhirbill.fhir.dates)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhirbill.fhir.dates import DATE_MAX, DATE_MIN, parse_fhir_date, parse_period, to_naive_utc


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2024", datetime(2024, 1, 1), datetime(2025, 1, 1)),
        ("2024-02", datetime(2024, 2, 1), datetime(2024, 3, 1)),
        ("2024-12", datetime(2024, 12, 1), datetime(2025, 1, 1)),
        ("2024-02-29", datetime(2024, 2, 29), datetime(2024, 3, 1)),
        ("2024-03-05T10:30", datetime(2024, 3, 5, 10, 30), datetime(2024, 3, 5, 10, 31)),
        ("2024-03-05T10:30:15", datetime(2024, 3, 5, 10, 30, 15), datetime(2024, 3, 5, 10, 30, 16)),
        (
            "2024-03-05T10:30:15Z",
            datetime(2024, 3, 5, 10, 30, 15),
            datetime(2024, 3, 5, 10, 30, 16),
        ),
        (
            "2024-03-05T10:30:15.25Z",
            datetime(2024, 3, 5, 10, 30, 15, 250000),
            datetime(2024, 3, 5, 10, 30, 15, 260000),
        ),
        (
            "2024-03-05T10:30:15.1234567Z",  # beyond microseconds: truncated
            datetime(2024, 3, 5, 10, 30, 15, 123456),
            datetime(2024, 3, 5, 10, 30, 15, 123457),
        ),
        # zones convert to UTC, across a day boundary too
        (
            "2024-03-05T22:30:00-05:00",
            datetime(2024, 3, 6, 3, 30),
            datetime(2024, 3, 6, 3, 30, 1),
        ),
        (
            "2024-01-01T01:00:00+14:00",
            datetime(2023, 12, 31, 11, 0),
            datetime(2023, 12, 31, 11, 0, 1),
        ),
        (
            "2024-03-05T10:30:15+00:00",
            datetime(2024, 3, 5, 10, 30, 15),
            datetime(2024, 3, 5, 10, 30, 16),
        ),
        ("9999", datetime(9999, 1, 1), DATE_MAX),
        ("9999-12-31", datetime(9999, 12, 31), DATE_MAX),
    ],
)
def test_precision_is_a_range(text: str, low: datetime, high: datetime) -> None:
    assert parse_fhir_date(text) == (low, high)


def test_zone_shift_below_the_minimum_clamps() -> None:
    assert parse_fhir_date("0001-01-01T00:00:00+01:00")[0] == DATE_MIN


@pytest.mark.parametrize(
    "text",
    [
        "",
        "24",
        "2024-1",
        "2024-13",
        "2024-02-30",
        "2023-02-29",
        "2024-03-05T25:00",
        "2024-03-05T10:61",
        "2024-03-05T10",
        "2024-03-05 10:30",
        "2024-03-05T10:30:15+15:00",
        "2024-03-05T10:30:15+05",
        "0000",
        "+024-01-01",
        "2024-01-01x",
        "١٢٣٤-01-01",  # non-ASCII digits
        "ge2024",
    ],
)
def test_malformed_dates_raise(text: str) -> None:
    with pytest.raises(ValueError):
        parse_fhir_date(text)


def test_non_string_raises() -> None:
    with pytest.raises(ValueError):
        parse_fhir_date(20240101)  # type: ignore[arg-type]


def test_leap_second_stays_in_its_minute() -> None:
    low, high = parse_fhir_date("2016-12-31T23:59:60Z")
    assert low == datetime(2016, 12, 31, 23, 59, 59, 999999)
    assert high <= datetime(2017, 1, 1, 0, 0, 1)


def test_period_open_ends() -> None:
    assert parse_period("2024-01-01", None) == (datetime(2024, 1, 1), DATE_MAX)
    assert parse_period(None, "2024-01-31") == (DATE_MIN, datetime(2024, 2, 1))
    assert parse_period("2024-01-01", "2024-01-31") == (datetime(2024, 1, 1), datetime(2024, 2, 1))
    assert parse_period(None, None) == (DATE_MIN, DATE_MAX)


def test_to_naive_utc() -> None:
    aware = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert to_naive_utc(aware) == datetime(2024, 1, 1, 10)
    assert to_naive_utc(datetime(2024, 1, 1, 12)) == datetime(2024, 1, 1, 12)


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)))
def test_every_precision_contains_the_instant(d: datetime) -> None:
    """Each coarser rendering of an instant is a range containing it, nested in the next."""
    texts = [
        d.strftime("%Y"),
        d.strftime("%Y-%m"),
        d.strftime("%Y-%m-%d"),
        d.strftime("%Y-%m-%dT%H:%M"),
        d.strftime("%Y-%m-%dT%H:%M:%S"),
        d.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",
    ]
    ranges = [parse_fhir_date(t) for t in texts]
    for low, high in ranges:
        assert low <= d < high
    for (lo1, hi1), (lo2, hi2) in zip(ranges, ranges[1:], strict=False):
        assert lo1 <= lo2 and hi2 <= hi1


@given(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_zones_convert_to_utc(d: datetime, minutes: int) -> None:
    tz = timezone(timedelta(minutes=minutes))
    local = d.replace(microsecond=0, tzinfo=tz)
    sign = "+" if minutes >= 0 else "-"
    hh, mm = divmod(abs(minutes), 60)
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{hh:02d}:{mm:02d}"
    low, high = parse_fhir_date(text)
    assert low == local.astimezone(UTC).replace(tzinfo=None)
    assert high - low == timedelta(seconds=1)
