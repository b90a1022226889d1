"""Resource rows and their versions: insert, read, update, delete, history.

Every function takes an open Connection; the caller owns the transaction, so a create,
an update or a whole transaction Bundle commits or rolls back as one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, and_, func, insert, or_, select
from sqlalchemy import delete as sql_delete
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError

from fhirbill.fhir.errors import FHIRError
from fhirbill.store.tables import INDEX_TABLES, resource_versions, resources

IndexRows = dict[str, list[tuple[Any, ...]]]
Indexer = Callable[[dict[str, Any]], IndexRows]

# Column names of each index table after (rid, res_type, param), matching the indexer's tuples.
_INDEX_COLUMNS = {kind: [c.name for c in t.columns][3:] for kind, t in INDEX_TABLES.items()}
_MAX_LEN = {
    kind: [getattr(t.c[name].type, "length", None) for name in _INDEX_COLUMNS[kind]]
    for kind, t in INDEX_TABLES.items()
}


@dataclass(frozen=True, slots=True)
class Stored:
    """One version of a resource as stored."""

    rid: int
    res_type: str
    res_id: str
    version: int
    last_updated: datetime
    deleted: bool
    content: str | None
    method: str = ""

    @property
    def etag(self) -> str:
        """The weak ETag for this version."""
        return f'W/"{self.version}"'


def now_utc() -> datetime:
    """The current time as naive UTC with millisecond precision (what is stored and served)."""
    t = datetime.now(UTC).replace(tzinfo=None)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def instant(t: datetime) -> str:
    """A stored timestamp as a FHIR instant."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def new_id() -> str:
    """A server-assigned id: 128 random bits, URL-safe, within FHIR's 64-character limit."""
    return secrets.token_hex(16)


