"""Turning stored Claims into an 837: scrub each one, then translate the billable ones.

Pure: the caller passes the claims, a resolver for what they reference, the date, the clock
and the control numbers, and stores the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fhirbill.fhir.errors import Issue
from fhirbill.fhir.profiles import ProfileRegistry
from fhirbill.rcm.scrub import scrub_claim
from fhirbill.x12 import ClaimInput, ControlNumbers, Interchange, X12Config, build_837

Resolve = Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A claim that did not go out, and what to fix."""

    claim_id: str
    issues: tuple[Issue, ...]


def scrub_all(
    claims: Sequence[dict[str, Any]], resolve: Resolve, today: date, registry: ProfileRegistry | None = None
) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """Split claims into the billable ones and the rejected ones (any error-severity issue)."""
    billable: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for claim in claims:
        issues = scrub_claim(claim, resolve, today, registry=registry)
        errors = [i for i in issues if i.severity in ("error", "fatal")]
        if errors:
            rejected.append(Rejected(str(claim.get("id")), tuple(issues)))
        else:
            billable.append(claim)
    return billable, rejected


def build(
    billable: Sequence[dict[str, Any]],
    resolve: Resolve,
    config: X12Config,
    control: ControlNumbers,
    now: datetime,
) -> tuple[Interchange, list[Rejected]]:
    """The interchange for the billable claims, plus any the translator still refused."""
    inter = build_837([ClaimInput(c, resolve) for c in billable], config, control, now)
    refused = [Rejected(str(r.claim_id), tuple(r.issues)) for r in inter.refused]
    return inter, refused
