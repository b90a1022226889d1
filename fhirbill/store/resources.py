"""Resource rows and their versions: insert, read, update, delete, history.

Every function takes an open Connection; the caller owns the transaction, so a create,
an update or a whole transaction Bundle commits or rolls back as one.
"""

from __future__ import annotations

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
from fhirbill.fhir.ids import new_id
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


def _sql(conn: Connection, text: str) -> str:
    """A statement written with ? placeholders, in the driver's own parameter style."""
    return text if conn.dialect.paramstyle == "qmark" else text.replace("?", "%s")


def _when(value: Any) -> datetime:
    """A timestamp read with driver SQL (SQLite hands back text)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


# The hot paths below skip SQLAlchemy's statement processing (about 0.1 ms a statement, more
# than the statement itself on SQLite) and run driver SQL that both databases accept.
_CURRENT = "SELECT rid, res_type, res_id, version, last_updated, deleted, content FROM resources WHERE res_type = ? AND res_id = ?"


def _row(r: Any, method: str = "") -> Stored:
    return Stored(r.rid, r.res_type, r.res_id, r.version, r.last_updated, r.deleted, r.content, method)


def get_current(conn: Connection, res_type: str, res_id: str, *, lock: bool = False) -> Stored | None:
    """The current row of a resource (deleted ones included), optionally locked for update."""
    sql = _CURRENT + (
        " FOR UPDATE" if lock and conn.dialect.name != "sqlite" else ""
    )  # SQLite writers are serialised
    r = conn.exec_driver_sql(_sql(conn, sql), (res_type, res_id)).first()
    if r is None:
        return None
    return Stored(r[0], r[1], r[2], r[3], _when(r[4]), bool(r[5]), r[6])


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
    """Which of these (type, id) pairs exist and are not deleted (one query per 200 keys)."""
    keys = sorted(set(keys))
    found: set[tuple[str, str]] = set()
    for i in range(0, len(keys), 200):
        chunk = keys[i : i + 200]
        # (type = ? AND id = ?) OR ... uses the unique (res_type, res_id) index for each term on
        # both databases; a row-value IN scans the table on SQLite.
        terms = " OR ".join(["(res_type = ? AND res_id = ?)"] * len(chunk))
        sql = f"SELECT res_type, res_id FROM resources WHERE ({terms}) AND deleted = ?"
        params = [v for key in chunk for v in key] + [False]
        found.update((r[0], r[1]) for r in conn.exec_driver_sql(_sql(conn, sql), tuple(params)))
    return found


def _index_params(kind: str, rid: int, res_type: str, values: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    cols = _INDEX_COLUMNS[kind]
    limits = _MAX_LEN[kind]
    params = []
    for tup in values:
        rec: dict[str, Any] = {"rid": rid, "res_type": res_type, "param": tup[0]}
        for name, limit, val in zip(cols, limits, tup[1:], strict=True):
            rec[name] = val[:limit] if limit and isinstance(val, str) else val
        params.append(rec)
    return params


def write_index(conn: Connection, rid: int, res_type: str, rows: IndexRows, *, fresh: bool) -> None:
    """Replace a resource's index rows."""
    if not fresh:
        for table in INDEX_TABLES.values():
            conn.execute(sql_delete(table).where(table.c.rid == rid))
    for kind, values in rows.items():
        if values:
            conn.execute(insert(INDEX_TABLES[kind]), _index_params(kind, rid, res_type, values))


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
    chosen = res_id is not None
    res_id = res_id or new_id()
    text = render(data, res_id, 1, when)
    row = {
        "res_type": res_type,
        "res_id": res_id,
        "version": 1,
        "last_updated": when,
        "deleted": False,
        "content": text,
    }
    stmt = insert(resources).returning(resources.c.rid)
    if not chosen:  # 128 random bits cannot collide; no savepoint needed
        rid = conn.execute(stmt, row).scalar_one()
    else:
        try:
            with conn.begin_nested():
                rid = conn.execute(stmt, row).scalar_one()
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


def create_many(
    conn: Connection, items: list[dict[str, Any]], indexer: Indexer, *, method: str = "POST"
) -> list[Stored]:
    """Insert many new resources in a few multi-row statements (audit batches, bulk loads).

    A resource keeps the id it carries (a clash fails the whole batch); others get server ids.
    """
    if not items:
        return []
    when = now_utc()
    rows = []
    for data in items:
        res_id = data.get("id") or new_id()
        rows.append(
            {
                "res_type": data["resourceType"],
                "res_id": res_id,
                "version": 1,
                "last_updated": when,
                "deleted": False,
                "content": render(data, res_id, 1, when),
            }
        )
    rids = (
        conn.execute(insert(resources).returning(resources.c.rid, sort_by_parameter_order=True), rows)
        .scalars()
        .all()
    )
    conn.execute(
        insert(resource_versions),
        [
            {
                "rid": rid,
                "version": 1,
                "res_type": r["res_type"],
                "res_id": r["res_id"],
                "last_updated": when,
                "method": method,
                "content": r["content"],
            }
            for rid, r in zip(rids, rows, strict=True)
        ],
    )
    merged: dict[str, list[dict[str, Any]]] = {}
    for rid, r in zip(rids, rows, strict=True):
        for kind, values in indexer(orjson.loads(r["content"])).items():
            merged.setdefault(kind, []).extend(_index_params(kind, rid, r["res_type"], values))
    for kind, params in merged.items():
        if params:
            conn.execute(insert(INDEX_TABLES[kind]), params)
    return [
        Stored(rid, r["res_type"], r["res_id"], 1, when, False, r["content"], method)
        for rid, r in zip(rids, rows, strict=True)
    ]


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
    text = render(data, current.res_id, current.version + 1, when)
    stored = _next_version(conn, current, text, method, when)
    write_index(conn, current.rid, current.res_type, indexer(orjson.loads(text)), fresh=current.deleted)
    return stored


def mark_deleted(conn: Connection, current: Stored, *, when: datetime | None = None) -> Stored:
    """Delete: a new version with no content; history keeps every earlier version."""
    stored = _next_version(conn, current, None, "DELETE", max(when or now_utc(), current.last_updated))
    for table in INDEX_TABLES.values():
        conn.execute(sql_delete(table).where(table.c.rid == current.rid))
    return stored


def _next_version(conn: Connection, current: Stored, text: str | None, method: str, when: datetime) -> Stored:
    """Move the current row on one version (optimistically) and append it to the history."""
    version = current.version + 1
    res = conn.execute(
        sql_update(resources)
        .where(resources.c.rid == current.rid, resources.c.version == current.version)
        .values(version=version, last_updated=when, deleted=text is None, content=text)
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
    return Stored(current.rid, current.res_type, current.res_id, version, when, text is None, text, method)


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
