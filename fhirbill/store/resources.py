"""Resource rows and their versions: insert, read, update, delete, history.

Every function takes an open Connection; the caller owns the transaction, so a create,
an update or a whole transaction Bundle commits or rolls back as one.

Each version's text is stored once. The current version's lives in `resources` and its
`resource_versions` row holds NULL until a newer version (or a delete) replaces it, when the
text moves into that row. Readers of versions take `coalesce(version text, current text)`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from operator import methodcaller
from typing import Any

import orjson
from sqlalchemy import Connection, DateTime, Dialect, Table, and_, func, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.types import TypeEngine

from fhirbill.fhir.errors import FHIRError
from fhirbill.fhir.ids import new_id
from fhirbill.store.tables import INDEX_TABLES, resource_versions, resources

IndexRows = dict[str, list[tuple[Any, ...]]]
Indexer = Callable[[dict[str, Any]], IndexRows]


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


@lru_cache(maxsize=256)  # every entry of a Bundle page or transaction response, mostly a few times
def instant(t: datetime) -> str:
    """A stored timestamp as a FHIR instant."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _document(data: dict[str, Any], res_id: str, version: int, last_updated: str) -> dict[str, Any]:
    """A version as stored: resourceType, id and meta first, then the rest (shared, not copied)."""
    meta = dict(data.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = last_updated
    out: dict[str, Any] = {"resourceType": data["resourceType"], "id": res_id, "meta": meta}
    for k, v in data.items():
        if k not in out:
            out[k] = v
    return out


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


def get_many(conn: Connection, res_type: str, ids: Iterable[str]) -> dict[str, Stored]:
    """The current rows of many resources of one type (deleted ones included), by id."""
    wanted = sorted(set(ids))
    out: dict[str, Stored] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        sql = _CURRENT.replace("res_id = ?", f"res_id IN ({', '.join(['?'] * len(chunk))})")
        for r in conn.exec_driver_sql(_sql(conn, sql), (res_type, *chunk)):
            out[r[2]] = Stored(r[0], r[1], r[2], r[3], _when(r[4]), bool(r[5]), r[6])
    return out


def _versions() -> Any:
    """SELECT of version rows with their text, wherever it is stored (see the module docstring)."""
    v, r = resource_versions, resources
    text = func.coalesce(v.c.content, r.c.content).label("content")
    cols = (v.c.rid, v.c.res_type, v.c.res_id, v.c.version, v.c.last_updated, v.c.method, text)
    return select(*cols).select_from(v.outerjoin(r, and_(r.c.rid == v.c.rid, r.c.version == v.c.version)))


def _version(r: Any) -> Stored:
    return Stored(
        r.rid, r.res_type, r.res_id, r.version, r.last_updated, r.method == "DELETE", r.content, r.method
    )


def get_version(conn: Connection, res_type: str, res_id: str, version: int) -> Stored | None:
    """One historical version (a DELETE entry has content None)."""
    v = resource_versions
    r = conn.execute(
        _versions().where(v.c.res_type == res_type, v.c.res_id == res_id, v.c.version == version)
    ).first()
    return None if r is None else _version(r)


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


@dataclass(slots=True)
class Draft:
    """A new resource ready to insert: its stored document and index rows, computed without the
    database so that callers can do this CPU work before they take the write lock."""

    res_type: str
    res_id: str
    doc: dict[str, Any]  # as stored; insert stamps meta.lastUpdated
    index: IndexRows  # as the driver takes them (see `_ready`)


def draft(data: dict[str, Any], res_id: str, indexer: Indexer, dialect: Dialect) -> Draft:
    """Version 1 of a new resource, ready for `insert` on a database of this dialect."""
    # meta.lastUpdated waits for insert, inside the write transaction, so that it follows commit
    # order on SQLite. No index row depends on it: _lastUpdated is a column of `resources`.
    doc = _document(data, res_id, 1, "")
    return Draft(doc["resourceType"], res_id, doc, _ready(dialect, indexer(doc)))


def insert(
    conn: Connection, drafts: list[Draft], *, method: str = "POST", when: datetime | None = None
) -> list[Stored]:
    """Insert new resources with one statement per table, however many there are.

    A single resource gets 409 if its id is taken (the caller may update instead). Several must
    carry new ids (server-assigned, or known to be free): a clash fails them all.
    """
    if not drafts:
        return []
    when = when or now_utc()
    stamp, at = instant(when), _db_time(conn.dialect, when)
    texts = []
    for d in drafts:
        d.doc["meta"]["lastUpdated"] = stamp
        texts.append(orjson.dumps(d.doc).decode())
    if len(drafts) == 1:
        # One row: the database picks its rid, and ON CONFLICT reports a taken id without the
        # savepoint (two more statements) that catching an IntegrityError would need.
        d = drafts[0]
        row = (d.res_type, d.res_id, 1, at, False, texts[0])
        rid = conn.exec_driver_sql(_sql(conn, _INSERT_NEW), row).scalar()
        if rid is None:
            raise FHIRError.of(409, "conflict", f"{d.res_type}/{d.res_id} already exists.")
        rids = [int(rid)]
    else:
        rids = _reserve_rids(conn, len(drafts))
        rows = [
            (rid, d.res_type, d.res_id, 1, at, False, t)
            for rid, d, t in zip(rids, drafts, texts, strict=True)
        ]
        _write(conn, [(resources, rows)])
    versions = [(rid, 1, d.res_type, d.res_id, at, method, None) for rid, d in zip(rids, drafts, strict=True)]
    index = _index_batches([(rid, d.res_type, d.index) for rid, d in zip(rids, drafts, strict=True)])
    _write(conn, [(resource_versions, versions), *index])
    return [
        Stored(rid, d.res_type, d.res_id, 1, when, False, t, method)
        for rid, d, t in zip(rids, drafts, texts, strict=True)
    ]


# Writes below go to the driver (its own SQL, its cursor): SQLAlchemy's statement and per-row
# parameter processing cost more than the inserts themselves. What its bind processors would do
# to values (dates as text and decimals as floats on SQLite) is done only where needed. Errors
# are the driver's exceptions, unwrapped; nothing here catches them.
_INSERT_NEW = (
    "INSERT INTO resources (res_type, res_id, version, last_updated, deleted, content) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (res_type, res_id) DO NOTHING RETURNING rid"
)
# From this many rows COPY beats a multi-row INSERT on PostgreSQL (measured: a COPY costs about
# two INSERT round trips, then much less per row).
_COPY_MIN = 16

# Complete rows of a table, every column in order, as the driver takes them (see `_ready`).
Batch = tuple[Table, list[tuple[Any, ...]]]


@cache
def _fixes(
    dialect: Dialect, table: Table
) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, Callable[[Any], Any]], ...]]:
    """What an index table's values (param onwards: rid and res_type come later) need before the
    driver takes them: (position, length) of the indexed values, which are cut to their column
    while the resource keeps them whole; and (position, conversion) where SQLAlchemy would convert."""
    cuts, procs = [], []
    for i, col in enumerate(table.columns):
        limit = getattr(col.type, "length", None)
        proc = _processor(dialect, col.type)
        if i > 2 and limit:
            cuts.append((i - 2, limit))
        elif i > 2 and proc is not None:
            procs.append((i - 2, proc))
    return tuple(cuts), tuple(procs)


