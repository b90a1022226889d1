"""The search query builder: ParsedSearch in, SQL over the typed index tables out.

Each clause becomes a `rid IN (...)` (or `NOT IN`) subquery on one index table; repeated
parameters AND, comma values OR. Chains and `_has` nest the same subqueries through
idx_reference. Paging is keyset: the sort keys plus rid, so rows added while a client pages
neither repeat nor vanish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    distinct,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from fhirbill.fhir.dates import DATE_MAX
from fhirbill.fhir.errors import FHIRError
from fhirbill.fhir.search_query import (
    DateValue,
    IncludeSpec,
    NumberValue,
    ParsedSearch,
    QuantityValue,
    ReferenceValue,
    SearchClause,
    SortKey,
    StringValue,
    TextValue,
    TokenValue,
    UriValue,
)
from fhirbill.fhir.searchparams import SearchParam
from fhirbill.store.resources import Stored
from fhirbill.store.tables import INDEX_TABLES, idx_reference, resources

R = resources
# Stand-ins for "no value" in sort keys, so that keyset comparisons never meet NULL.
_SENTINELS: dict[str, Any] = {
    "date": DATE_MAX,
    "string": "\U0010ffff",
    "token": "\U0010ffff",
    "reference": "\U0010ffff",
    "uri": "\U0010ffff",
    "number": Decimal("1e15"),
    "quantity": Decimal("1e15"),
}


# The index column a parameter type sorts on (a Period sorts on its start).
_SORT_COLUMN = {
    "date": "low",
    "string": "norm",
    "token": "code",
    "reference": "ref_id",
    "uri": "uri",
    "number": "value",
    "quantity": "value",
}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --------------------------------------------------------------------------------------------
# Value conditions, one per parameter type, on an index table `t`


def _date_cond(v: DateValue, lo: Any, hi: Any) -> ColumnElement[bool]:
    """R4 search.html date prefixes; the target is the range [lo, hi)."""
    p = v.prefix
    if p == "eq":
        return and_(lo >= v.low, hi <= v.high)
    if p == "ne":
        return not_(and_(lo >= v.low, hi <= v.high))
    if p == "lt":
        return lo < v.low
    if p == "gt":
        return hi > v.high
    if p == "le":
        return lo < v.high
    if p == "ge":
        return hi > v.low
    if p == "sa":
        return lo >= v.high
    if p == "eb":
        return hi <= v.low
    # ap: overlap with the value widened by 10% of its distance from now (at least a day)
    now = datetime.utcnow()  # noqa: DTZ003 - stored times are naive UTC
    slack = max(abs(now - v.low) / 10, timedelta(days=1))
    return and_(lo < v.high + slack, hi > v.low - slack)


def _number_cond(v: NumberValue | QuantityValue, col: Any) -> ColumnElement[bool]:
    p = v.prefix
    if p == "eq":
        return and_(col >= v.low, col < v.high)
    if p == "ne":
        return or_(col < v.low, col >= v.high)
    if p in ("lt", "eb"):
        return col < v.value
    if p in ("gt", "sa"):
        return col > v.value
    if p == "le":
        return col <= v.value
    if p == "ge":
        return col >= v.value
    slack = abs(v.value) / 10
    return and_(col >= v.value - slack, col <= v.value + slack)


def _value_cond(kind: str, t: Any, v: Any, modifier: str | None) -> ColumnElement[bool]:
    if kind == "token":
        if isinstance(v, TextValue):
            return t.c.text.like(_like_escape(v.norm) + "%", escape="\\")
        assert isinstance(v, TokenValue)
        conds = []
        if v.code is not None:
            conds.append(t.c.code == v.code)
        if v.no_system:
            conds.append(t.c.system.is_(None))
        elif v.system is not None:
            conds.append(t.c.system == v.system)
        return and_(true(), *conds)
    if kind == "reference":
        assert isinstance(v, ReferenceValue)
        if v.url is not None:
            return t.c.url == v.url
        conds = [t.c.ref_id == v.ref_id]
        if v.ref_type:
            conds.append(t.c.ref_type == v.ref_type)
        return and_(*conds)
    if kind == "date":
        assert isinstance(v, DateValue)
        return _date_cond(v, t.c.low, t.c.high)
    if kind == "string":
        assert isinstance(v, StringValue)
        if modifier == "exact":
            return t.c.value == v.value
        if modifier == "contains":
            return t.c.norm.like("%" + _like_escape(v.norm) + "%", escape="\\")
        return t.c.norm.like(_like_escape(v.norm) + "%", escape="\\")
    if kind == "number":
        assert isinstance(v, NumberValue)
        return _number_cond(v, t.c.value)
    if kind == "quantity":
        assert isinstance(v, QuantityValue)
        conds = [_number_cond(v, t.c.value)]
        if v.system is not None:
            conds.append(t.c.system == v.system)
        if v.code is not None:
            conds.append(or_(t.c.code == v.code))
        return and_(*conds)
    if kind == "uri":
        assert isinstance(v, UriValue)
        if modifier == "below":
            return t.c.uri.like(_like_escape(v.uri) + "%", escape="\\")
        if modifier == "above":
            return literal(v.uri).like(
                func.replace(func.replace(t.c.uri, "%", "\\%"), "_", "\\_") + "%", escape="\\"
            )
        return t.c.uri == v.uri
    raise FHIRError.of(400, "not-supported", f"Search on parameters of type {kind} is not supported.")


# --------------------------------------------------------------------------------------------
# Clauses


def _column_cond(p: SearchParam, rt: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """_id and _lastUpdated, answered from the resources table."""
    ors = []
    for v in values:
        if p.column == "id":
            if isinstance(v, TokenValue):
                ors.append(rt.c.res_id == v.code)
            elif isinstance(v, (StringValue, ReferenceValue)):
                ors.append(rt.c.res_id == (v.value if isinstance(v, StringValue) else v.ref_id))
        else:
            ors.append(_instant_cond(v, rt.c.last_updated))
    return or_(false(), *ors)


def _instant_cond(v: DateValue, col: Any) -> ColumnElement[bool]:
    """Date prefixes against a stored instant (a range one millisecond wide)."""
    p = v.prefix
    if p in ("eq", "ap"):
        return and_(col >= v.low, col < v.high)
    if p == "ne":
        return or_(col < v.low, col >= v.high)
    if p in ("lt", "eb"):
        return col < v.low
    if p in ("gt", "sa"):
        return col >= v.high
    if p == "le":
        return col < v.high
    return col >= v.low  # ge


def _param_is(t: Any, codes: tuple[str, ...]) -> ColumnElement[bool]:
    """Index rows of these parameter codes (one, or the parts of a union parameter)."""
    return t.c.param == codes[0] if len(codes) == 1 else t.c.param.in_(codes)


def _rids_matching(clause: SearchClause, types: Sequence[str], correlate: Any = None) -> Select[Any]:
    """rids of resources of `types` whose `clause.param` matches any value (modifiers applied);
    with `correlate`, only the row of that resource alias (for an EXISTS test)."""
    p = clause.param
    t = INDEX_TABLES[p.type].alias()
    base = select(t.c.rid).where(t.c.res_type.in_(types), _param_is(t, clause.index_params))
    if correlate is not None:
        base = base.where(t.c.rid == correlate.c.rid)
    if clause.missing is not None:
        return base
    return base.where(or_(false(), *(_value_cond(p.type, t, v, clause.modifier) for v in clause.values)))


def _target_cond(
    clause: SearchClause, rt: Any, types: Sequence[str], *, drives: bool = True
) -> ColumnElement[bool]:
    """The condition for the last hop: on resource alias `rt` of `types`.

    The clause that `drives` the query is an IN over its index rows; the others are EXISTS tests
    on the few rows it yields, instead of each materialising every match of its own.
    """
    p = clause.param
    if p.column is not None:
        if clause.missing is not None:
            return false() if clause.missing else true()
        cond = _column_cond(p, rt, clause.values)
        return not_(cond) if clause.negated else cond
    if not drives:
        test = exists(_rids_matching(clause, types, correlate=rt))
        return not_(test) if clause.missing is True or clause.negated else test
    sub = _rids_matching(clause, types)
    if clause.missing is True or clause.negated:
        return rt.c.rid.not_in(sub)
    return rt.c.rid.in_(sub)


def _refs_to(ref: Any, types: Sequence[str], ids_of: Any) -> ColumnElement[bool]:
    """Reference rows pointing at resources of `types` chosen by `ids_of(type)` (a subquery of ids).

    One `ref_type = T AND ref_id IN (...)` per type, so every database can use the
    (res_type, param, ref_id, ref_type) index; a row-value IN cannot on SQLite.
    """
    return or_(false(), *(and_(ref.c.ref_type == t, ref.c.ref_id.in_(ids_of(t))) for t in types))


def _chain_cond(clause: SearchClause, rt: Any, types: Sequence[str], hops: int) -> ColumnElement[bool]:
    """Follow forward chain hops from `rt`, then apply the final condition."""
    if hops == len(clause.chain):
        return _target_cond(clause, rt, types)
    link = clause.chain[hops]
    ref = idx_reference.alias()

    def ids_of(t: str) -> Any:
        target = R.alias()
        return select(target.c.res_id).where(
            target.c.res_type == t, target.c.deleted.is_(False), _chain_cond(clause, target, (t,), hops + 1)
        )

    return rt.c.rid.in_(
        select(ref.c.rid).where(
            ref.c.res_type.in_(types),
            ref.c.param == link.param.code,
            _refs_to(ref, link.target_types, ids_of),
        )
    )


def clause_cond(clause: SearchClause, rt: Any, res_type: str, *, drives: bool = True) -> ColumnElement[bool]:
    """One clause as a condition on resource alias `rt` of type `res_type`."""
    if clause.has:
        return _has_cond(clause, rt, res_type, 0)
    if not clause.chain:
        return _target_cond(clause, rt, (res_type,), drives=drives)
    return _chain_cond(clause, rt, (res_type,), 0)


def _has_cond(clause: SearchClause, rt: Any, res_type: str, hop: int) -> ColumnElement[bool]:
    """`_has`: resources that a source type points at, where the source matches the rest."""
    link = clause.has[hop]
    src = R.alias()
    ref = idx_reference.alias()
    if hop + 1 < len(clause.has):
        inner = _has_cond(clause, src, link.source_type, hop + 1)
    else:
        inner = _chain_cond(clause, src, (link.source_type,), 0)
    sources = select(src.c.rid).where(src.c.res_type == link.source_type, src.c.deleted.is_(False), inner)
    return rt.c.res_id.in_(
        select(ref.c.ref_id).where(
            ref.c.res_type == link.source_type,
            ref.c.param == link.param.code,
            ref.c.ref_type == res_type,
            ref.c.rid.in_(sources),
        )
    )


def _narrows(clause: SearchClause) -> bool:
    """Does the clause select rids from an index table of the searched type (so it can drive the query)?"""
    return (
        clause.param.column is None and not clause.negated and clause.missing is not True and not clause.has
    )


# Which clause drives a search: the likeliest to be selective first.
_SELECTIVITY = {"reference": 0, "token": 1, "uri": 2, "string": 3, "date": 4, "number": 5, "quantity": 5}


def _driver(clauses: Sequence[SearchClause]) -> SearchClause | None:
    simple = [c for c in clauses if _narrows(c) and not c.chain and not c.has]
    if not simple:
        return None
    return min(simple, key=lambda c: (_SELECTIVITY.get(c.param.type, 9), c.missing is not None))


def where(parsed: ParsedSearch, rt: Any = R) -> list[ColumnElement[bool]]:
    """Every condition of a search on the resources table (or an alias of it).

    When an index clause already picks rows of the type, the `res_type = ?` test is left out:
    otherwise SQLite walks every resource of the type through the (res_type, ...) index instead
    of looking up the few rids the index clause yields.
    """
    conds: list[ColumnElement[bool]] = [rt.c.deleted.is_(False)]
    if not any(_narrows(c) for c in parsed.clauses):
        conds.insert(0, rt.c.res_type == parsed.resource_type)
    driver = _driver(parsed.clauses)
    for clause in parsed.clauses:
        drives = driver is None or clause is driver
        conds.append(clause_cond(clause, rt, parsed.resource_type, drives=drives))
    return conds


# --------------------------------------------------------------------------------------------
# Sorting and keyset paging


def _sort_expr(key: SortKey, res_type: str) -> Any:
    p = key.param
    if p.column == "id":
        return R.c.res_id
    if p.column == "last_updated":
        return R.c.last_updated
    t = INDEX_TABLES[p.type].alias()
    col = t.c[_SORT_COLUMN[p.type]]
    agg = func.max(col) if key.descending else func.min(col)
    sub = select(agg).where(t.c.rid == R.c.rid, _param_is(t, p.index_codes)).scalar_subquery()
    return func.coalesce(sub, _SENTINELS[p.type])


@dataclass(frozen=True)
class Page:
    """One page of search results with what is needed for its links."""

    rows: list[Stored]
    keys: list[list[Any]]  # each row's sort-key values (for cursors)
    has_next: bool
    has_prev: bool
    total: int | None


def _keyset(exprs: list[Any], desc: list[bool], boundary: list[Any], after: bool) -> ColumnElement[bool]:
    """Rows strictly after (or before) `boundary` in the order of exprs/desc."""
    ors = []
    for i, (e, d) in enumerate(zip(exprs, desc, strict=True)):
        eqs = [exprs[j] == boundary[j] for j in range(i)]
        forward = (e < boundary[i]) if d else (e > boundary[i])
        backward = (e > boundary[i]) if d else (e < boundary[i])
        ors.append(and_(*eqs, forward if after else backward))
    return or_(*ors)


def _decode_key(values: list[Any], kinds: list[str]) -> list[Any]:
    """A cursor's sort-key values, typed back; ValueError when one is not what `kinds` says
    (a tampered cursor must be a 400, never a value of the wrong type in the SQL)."""
    out: list[Any] = []
    for v, kind in zip(values, kinds, strict=True):
        if kind == "rid":
            if type(v) is not int:
                raise ValueError("rid")
            out.append(v)
        elif not isinstance(v, str):
            raise ValueError(kind)
        elif kind in ("date", "last_updated"):
            out.append(datetime.fromisoformat(v))
        elif kind in ("number", "quantity"):
            try:
                d = Decimal(v)
            except ArithmeticError:  # decimal.InvalidOperation is not a ValueError
                raise ValueError(kind) from None
            if not d.is_finite():
                raise ValueError(kind)
            out.append(d)
        else:
            out.append(v)
    return out


def _encode_key(values: Sequence[Any]) -> list[Any]:
    out = []
    for v in values:
        if isinstance(v, datetime):
            out.append(v.isoformat())
        elif isinstance(v, Decimal):
            out.append(str(v))
        else:
            out.append(v)
    return out


def confine(param: str | None, patient: str) -> ColumnElement[bool]:
    """Only one patient's records: its own Patient row (`param` None) or rows whose `param` names it."""
    if param is None:
        return R.c.res_id == patient
    ref = idx_reference.alias()
    return R.c.rid.in_(
        select(ref.c.rid).where(
            ref.c.res_type == R.c.res_type,
            ref.c.param == param,
            ref.c.ref_type == "Patient",
            ref.c.ref_id == patient,
        )
    )


