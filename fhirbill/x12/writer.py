"""`build_837`: many Claims in, one X12 interchange out, plus what was sent and what was refused.

Layout: one ISA per call; one GS per (transaction kind, clearinghouse payer id), in order of
first appearance; one ST per claim, because a 999 rejects a whole ST and we want a rejection
to take out one claim only. Each ST repeats BHT, 1000A and 1000B and has its own HL tree.
BHT03 is ``<ISA13>-<ST02>``. Claims that cannot be translated are left out and reported in
`Interchange.refused` with FHIR issues; the others are not held back by them.

Usage::

    result = build_837([ClaimInput(claim, resolve)], X12Config(), ControlNumbers(101, 101, 1), now)
    result.text            # the file ("" when every claim was refused)
    result.claims          # per claim: ISA13, GS06, ST02, CLM01, REF*6R per item.sequence
    result.refused         # per refused claim: its issues (FHIRPath expressions)
    result.next_control    # the first numbers the next batch may use
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhirbill.fhir.errors import Issue, outcome
from fhirbill.x12.claims import ClaimInput, ClaimReader, Translated, codes
from fhirbill.x12.config import X12Config
from fhirbill.x12.envelope import MAX_CONTROL, ControlNumbers, gs, isa, st02_text, st_header
from fhirbill.x12.institutional import build_institutional
from fhirbill.x12.professional import build_professional
from fhirbill.x12.text import segment

CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"


@dataclass(frozen=True, slots=True)
class BuiltClaim:
    """A claim that is in the interchange, with the keys the 999, 277CA and 835 echo back."""

    index: int  # position in the `claims` argument
    claim_id: str | None
    kind: str  # "837P" | "837I"
    payer_id: str
    isa13: int
    gs06: int
    st02: int
    bht03: str
    clm01: str
    frequency: str
    line_controls: dict[int, str]  # Claim.item.sequence -> REF*6R


@dataclass(frozen=True, slots=True)
class RefusedClaim:
    """A claim left out of the interchange, and why."""

    index: int
    claim_id: str | None
    issues: tuple[Issue, ...]

    def outcome(self) -> dict[str, Any]:
        """The issues as an OperationOutcome."""
        return outcome(self.issues)


@dataclass(frozen=True, slots=True)
class Group:
    """One functional group: GS06, transaction kind, payer id and its ST02s."""

    gs06: int
    kind: str
    payer_id: str
    st02s: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Interchange:
    """The result of `build_837`."""

    text: str
    isa13: int
    groups: tuple[Group, ...] = ()
    claims: tuple[BuiltClaim, ...] = ()
    refused: tuple[RefusedClaim, ...] = ()
    next_control: ControlNumbers = field(default_factory=lambda: ControlNumbers(1, 1, 1))


def translate(inp: ClaimInput, config: X12Config) -> Translated | list[Issue]:
    """Translate one claim to 837 segments, or return the issues that prevent it."""
    r = ClaimReader(inp)
    claim = inp.claim
    if claim.get("resourceType") != "Claim":
        return [Issue("error", "structure", "Not a Claim resource", ("Claim",), "X12-CLAIM")]
    kind = codes(claim.get("type"), CLAIM_TYPE)
    if claim.get("use", "claim") != "claim":
        r.error(
            "not-supported",
            "X12-USE",
            "Only Claim.use = claim can be billed with an 837",
            "Claim.use",
        )
        return r.issues
    try:
        if "professional" in kind:
            result = build_professional(r, config)
        elif "institutional" in kind:
            result = build_institutional(r, config)
        else:
            r.error(
                "not-supported",
                "X12-CLAIM-TYPE",
                f"Claim.type {'/'.join(kind) or '(none)'} has no 837: "
                "only professional and institutional claims do",
                "Claim.type",
            )
            return r.issues
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        # Stored claims are validated on write; this only guards hand-built input.
        return [
            Issue(
                "error",
                "structure",
                f"The Claim JSON is malformed ({type(exc).__name__})",
                ("Claim",),
                "X12-CLAIM",
            )
        ]
    return result if result is not None else r.issues


def build_837(
    claims: Sequence[ClaimInput], config: X12Config, control: ControlNumbers, now: datetime
) -> Interchange:
    """Build one 837 interchange from `claims` with the given control numbers and time."""
    refused: list[RefusedClaim] = []
    groups: dict[tuple[str, str], list[tuple[int, Translated]]] = {}
    for index, inp in enumerate(claims):
        result = translate(inp, config)
        claim_id = inp.claim.get("id") if isinstance(inp.claim, dict) else None
        if isinstance(result, list):
            refused.append(RefusedClaim(index, claim_id, tuple(result)))
        else:
            groups.setdefault((result.kind, result.payer_id), []).append((index, result))
    if not groups:
        return Interchange("", control.isa13, refused=tuple(refused), next_control=control)

    count = sum(len(members) for members in groups.values())
    if control.gs06_start + len(groups) - 1 > MAX_CONTROL or control.st02_start + count - 1 > MAX_CONTROL:
        raise ValueError("control numbers would pass 999999999 in this batch")
    term = "~\n" if config.line_breaks else "~"
    out = [isa(config, control.isa13, now)]
    built: list[BuiltClaim] = []
    group_info: list[Group] = []
    gs06, st02 = control.gs06_start, control.st02_start
    for (kind, payer_id), members in groups.items():
        out.append(gs(config, kind, gs06, now))
        st02s = []
        for index, t in members:
            bht03 = f"{control.isa13:09d}-{st02_text(st02)}"
            transaction = st_header(config, kind, st02, bht03, now) + t.body
            out += transaction
            out.append(segment("SE", str(len(transaction) + 1), st02_text(st02)))
            claim_id = claims[index].claim.get("id")
            built.append(
                BuiltClaim(
                    index,
                    claim_id,
                    kind,
                    payer_id,
                    control.isa13,
                    gs06,
                    st02,
                    bht03,
                    t.clm01,
                    t.frequency,
                    t.line_controls,
                )
            )
            st02s.append(st02)
            st02 += 1
        out.append(segment("GE", str(len(members)), str(gs06)))
        group_info.append(Group(gs06, kind, payer_id, tuple(st02s)))
        gs06 += 1
    out.append(segment("IEA", str(len(groups)), f"{control.isa13:09d}"))
    next_control = ControlNumbers(
        min(control.isa13 + 1, MAX_CONTROL), min(gs06, MAX_CONTROL), min(st02, MAX_CONTROL)
    )
    return Interchange(
        term.join(out) + term,
        control.isa13,
        tuple(group_info),
        tuple(built),
        tuple(refused),
        next_control,
    )
