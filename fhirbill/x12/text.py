"""X12 5010 text rules: basic character set, delimiters, amounts, dates and segments.

X12 has no escape mechanism, so every value goes through `clean` before it is written:
uppercased, accents transliterated, anything outside the basic character set (and the
delimiters ``* : ^ ~``, which are in or near it) replaced by a space, runs of spaces
collapsed, then truncated to the element's maximum length.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

ELEMENT = "*"
COMPONENT = ":"
REPETITION = "^"
SEGMENT = "~"
DELIMITERS = frozenset("*:^~")

# Basic character set minus the delimiters * and : (which the basic set contains).
_BASIC = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !\"&'()+,-./;?=")
# Letters that NFKD does not decompose into ASCII.
_TRANSLIT = {
    "Æ": "AE",
    "Ø": "O",
    "Œ": "OE",
    "Ł": "L",
    "Đ": "D",
    "Ð": "D",
    "Þ": "TH",
    "ẞ": "SS",
    "Ħ": "H",
    "Ŧ": "T",
}
# ASCII fast path: one translate() call maps every character outside the set to a space.
_ASCII_TABLE = {c: (chr(c) if chr(c) in _BASIC else " ") for c in range(128)}


@lru_cache(maxsize=8192)
def _clean_full(value: str) -> str:
    text = value.upper()
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(_TRANSLIT.get(ch, ch) for ch in text if not unicodedata.combining(ch))
        text = "".join(ch if ch in _BASIC else " " for ch in text.upper())
    else:
        text = text.translate(_ASCII_TABLE)
    return " ".join(text.split())


def clean(value: object, max_len: int | None = None) -> str:
    """Return `value` as basic-set X12 text: uppercase, no delimiters, at most `max_len` long."""
    if value is None:
        return ""
    text = _clean_full(str(value))
    if max_len is not None and len(text) > max_len:
        text = text[:max_len].rstrip()
    return text


def digits(value: object) -> str:
    """Return only the ASCII digits of `value` (ZIP codes, phone numbers, tax ids)."""
    if value is None:
        return ""
    return "".join(ch for ch in str(value) if "0" <= ch <= "9")


_CENT = Decimal("0.01")


def to_decimal(value: object) -> Decimal | None:
    """Parse a FHIR decimal (JSON number or string) exactly; None when it is not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        # str() first: Decimal(135.57) would carry the binary float error.
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def amount(value: Decimal) -> str:
    """Format money as X12 type R: at most 2 decimals, no trailing zeros (150, 150.5)."""
    text = format(value.quantize(_CENT, rounding=ROUND_HALF_UP), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def quantity(value: Decimal) -> str:
    """Format a unit count as type R without trailing zeros (1, 1.5)."""
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


_FHIR_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


def d8(value: object) -> str | None:
    """Convert a FHIR date or dateTime to CCYYMMDD; None when it is missing or not a full date."""
    if isinstance(value, datetime | date):
        return value.strftime("%Y%m%d")
    if not isinstance(value, str):
        return None
    match = _FHIR_DATE.match(value)
    if not match:
        return None
    try:
        date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None
    return match[1] + match[2] + match[3]


def segment(*elements: str) -> str:
    """Join elements with `*`, dropping trailing empty elements (the terminator is added later)."""
    end = len(elements)
    while end and not elements[end - 1]:
        end -= 1
    return ELEMENT.join(elements[:end])


def composite(*components: str) -> str:
    """Join components with `:`, dropping trailing empty components."""
    end = len(components)
    while end and not components[end - 1]:
        end -= 1
    return COMPONENT.join(components[:end])


def luhn_npi_ok(npi: str) -> bool:
    """Check an NPI's check digit: Luhn over the 80840 prefix plus the 10 digits."""
    if len(npi) != 10 or not npi.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed("80840" + npi)):
        n = ord(ch) - 48
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


# US states, DC, territories and military "states": the N402 values pyx12's code list accepts
# for US addresses.
US_STATES = frozenset(
    (
        "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH "
        "NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY "
        "AS GU MP PR VI FM MH PW AA AE AP"
    ).split()
)