def _ready(dialect: Dialect, index: IndexRows) -> IndexRows:
    """Index rows as the driver takes them, so that a write only puts rid and type in front (on
    SQLite, dates become text and decimals floats): drafts do this before the write lock."""
    return {kind: _driver_rows(dialect, INDEX_TABLES[kind], rows) for kind, rows in index.items() if rows}


def _db_time(dialect: Dialect, when: datetime) -> Any:
    """A `resources` / `resource_versions` timestamp as the driver takes it."""
    proc = _processor(dialect, resources.c.last_updated.type)
    return proc(when) if proc else when


# SQLAlchemy's SQLite DATETIME processor, formatted in C: the same text for the naive datetimes
# stored here ('2024-03-05 10:00:00.000000'), at a fraction of the cost per index row.
_sqlite_datetime = methodcaller("isoformat", " ", "microseconds")


@cache
def _processor(dialect: Dialect, type_: TypeEngine[Any]) -> Callable[[Any], Any] | None:
    if dialect.name == "sqlite" and isinstance(type_, DateTime):
        return _sqlite_datetime
    return type_.dialect_impl(dialect).bind_processor(dialect)  # type: ignore[no-any-return]


def _driver_rows(dialect: Dialect, table: Table, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    cuts, procs = _fixes(dialect, table)
    if procs:
        rows = [_converted(r, procs) for r in rows]
    if _too_long(rows, cuts):  # rare: values longer than their column
        rows = [_cut(r, cuts) for r in rows]
    return rows


def _too_long(rows: list[tuple[Any, ...]], cuts: tuple[tuple[int, int], ...]) -> bool:
    # Plain loops: a resource has a handful of rows per table, too few for map/filter to pay off.
    for r in rows:
        for i, n in cuts:
            v = r[i]
            if type(v) is str and len(v) > n:
                return True
    return False


def _cut(row: tuple[Any, ...], cuts: tuple[tuple[int, int], ...]) -> tuple[Any, ...]:
    values = list(row)
    for i, n in cuts:
        if type(values[i]) is str:
            values[i] = values[i][:n]
    return tuple(values)


def _converted(row: tuple[Any, ...], procs: tuple[tuple[int, Callable[[Any], Any]], ...]) -> tuple[Any, ...]:
    values = list(row)
    for i, proc in procs:
        if values[i] is not None:
            values[i] = proc(values[i])
    return tuple(values)


def _reserve_rids(conn: Connection, n: int) -> list[int]:
    """`n` unused rids, so that many rows go in without RETURNING (whose order is not defined)."""
    if conn.dialect.name == "postgresql":
        sql = "SELECT nextval(pg_get_serial_sequence('resources', 'rid')) FROM generate_series(1, %s)"
        return [int(r[0]) for r in conn.exec_driver_sql(sql, (n,))]
    # SQLite serialises writers, so the rids above the largest are free until this commits. (A
    # deferred transaction that read an older largest cannot write: it gets SQLITE_BUSY_SNAPSHOT.)
    top = conn.exec_driver_sql("SELECT coalesce(max(rid), 0) FROM resources").scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + n))


