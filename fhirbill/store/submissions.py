"""X12 bookkeeping: control numbers handed out once, and a record of every claim sent."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from fhirbill.store.tables import x12_claims, x12_counters, x12_interchanges, x12_lines

MAX_CONTROL = 999_999_999


def allocate(conn: Connection, name: str, count: int) -> int:
    """Reserve `count` consecutive numbers of counter `name`; returns the first.

    The UPDATE takes the row lock (PostgreSQL) or runs under the write lock (SQLite), so two
    batches never share a number. Numbers wrap after 999,999,999, as X12 control numbers must.
    """
    if count < 1:
        raise ValueError("count must be positive")
    try:
        with conn.begin_nested():
            conn.execute(insert(x12_counters), {"name": name, "value": 0})
    except IntegrityError:
        pass
    stmt = (
        update(x12_counters)
        .where(x12_counters.c.name == name)
        .values(value=x12_counters.c.value + count)
        .returning(x12_counters.c.value)
    )
    last = int(conn.execute(stmt).scalar_one())
    if last > MAX_CONTROL:
        conn.execute(update(x12_counters).where(x12_counters.c.name == name).values(value=count))
        return 1
    return last - count + 1


@dataclass(frozen=True, slots=True)
class SentClaim:
    """One claim as it went out in an interchange."""

    claim_id: str
    clm01: str
    gs06: int
    st02: int
    frequency: str
    line_controls: dict[int, str]


def record(conn: Connection, isa13: int, when: datetime, text: str, claims: Iterable[SentClaim]) -> None:
    """Store an interchange and its claims and lines (one transaction with the allocation)."""
    claims = list(claims)
    conn.execute(
        insert(x12_interchanges), {"isa13": isa13, "created": when, "claims": len(claims), "content": text}
    )
    for c in claims:
        cid = conn.execute(
            insert(x12_claims).returning(x12_claims.c.id),
            {
                "isa13": isa13,
                "gs06": c.gs06,
                "st02": c.st02,
                "claim_id": c.claim_id,
                "clm01": c.clm01,
                "frequency": c.frequency,
            },
        ).scalar_one()
        if c.line_controls:
            conn.execute(
                insert(x12_lines),
                [{"x12_claim_id": cid, "sequence": s, "line_control": v} for s, v in c.line_controls.items()],
            )


def billed(conn: Connection, claim_ids: Iterable[str]) -> set[str]:
    """Which of these Claim ids have been sent in an 837 already."""
    ids = list(claim_ids)
    out: set[str] = set()
    for i in range(0, len(ids), 500):
        rows = conn.execute(select(x12_claims.c.claim_id).where(x12_claims.c.claim_id.in_(ids[i : i + 500])))
        out.update(r[0] for r in rows)
    return out
