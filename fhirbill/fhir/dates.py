"""FHIR date, dateTime and instant values as half-open UTC ranges implied by their precision."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

# Open ends of a Period (and the clamp for ranges that would overflow datetime).
DATE_MIN = datetime(1, 1, 1)
DATE_MAX = datetime(9999, 12, 31, 23, 59, 59, 999999)

_DATE_RE = re.compile(
    r"(?P<year>\d{4})"
    r"(?:-(?P<month>\d{2})"
    r"(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?"
    r")?)?)?",
    re.ASCII,
)


def _add_months(d: datetime, months: int) -> datetime:
    total = d.year * 12 + (d.month - 1) + months
    return d.replace(year=total // 12, month=total % 12 + 1)


def parse_fhir_date(text: str) -> tuple[datetime, datetime]:
    """The range [low, high) a FHIR date/dateTime/instant covers, as naive UTC datetimes.

    A value without a time zone is taken as UTC. Raises ValueError when the text is not a
    FHIR date, dateTime or instant (or names an impossible date).
    """
    if not isinstance(text, str):
        raise ValueError("not a FHIR date")
    return _parse_cached(text)


@lru_cache(maxsize=8192)
def _parse_cached(text: str) -> tuple[datetime, datetime]:
    # Claims and EOBs repeat the same few dates on every line: parse each text once.
    y, mo, d = text[:4], text[5:7], text[8:]
    if len(text) == 10 and text[4] == "-" and text[7] == "-" and text.isascii():
        if y.isdigit() and mo.isdigit() and d.isdigit():
            try:
                low = datetime(int(y), int(mo), int(d))
                return low, low + timedelta(days=1)
            except (ValueError, OverflowError):
                pass
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise ValueError("not a FHIR date")
    g = m.groupdict()
    year = int(g["year"])
    month = int(g["month"] or 1)
    day = int(g["day"] or 1)
    hour = int(g["hour"] or 0)
    minute = int(g["minute"] or 0)
    second = int(g["second"] or 0)
    frac = g["fraction"]
    micro = int((frac + "000000")[:6]) if frac else 0
    if year == 0:
        raise ValueError("year 0")
    if second == 60:  # a leap second: stays within the same minute's range end
        second = 59
        micro = 999999
    low = datetime(year, month, day, hour, minute, second, micro)  # raises on impossible dates
    try:
        if g["month"] is None:
            high = low.replace(year=year + 1)
        elif g["day"] is None:
            high = _add_months(low, 1)
        elif g["hour"] is None:
            high = low + timedelta(days=1)
        elif g["second"] is None:
            high = low + timedelta(minutes=1)
        elif not frac:
            high = low + timedelta(seconds=1)
        else:
            high = low + timedelta(microseconds=10 ** (6 - min(len(frac), 6)))
    except (ValueError, OverflowError):
        high = DATE_MAX
    tz = g["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        th, tm = int(tz[1:3]), int(tz[4:6])
        if th > 14 or tm > 59:
            raise ValueError("bad time zone")
        offset = timedelta(hours=th, minutes=tm) * sign
        low = _shift(low, -offset)
        high = _shift(high, -offset)
    return low, high


def _shift(d: datetime, delta: timedelta) -> datetime:
    try:
        return d + delta
    except OverflowError:
        return DATE_MIN if delta < timedelta(0) else DATE_MAX


def parse_period(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """The range a Period covers: start's low to end's high, open ends as DATE_MIN/DATE_MAX."""
    low = parse_fhir_date(start)[0] if start else DATE_MIN
    high = parse_fhir_date(end)[1] if end else DATE_MAX
    return low, high


def to_naive_utc(value: datetime) -> datetime:
    """A datetime as naive UTC (aware values converted, naive ones taken as UTC)."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)