def _index_batches(items: list[tuple[int, str, IndexRows]]) -> list[Batch]:
    """The index rows of resources given as (rid, type, rows), per table."""
    return [
        (table, [(rid, rt, *values) for rid, rt, rows in items for values in rows.get(kind, ())])
        for kind, table in INDEX_TABLES.items()
    ]


def _write(conn: Connection, batches: list[Batch], *, clear: int | None = None) -> None:
    """Insert rows, after deleting the index rows of resource `clear`, reading nothing back.

    With no result to wait for, PostgreSQL gets the deletes and small inserts in one pipeline (one
    round trip for all: round trips were most of a single create's time) and big batches by COPY.
    SQLite, in process, runs them one by one.
    """
    dialect = conn.dialect
    batches = [(t, rows) for t, rows in batches if rows]
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    if dialect.name != "postgresql":
        cur = dbapi.cursor()
        try:
            for table in INDEX_TABLES.values() if clear is not None else ():
                cur.execute(f"DELETE FROM {table.name} WHERE rid = ?", (clear,))
            for table, rows in batches:
                cur.executemany(_insert_sql(table, 1, "?"), rows)
        finally:
            cur.close()
        return
    with dbapi.cursor() as cur:
        with dbapi.pipeline():
            for table in INDEX_TABLES.values() if clear is not None else ():
                cur.execute(f"DELETE FROM {table.name} WHERE rid = %s", (clear,))
            for table, rows in batches:
                if len(rows) < _COPY_MIN:
                    cur.execute(_insert_sql(table, len(rows), "%s"), [v for r in rows for v in r])
        for table, rows in batches:
            if len(rows) >= _COPY_MIN:
                names = ", ".join(c.name for c in table.columns)
                with cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                    for r in rows:
                        copy.write_row(r)


