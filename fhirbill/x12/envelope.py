"""ISA/GS/ST envelopes and the control numbers the caller allocates and persists.

The store owns the counters (the 999 and TA1 echo them, so they must never repeat); this
module only formats the numbers it is given: ISA13 as 9 digits, GS06 as an integer, ST02 as
at least 4 digits. One `build_837` call uses ISA13 once, GS06 from `gs06_start` upwards (one
per functional group) and ST02 from `st02_start` upwards (one per claim, across all groups).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fhirbill.x12.config import X12Config
from fhirbill.x12.text import segment

MAX_CONTROL = 999_999_999
VERSIONS = {"837P": "005010X222A1", "837I": "005010X223A2"}


@dataclass(frozen=True, slots=True)
class ControlNumbers:
    """The first free ISA13, GS06 and ST02 for a batch (each 1..999999999)."""

    isa13: int
    gs06_start: int
    st02_start: int

    def __post_init__(self) -> None:
        for name in ("isa13", "gs06_start", "st02_start"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONTROL:
                raise ValueError(f"ControlNumbers.{name} must be an integer in 1..{MAX_CONTROL}: {value!r}")


def st02_text(st02: int) -> str:
    """ST02/SE02 as text: at least 4 digits."""
    return f"{st02:04d}"


def isa(config: X12Config, isa13: int, now: datetime) -> str:
    """The fixed-width ISA segment (106 characters with its terminator)."""
    return segment(
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        "ZZ",
        config.sender_id.ljust(15),
        "ZZ",
        config.receiver_id.ljust(15),
        now.strftime("%y%m%d"),
        now.strftime("%H%M"),
        "^",
        "00501",
        f"{isa13:09d}",
        "1" if config.acknowledgment_requested else "0",
        config.usage_indicator,
        ":",
    )


def gs(config: X12Config, kind: str, gs06: int, now: datetime) -> str:
    """GS for health care claims (HC) of one transaction kind."""
    return segment(
        "GS",
        "HC",
        config.sender_id,
        config.receiver_id,
        now.strftime("%Y%m%d"),
        now.strftime("%H%M"),
        str(gs06),
        "X",
        VERSIONS[kind],
    )


def st_header(config: X12Config, kind: str, st02: int, bht03: str, now: datetime) -> list[str]:
    """ST, BHT and the 1000A submitter / 1000B receiver loops."""
    return [
        segment("ST", "837", st02_text(st02), VERSIONS[kind]),
        segment("BHT", "0019", "00", bht03, now.strftime("%Y%m%d"), now.strftime("%H%M"), "CH"),
        segment("NM1", "41", "2", config.submitter_name_x12, "", "", "", "", "46", config.sender_id),
        segment("PER", "IC", config.contact_name_x12, "TE", config.submitter_contact_phone),
        segment("NM1", "40", "2", config.receiver_name_x12, "", "", "", "", "46", config.receiver_id),
    ]