def plan_for_values(conn: Connection) -> None:
    """On PostgreSQL, plan the rest of this transaction's statements for their values.

    Index rows are skewed (one patient has 4,500 Claims, most have a few). After five executions
    of a prepared search PostgreSQL settles on a generic plan that expected one match and sorted
    all 4,500 for a page of 20 (8.8 ms instead of 0.1). Only searches ask for this: planning
    every statement of a transaction Bundle afresh made loading it 35% slower.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")


def _total(
    conn: Connection, parsed: ParsedSearch, conds: list[ColumnElement[bool]], extra: Sequence[Any]
) -> int:
    """How many resources match.

    A search on one index parameter counts the distinct rids of its index rows and never visits
    `resources`: only current, undeleted versions have index rows (a delete clears them), so each
    rid is a live match. For a patient's 4,500 Claims on PostgreSQL, looking up each match's row
    took 7.5 ms and counting the index rows takes 0.9 ms.
    """
    clause = parsed.clauses[0] if len(parsed.clauses) == 1 else None
    if clause is not None and not extra and _narrows(clause) and not clause.chain:
        rids = _rids_matching(clause, (parsed.resource_type,)).subquery()
        q = select(func.count(distinct(rids.c.rid)))
    else:
        q = select(func.count()).select_from(R).where(*conds)
    return int(conn.execute(q).scalar_one())


def run(
    conn: Connection,
    parsed: ParsedSearch,
    cursor: dict[str, Any] | None = None,
    *,
    want_total: bool = False,
    extra: Sequence[ColumnElement[bool]] = (),
) -> Page:
    """Execute a search: one page, keyset-paged, plus the total when asked; `extra` narrows it."""
    conds = where(parsed) + list(extra)
    keys = list(parsed.sort)
    exprs = [_sort_expr(k, parsed.resource_type) for k in keys] + [R.c.rid]
    desc = [k.descending for k in keys] + [False]
    kinds = [k.param.column or k.param.type for k in keys] + ["rid"]
    backward = bool(cursor and cursor.get("d") == "p")
    page_conds = list(conds)
    if cursor:
        try:
            boundary = _decode_key(list(cursor["k"]), kinds)
        except (KeyError, TypeError, ValueError):
            raise FHIRError.of(
                400, "invalid", "The paging cursor does not fit this search.", "_cursor"
            ) from None
        if len(boundary) != len(exprs):
            raise FHIRError.of(400, "invalid", "The paging cursor does not fit this search.", "_cursor")
        page_conds.append(_keyset(exprs, desc, boundary, after=not backward))
    order = [(e.desc() if d != backward else e.asc()) for e, d in zip(exprs, desc, strict=True)]
    count = parsed.count
    total = None
    if want_total or parsed.summary == "count":
        total = _total(conn, parsed, conds, extra)
    if count == 0 or parsed.summary == "count":
        return Page([], [], False, False, total)
    labelled = [e.label(f"k{i}") for i, e in enumerate(exprs)]
    q = (
        select(
            R.c.rid,
            R.c.res_type,
            R.c.res_id,
            R.c.version,
            R.c.last_updated,
            R.c.deleted,
            R.c.content,
            *labelled,
        )
        .where(*page_conds)
        .order_by(*order)
        .limit(count + 1)
    )
    fetched = list(conn.execute(q).all())
    more = len(fetched) > count
    fetched = fetched[:count]
    if backward:
        fetched.reverse()
    rows = [
        Stored(r.rid, r.res_type, r.res_id, r.version, r.last_updated, r.deleted, r.content) for r in fetched
    ]
    keyvals = [_encode_key([getattr(r, f"k{i}") for i in range(len(exprs))]) for r in fetched]
    has_next = more if not backward else True
    has_prev = (more if backward else bool(cursor)) and bool(rows)
    return Page(rows, keyvals, has_next and bool(rows), has_prev, total)


# --------------------------------------------------------------------------------------------
# _include and _revinclude


def includes(
    conn: Connection, parsed: ParsedSearch, matched: list[Stored], cap: int
) -> tuple[list[Stored], bool]:
    """Resources named by _include/_revinclude (iterating where asked), de-duplicated.

    Returns (included, capped): `capped` is True when more than `cap` would have been included.
    """
    seen = {(s.res_type, s.res_id) for s in matched}
    out: list[Stored] = []
    frontier = matched
    first = True
    for _depth in range(4):
        specs = [s for s in (*parsed.includes, *parsed.revincludes) if first or s.iterate]
        if not specs or not frontier:
            break
        found: list[Stored] = []
        for spec in specs:
            rows = _revinclude(conn, spec, frontier) if spec.reverse else _include(conn, spec, frontier)
            for s in rows:
                key = (s.res_type, s.res_id)
                if key not in seen:
                    seen.add(key)
                    found.append(s)
                    if len(out) + len(found) > cap:
                        out.extend(found[: cap - len(out)])
                        return out, True
        out.extend(found)
        frontier = found
        first = False
    return out, False


def _stored(rows: Any) -> list[Stored]:
    return [
        Stored(r.rid, r.res_type, r.res_id, r.version, r.last_updated, r.deleted, r.content) for r in rows
    ]


def _include(conn: Connection, spec: IncludeSpec, frontier: list[Stored]) -> list[Stored]:
    rids = [s.rid for s in frontier if spec.source_type in (None, s.res_type)]
    if not rids:
        return []
    ref = idx_reference
    q = select(ref.c.ref_type, ref.c.ref_id).where(ref.c.rid.in_(rids), ref.c.ref_id.is_not(None))
    if spec.param is not None:
        q = q.where(ref.c.param == spec.param.code)
    if spec.target_type:
        q = q.where(ref.c.ref_type == spec.target_type)
    by_type: dict[str, set[str]] = {}
    for t, i in conn.execute(q.distinct()):
        by_type.setdefault(t, set()).add(i)
    out: list[Stored] = []
    for t, ids in by_type.items():
        rows = conn.execute(
            select(R).where(R.c.res_type == t, R.c.res_id.in_(sorted(ids)), R.c.deleted.is_(False))
        )
        out.extend(_stored(rows))
    return out


def _revinclude(conn: Connection, spec: IncludeSpec, frontier: list[Stored]) -> list[Stored]:
    keys = [(s.res_type, s.res_id) for s in frontier]
    if spec.target_type:
        keys = [k for k in keys if k[0] == spec.target_type]
    if not keys:
        return []
    ref = idx_reference
    by_type: dict[str, list[str]] = {}
    for t, i in keys:
        by_type.setdefault(t, []).append(i)
    q = select(ref.c.rid).where(
        or_(*(and_(ref.c.ref_type == t, ref.c.ref_id.in_(ids)) for t, ids in by_type.items()))
    )
    if spec.source_type:
        q = q.where(ref.c.res_type == spec.source_type)
    if spec.param is not None:
        q = q.where(ref.c.param == spec.param.code)
    return _stored(conn.execute(select(R).where(R.c.rid.in_(q), R.c.deleted.is_(False))))


def find(conn: Connection, parsed: ParsedSearch, limit: int) -> list[Stored]:
    """The first `limit` matches (conditional interactions)."""
    q = select(R).where(*where(parsed)).order_by(R.c.rid).limit(limit)
    return _stored(conn.execute(q))