@cache
def _insert_sql(table: Table, n: int, mark: str) -> str:
    """INSERT of `n` complete rows."""
    row = "(" + ", ".join([mark] * len(table.columns)) + ")"
    return (
        f"INSERT INTO {table.name} ({', '.join(c.name for c in table.columns)}) VALUES {', '.join([row] * n)}"
    )


def write_index(conn: Connection, rid: int, res_type: str, rows: IndexRows, *, fresh: bool) -> None:
    """Replace a resource's index rows."""
    _write(conn, _index_batches([(rid, res_type, _ready(conn.dialect, rows))]), clear=None if fresh else rid)


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
    return insert(conn, [draft(data, res_id or new_id(), indexer, conn.dialect)], method=method, when=when)[0]


def create_many(
    conn: Connection, items: list[dict[str, Any]], indexer: Indexer, *, method: str = "POST"
) -> list[Stored]:
    """Insert many new resources in a few multi-row statements (audit batches, bulk loads).

    A resource keeps the id it carries (a clash fails the whole batch); others get server ids.
    """
    drafts = [draft(data, data.get("id") or new_id(), indexer, conn.dialect) for data in items]
    return insert(conn, drafts, method=method)


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
    doc = _document(data, current.res_id, current.version + 1, instant(when))
    stored = _next_version(conn, current, orjson.dumps(doc).decode(), method, when)
    index = _index_batches([(current.rid, current.res_type, _ready(conn.dialect, indexer(doc)))])
    _write(conn, [_version_row(conn, stored), *index], clear=None if current.deleted else current.rid)
    return stored


def mark_deleted(conn: Connection, current: Stored, *, when: datetime | None = None) -> Stored:
    """Delete: a new version with no content; history keeps every earlier version."""
    stored = _next_version(conn, current, None, "DELETE", max(when or now_utc(), current.last_updated))
    _write(conn, [_version_row(conn, stored)], clear=current.rid)
    return stored


def _next_version(conn: Connection, current: Stored, text: str | None, method: str, when: datetime) -> Stored:
    """Move the current row on one version (optimistically) and the text it replaces into that
    version's row; the caller writes the new version's row."""
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
    if current.content is not None:
        conn.exec_driver_sql(
            _sql(conn, "UPDATE resource_versions SET content = ? WHERE rid = ? AND version = ?"),
            (current.content, current.rid, current.version),
        )
    return Stored(current.rid, current.res_type, current.res_id, version, when, text is None, text, method)


def _version_row(conn: Connection, s: Stored) -> Batch:
    """The row of a new current version (its text stays in `resources`)."""
    at = _db_time(conn.dialect, s.last_updated)
    return (resource_versions, [(s.rid, s.version, s.res_type, s.res_id, at, s.method, None)])


def history(
    conn: Connection,
    *,
    res_type: str | None = None,
    rid: int | None = None,
    since: datetime | None = None,
    before: tuple[datetime, int, int] | None = None,
    limit: int = 20,
    res_types: Collection[str] | None = None,
) -> list[Stored]:
    """Versions newest first (of one resource, one type, or the `res_types`, else all); `before` is
    the keyset cursor (last_updated, rid, version)."""
    v = resource_versions
    q = _versions()
    if rid is not None:
        q = q.where(v.c.rid == rid)
    elif res_type is not None:
        q = q.where(v.c.res_type == res_type)
    elif res_types is not None:
        q = q.where(v.c.res_type.in_(sorted(res_types)))
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
    return [_version(r) for r in conn.execute(q)]


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
