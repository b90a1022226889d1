"""Clearinghouse-facing settings of the 837 writer: who sends, who receives, test or production."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from fhirbill.x12.text import clean, digits


@dataclass(frozen=True, slots=True)
class X12Config:
    """Interchange identities (ISA06/ISA08, GS02/GS03), 1000A/1000B loops and payer id overrides.

    `payer_id_overrides` maps a payer Organization id (``"hp1"`` or ``"Organization/hp1"``) to the
    payer id this clearinghouse uses in 2010BB NM109; without an entry the Organization's
    identifier typed ``NIIP`` (v2-0203) is sent.
    """

    sender_id: str = "FHIRBILL"
    receiver_id: str = "CLEARINGHSE"
    submitter_name: str = "FHIRBILL DEMO BILLING"
    submitter_contact_name: str = "BILLING OFFICE"
    submitter_contact_phone: str = "5555550100"
    receiver_name: str = "DEMO CLEARINGHOUSE"
    usage_indicator: str = "T"
    acknowledgment_requested: bool = False  # ISA14: ask for a TA1
    line_breaks: bool = True  # a newline after each ~, for people reading the file
    payer_id_overrides: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("sender_id", "receiver_id"):
            value = getattr(self, name)
            if not 2 <= len(value) <= 15 or clean(value) != value:
                raise ValueError(f"X12Config.{name} must be 2-15 basic-set characters: {value!r}")
        for name in ("submitter_name", "receiver_name", "submitter_contact_name"):
            if not clean(getattr(self, name)):
                raise ValueError(f"X12Config.{name} must contain basic-set characters")
        if self.usage_indicator not in ("T", "P"):
            raise ValueError("X12Config.usage_indicator must be 'T' or 'P'")
        phone = self.submitter_contact_phone
        if digits(phone) != phone or not 10 <= len(phone) <= 15:
            raise ValueError("X12Config.submitter_contact_phone must be 10-15 digits")
        # Freeze the mapping too, so a shared config cannot change under a running batch.
        object.__setattr__(self, "payer_id_overrides", MappingProxyType(dict(self.payer_id_overrides)))

    @property
    def submitter_name_x12(self) -> str:
        """1000A NM103 as X12 text."""
        return clean(self.submitter_name, 60)

    @property
    def contact_name_x12(self) -> str:
        """1000A PER02 as X12 text."""
        return clean(self.submitter_contact_name, 60)

    @property
    def receiver_name_x12(self) -> str:
        """1000B NM103 as X12 text."""
        return clean(self.receiver_name, 60)