def render(data: dict[str, Any], res_id: str, version: int, when: datetime) -> str:
    """Canonical JSON text for a version: resourceType, id and meta first, then the rest."""
    meta = dict(data.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = instant(when)
    out: dict[str, Any] = {"resourceType": data["resourceType"], "id": res_id, "meta": meta}
    for k, v in data.items():
        if k not in out:
            out[k] = v
    return orjson.dumps(out).decode()


def _row(r: Any, method: str = "") -> Stored:
    return Stored(r.rid, r.res_type, r.res_id, r.version, r.last_updated, r.deleted, r.content, method)


def get_current(conn: Connection, res_type: str, res_id: str, *, lock: bool = False) -> Stored | None:
    """The current row of a resource (deleted ones included), optionally locked for update."""
    q = select(resources).where(resources.c.res_type == res_type, resources.c.res_id == res_id)
    if lock and conn.dialect.name != "sqlite":  # SQLite writers are already serialised
        q = q.with_for_update()
    r = conn.execute(q).first()
    return _row(r) if r else None


def get_version(conn: Connection, res_type: str, res_id: str, version: int) -> Stored | None:
    """One historical version (a DELETE entry has content None)."""
    v = resource_versions
    r = conn.execute(
        select(v).where(v.c.res_type == res_type, v.c.res_id == res_id, v.c.version == version)
    ).first()
    if r is None:
        return None
    return Stored(
        r.rid, r.res_type, r.res_id, r.version, r.last_updated, r.content is None, r.content, r.method
    )


def existing(conn: Connection, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (type, id) pairs exist and are not deleted."""
    by_type: dict[str, list[str]] = {}
    for rt, rid in set(keys):
        by_type.setdefault(rt, []).append(rid)
    found: set[tuple[str, str]] = set()
    for rt, ids in by_type.items():
        for i in range(0, len(ids), 500):
            # type = ? AND id IN (...) uses the unique (res_type, res_id) index on every database;
            # a row-value IN does not on SQLite.
            rows = conn.execute(
                select(resources.c.res_id).where(
                    resources.c.res_type == rt,
                    resources.c.res_id.in_(ids[i : i + 500]),
                    resources.c.deleted.is_(False),
                )
            )
            found.update((rt, r[0]) for r in rows)
    return found


def write_index(conn: Connection, rid: int, res_type: str, rows: IndexRows, *, fresh: bool) -> None:
    """Replace a resource's index rows."""
    if not fresh:
        for table in INDEX_TABLES.values():
            conn.execute(sql_delete(table).where(table.c.rid == rid))
    for kind, values in rows.items():
        if not values:
            continue
        cols = _INDEX_COLUMNS[kind]
        limits = _MAX_LEN[kind]
        params = []
        for tup in values:
            rec: dict[str, Any] = {"rid": rid, "res_type": res_type}
            for name, limit, val in zip(cols, limits, tup[1:], strict=True):
                rec[name] = val[:limit] if limit and isinstance(val, str) else val
            rec["param"] = tup[0]
            params.append(rec)
        conn.execute(insert(INDEX_TABLES[kind]), params)


def create(
    conn: Connection,
    data: dict[str, Any],
    indexer: Indexer,
    *,
    res_id: str | None = None,
    method: str = "POST",
    when: datetime | None = None,
) -> Stored:
    """Insert version 1 of a new resource; 409 if the id is taken (the caller decides to update)."""
    when = when or now_utc()
    res_type = data["resourceType"]
    res_id = res_id or new_id()
    text = render(data, res_id, 1, when)
    try:
        with conn.begin_nested():
            rid = conn.execute(
                insert(resources).returning(resources.c.rid),
                {
                    "res_type": res_type,
                    "res_id": res_id,
                    "version": 1,
                    "last_updated": when,
                    "deleted": False,
                    "content": text,
                },
            ).scalar_one()
    except IntegrityError:
        raise FHIRError.of(409, "conflict", f"{res_type}/{res_id} already exists.") from None
    conn.execute(
        insert(resource_versions),
        {
            "rid": rid,
            "version": 1,
            "res_type": res_type,
            "res_id": res_id,
            "last_updated": when,
            "method": method,
            "content": text,
        },
    )
    write_index(conn, rid, res_type, indexer(orjson.loads(text)), fresh=True)
    return Stored(rid, res_type, res_id, 1, when, False, text, method)


def same_content(current: Stored, data: dict[str, Any]) -> bool:
    """True when `data` equals the current version apart from id and server-managed meta."""
    if current.deleted or current.content is None:
        return False
    old = orjson.loads(current.content)
    return _strip(old) == _strip(data)


def _strip(d: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in d.items() if k not in ("id", "meta")}
    meta = {k: v for k, v in (d.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    return out


def update(
    conn: Connection,
    current: Stored,
    data: dict[str, Any],
    indexer: Indexer,
    *,
    method: str = "PUT",
    when: datetime | None = None,
) -> Stored:
    """Write the next version; 412 if someone else wrote a version since `current` was read."""
    when = max(when or now_utc(), current.last_updated)
    version = current.version + 1
    text = render(data, current.res_id, version, when)
    res = conn.execute(
        sql_update(resources)
        .where(resources.c.rid == current.rid, resources.c.version == current.version)
        .values(version=version, last_updated=when, deleted=False, content=text)
    )
    if res.rowcount != 1:
        raise FHIRError.of(
            412, "conflict", f"{current.res_type}/{current.res_id} was changed by another request."
        )
    conn.execute(
        insert(resource_versions),
        {
            "rid": current.rid,
            "version": version,
            "res_type": current.res_type,
            "res_id": current.res_id,
            "last_updated": when,
            "method": method,
            "content": text,
        },
    )
    write_index(conn, current.rid, current.res_type, indexer(orjson.loads(text)), fresh=current.deleted)
    return Stored(current.rid, current.res_type, current.res_id, version, when, False, text, method)


def mark_deleted(conn: Connection, current: Stored, *, when: datetime | None = None) -> Stored:
    """Delete: a new version with no content; history keeps every earlier version."""
    when = max(when or now_utc(), current.last_updated)
    version = current.version + 1
    res = conn.execute(
        sql_update(resources)
        .where(resources.c.rid == current.rid, resources.c.version == current.version)
        .values(version=version, last_updated=when, deleted=True, content=None)
    )
    if res.rowcount != 1:
        raise FHIRError.of(
            412, "conflict", f"{current.res_type}/{current.res_id} was changed by another request."
        )
    conn.execute(
        insert(resource_versions),
        {
            "rid": current.rid,
            "version": version,
            "res_type": current.res_type,
            "res_id": current.res_id,
            "last_updated": when,
            "method": "DELETE",
            "content": None,
        },
    )
    for table in INDEX_TABLES.values():
        conn.execute(sql_delete(table).where(table.c.rid == current.rid))
    return Stored(current.rid, current.res_type, current.res_id, version, when, True, None, "DELETE")


def history(
    conn: Connection,
    *,
    res_type: str | None = None,
    rid: int | None = None,
    since: datetime | None = None,
    before: tuple[datetime, int, int] | None = None,
    limit: int = 20,
) -> list[Stored]:
    """Versions newest first; `before` is the keyset cursor (last_updated, rid, version)."""
    v = resource_versions
    q = select(v)
    if rid is not None:
        q = q.where(v.c.rid == rid)
    elif res_type is not None:
        q = q.where(v.c.res_type == res_type)
    if since is not None:
        q = q.where(v.c.last_updated >= since)
    if before is not None:
        t, r, ver = before
        q = q.where(
            or_(
                v.c.last_updated < t,
                and_(v.c.last_updated == t, or_(v.c.rid < r, and_(v.c.rid == r, v.c.version < ver))),
            )
        )
    q = q.order_by(v.c.last_updated.desc(), v.c.rid.desc(), v.c.version.desc()).limit(limit)
    return [
        Stored(r.rid, r.res_type, r.res_id, r.version, r.last_updated, r.content is None, r.content, r.method)
        for r in conn.execute(q)
    ]


def history_count(
    conn: Connection, *, res_type: str | None = None, rid: int | None = None, since: datetime | None = None
) -> int:
    """How many versions a history query covers."""
    v = resource_versions
    q = select(func.count()).select_from(v)
    if rid is not None:
        q = q.where(v.c.rid == rid)
    elif res_type is not None:
        q = q.where(v.c.res_type == res_type)
    if since is not None:
        q = q.where(v.c.last_updated >= since)
    return int(conn.execute(q).scalar_one())
