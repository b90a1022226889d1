"""The 837 operations (`Claim/$x12`, `fhirbill x12 837`): load claims, scrub, translate, record.

Scrubbing reads in one transaction; control numbers are allocated, the file built and the
submission recorded in one write transaction, so a failure leaves no gap in the records and
no number is ever used twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from fhirbill.api.server import Server
from fhirbill.fhir.errors import FHIRError, Issue
from fhirbill.fhir.search_query import parse_search
from fhirbill.rcm.billing import Rejected, build, scrub_all
from fhirbill.store import resources as repo
from fhirbill.store import submissions
from fhirbill.store.db import read_tx, write_tx
from fhirbill.store.search import find
from fhirbill.x12 import ControlNumbers, X12Config

_REF = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
EDI_X12 = "application/edi-x12"


@dataclass
class Run:
    """What an 837 run produced."""

    text: str = ""
    isa13: int | None = None
    sent: list[str] = field(default_factory=list)  # Claim ids in the interchange
    rejected: list[Rejected] = field(default_factory=list)


def x12_config(srv: Server) -> X12Config:
    """The writer's configuration from settings."""
    s = srv.settings
    return X12Config(sender_id=s.x12_sender_id, receiver_id=s.x12_receiver_id, usage_indicator=s.x12_usage)


def resolver(engine: Engine, base: str) -> Callable[[str], dict[str, Any] | None]:
    """Look references up in the database (local `Type/id` or absolute URLs on this server), cached."""
    cache: dict[tuple[str, str], dict[str, Any] | None] = {}

    def resolve(ref: str) -> dict[str, Any] | None:
        if "://" in ref and not ref.startswith(base + "/"):
            return None
        m = _REF.match(ref)
        if not m:
            return None
        key = (m.group(1), m.group(2))
        if key not in cache:
            with read_tx(engine) as conn:
                cur = repo.get_current(conn, *key)
            cache[key] = orjson.loads(cur.content) if cur and cur.content else None
        return cache[key]

    return resolve


def load_claims(conn: Connection, ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """The live Claims with these ids, and a rejection for each one that is not there."""
    claims, missing = [], []
    found = repo.get_many(conn, "Claim", ids)
    for cid in ids:
        cur = found.get(cid)
        if cur is None or cur.content is None:
            what = "was deleted" if cur else "is not known"
            missing.append(Rejected(cid, (Issue("error", "not-found", f"Claim/{cid} {what}.", ("Claim",)),)))
        else:
            claims.append(orjson.loads(cur.content))
    return claims, missing


def payer_claim_ids(srv: Server, conn: Connection, payer: str) -> list[str]:
    """Active claims of a payer (Claim.insurer) that have not been sent yet."""
    parsed = parse_search(
        "Claim", [("insurer", payer), ("status", "active")], srv.params, base_url=srv.base, strict=True
    )
    ids = [s.res_id for s in find(conn, parsed, limit=1_000_000)]
    done = submissions.billed(conn, ids)
    return [i for i in ids if i not in done]


def run_837(
    srv: Server,
    claim_ids: Sequence[str] = (),
    payer: str | None = None,
    *,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> Run:
    """Scrub and translate claims into one interchange, recording what was sent."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    with read_tx(srv.engine) as conn:
        ids = list(claim_ids)
        if payer:
            ids += [i for i in payer_claim_ids(srv, conn, payer) if i not in ids]
        claims, rejected = load_claims(conn, ids)
    resolve = resolver(srv.engine, srv.base)
    billable, refused = scrub_all(claims, resolve, now.date(), srv.profiles)
    rejected += refused
    if progress:
        progress(len(claims))
    run = Run(rejected=rejected)
    if not billable:
        return run
    with write_tx(srv.engine) as conn:
        n = len(billable)
        control = ControlNumbers(
            submissions.allocate(conn, "isa13", 1),
            submissions.allocate(conn, "gs06", n),
            submissions.allocate(conn, "st02", n),
        )
        inter, refused = build(billable, resolve, x12_config(srv), control, now)
        run.rejected += refused
        if inter.claims:
            submissions.record(
                conn,
                inter.isa13,
                now,
                inter.text,
                [
                    submissions.SentClaim(
                        str(c.claim_id), c.clm01, c.gs06, c.st02, c.frequency, c.line_controls
                    )
                    for c in inter.claims
                ],
            )
            run.text, run.isa13 = inter.text, inter.isa13
            run.sent = [str(c.claim_id) for c in inter.claims]
    return run


def parameters_input(body: Any) -> tuple[list[str], str | None]:
    """Claim ids and payer reference from a `$x12` Parameters body."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FHIRError.of(400, "invalid", "POST Claim/$x12 takes a Parameters resource.")
    ids: list[str] = []
    payer = None
    for i, p in enumerate(body.get("parameter") or []):
        ref = ((p or {}).get("valueReference") or {}).get("reference")
        name = (p or {}).get("name")
        if name not in ("claim", "payer") or not isinstance(ref, str):
            raise FHIRError.of(
                400,
                "invalid",
                "Each parameter must be 'claim' or 'payer' with a valueReference.",
                f"Parameters.parameter[{i}]",
            )
        m = _REF.match(ref)
        if not m or m.group(1) != ("Claim" if name == "claim" else "Organization"):
            raise FHIRError.of(
                400,
                "invalid",
                f"'{name}' must reference {'a Claim' if name == 'claim' else 'an Organization'}.",
                f"Parameters.parameter[{i}].valueReference",
            )
        if name == "claim":
            ids.append(m.group(2))
        else:
            payer = f"Organization/{m.group(2)}"
    if not ids and not payer:
        raise FHIRError.of(400, "required", "Name at least one 'claim' or a 'payer'.", "Parameters.parameter")
    return ids, payer


def parameters_output(run: Run) -> dict[str, Any]:
    """The `$x12` answer: the interchange as a Binary and each rejected claim with its outcome."""
    import base64

    params: list[dict[str, Any]] = []
    if run.text:
        params.append(
            {
                "name": "interchange",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": EDI_X12,
                    "data": base64.b64encode(run.text.encode()).decode(),
                },
            }
        )
    for r in run.rejected:
        params.append(
            {
                "name": "rejected",
                "part": [
                    {"name": "claim", "valueReference": {"reference": f"Claim/{r.claim_id}"}},
                    {
                        "name": "outcome",
                        "resource": {
                            "resourceType": "OperationOutcome",
                            "issue": [i.to_json() for i in r.issues],
                        },
                    },
                ],
            }
        )
    return {"resourceType": "Parameters", "parameter": params} if params else {"resourceType": "Parameters"}
