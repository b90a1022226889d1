"""batch and transaction Bundles at the base URL (and `fhirbill import`, which shares this path).

A transaction is one database transaction: ids are allocated and conditional entries resolved
first, every fullUrl is rewritten to its server id inside every resource, then entries run in
FHIR's order (DELETE, POST, PUT/PATCH, GET) and references are checked once all are written.
The POSTs that create store their resources together, in one multi-row insert per table; and
when no entry is conditional, everything before the writes happens before the transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection

from fhirbill.api import interactions as ia
from fhirbill.api.access import Access
from fhirbill.api.pages import search_bundle
from fhirbill.api.server import Server
from fhirbill.auth.access import Grant
from fhirbill.fhir.errors import FHIRError, Issue, outcome
from fhirbill.fhir.registry import is_resource_type
from fhirbill.fhir.validation import ID_RE, Checked
from fhirbill.store import resources as repo
from fhirbill.store.db import read_tx, write_tx

# Builds a transaction's AuditEvent from what it reads and writes (see `_entity`); None: no audit.
Audit = Callable[[list[str]], repo.Draft | None]
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


@dataclass
class Entry:
    """One parsed Bundle entry."""

    index: int
    method: str
    res_type: str
    res_id: str | None
    query: str
    full_url: str | None
    resource: dict[str, Any] | None
    if_none_exist: str | None
    if_match: str | None
    target_id: str | None = None  # id decided before execution (POST, conditional PUT)
    matched: repo.Stored | None = None  # conditional create that found its match
    same_as: Entry | None = None  # an earlier conditional create with the same condition
    checked: Checked | None = None
    draft: repo.Draft | None = None  # a new resource, ready to insert
    result: dict[str, Any] = field(default_factory=dict)
    outcome: ia.Result | None = None  # what the interaction did (for import summaries)

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}]"


def process(
    srv: Server,
    bundle: Any,
    *,
    strict: bool = False,
    access: Access | None = None,
    audit: Audit | None = None,
) -> dict[str, Any]:
    """Run a batch or transaction Bundle and return the response Bundle.

    A transaction stores what `audit(entities)` returns (its AuditEvent, given what it reads and
    writes) with its data, so that the event commits with the data or not at all.
    """
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FHIRError.of(
            400, "invalid", "POST to the base URL takes a Bundle of type batch or transaction."
        )
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise FHIRError.of(
            400,
            "invalid",
            f"Bundle.type must be 'batch' or 'transaction' here, not '{kind}'; "
            "to store a Bundle resource, POST it to /Bundle.",
            "Bundle.type",
        )
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise FHIRError.of(400, "structure", "Bundle.entry must be an array.", "Bundle.entry")
    if len(raw) > srv.settings.max_bundle_entries:
        raise FHIRError.of(
            413,
            "too-costly",
            f"The Bundle has {len(raw)} entries; this server accepts at most "
            f"{srv.settings.max_bundle_entries}.",
            "Bundle.entry",
        )
    if kind == "transaction":
        entries = [parse_entry(i, e) for i, e in enumerate(raw)]
        return transaction(srv, entries, access, audit)
    return batch(srv, raw, strict, access)


def _label(i: int, full_url: Any) -> str:
    """How an outcome names an entry: its index and, when it has one, its fullUrl."""
    return f"Entry {i}" + (f" ({full_url})" if isinstance(full_url, str) and full_url else "")


def parse_entry(i: int, e: Any) -> Entry:
    """Parse and check the shape of one entry; FHIRError names the entry (and its fullUrl)."""
    path = f"Bundle.entry[{i}]"
    if not isinstance(e, dict):
        raise FHIRError.of(400, "structure", f"Entry {i} is not an object.", path)
    label = _label(i, e.get("fullUrl"))
    req = e.get("request")
    if not isinstance(req, dict) or not req.get("method") or not req.get("url"):
        raise FHIRError.of(400, "required", f"{label} has no request with method and url.", f"{path}.request")
    method = str(req["method"]).upper()
    if method not in _ORDER:
        raise FHIRError.of(
            400, "not-supported", f"{label}: method {method} is not supported.", f"{path}.request.method"
        )
    url = str(req["url"])
    parts = urlsplit(url)
    segs = [s for s in parts.path.split("/") if s]
    res_type = segs[0] if segs else ""
    if not is_resource_type(res_type):
        raise FHIRError.of(
            400,
            "not-supported",
            f"{label}: '{res_type}' is not a supported resource type.",
            f"{path}.request.url",
        )
    res_id = segs[1] if len(segs) > 1 else None
    if res_id is not None and not ID_RE.match(res_id):
        raise FHIRError.of(
            400, "value", f"{label}: the id in request.url is not a valid FHIR id.", f"{path}.request.url"
        )
    resource = e.get("resource")
    if method in ("POST", "PUT"):
        if not isinstance(resource, dict):
            raise FHIRError.of(400, "required", f"{label}: {method} needs a resource.", f"{path}.resource")
        if resource.get("resourceType") == "Bundle" and resource.get("type") in ("batch", "transaction"):
            raise FHIRError.of(
                400,
                "not-supported",
                f"{label}: nested batch/transaction Bundles are not allowed.",
                f"{path}.resource",
            )
        if resource.get("resourceType") != res_type:
            raise FHIRError.of(
                400,
                "invalid",
                f"{label}: resourceType does not match request.url.",
                f"{path}.resource.resourceType",
            )
    if method == "PUT" and res_id is None and not parts.query:
        raise FHIRError.of(
            400, "invalid", f"{label}: PUT needs Type/id or a conditional query.", f"{path}.request.url"
        )
    if method in ("PATCH", "DELETE") and res_id is None and not (method == "DELETE" and parts.query):
        raise FHIRError.of(400, "invalid", f"{label}: {method} needs Type/id.", f"{path}.request.url")
    return Entry(
        i,
        method,
        res_type,
        res_id,
        parts.query,
        e.get("fullUrl"),
        resource,
        req.get("ifNoneExist"),
        req.get("ifMatch"),
    )


def _fail(entry: Entry, exc: FHIRError) -> FHIRError:
    """Re-home an entry's error under Bundle.entry[i]."""
    label = _label(entry.index, entry.full_url)
    issues = []
    for iss in exc.issues:
        expr = tuple(
            e
            if e.startswith("Bundle.entry[")
            else f"{entry.path}.resource.{e.split('.', 1)[1]}"
            if "." in e
            else f"{entry.path}"
            for e in iss.expression
        ) or (entry.path,)
        diagnostics = iss.diagnostics if iss.diagnostics.startswith(label) else f"{label}: {iss.diagnostics}"
        issues.append(Issue(iss.severity, iss.code, diagnostics, expr, iss.details_code))
    return FHIRError(exc.status, issues)


def transaction(
    srv: Server, entries: list[Entry], access: Access | None = None, audit: Audit | None = None
) -> dict[str, Any]:
    """All or nothing, in one database transaction.

    Without conditional entries every id is known before anything is read, so the CPU work
    (reference rewriting, validation, new resources' documents and index rows, the AuditEvent)
    runs before the write transaction: on SQLite, where writers queue for one lock, it then
    overlaps with other requests' writes instead of holding the lock.
    """
    if any(_conditional(en) for en in entries):
        with write_tx(srv.engine) as conn:
            _prepare(srv, conn, entries, access)
            _write(srv, conn, entries, access, audit)
    else:
        _prepare(srv, None, entries, access)
        event = _event(entries, audit)
        with write_tx(srv.engine) as conn:
            _write(srv, conn, entries, access, audit, event)
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": [en.result for en in entries]}


def _conditional(en: Entry) -> bool:
    """Whether the entry's id depends on what the database holds (a conditional create or update)."""
    return (en.method == "POST" and bool(en.if_none_exist)) or (en.method == "PUT" and en.res_id is None)


def _creates(en: Entry) -> bool:
    """Whether the entry stores a new resource (a POST that matched nothing)."""
    return en.method == "POST" and en.matched is None and en.same_as is None


def _prepare(srv: Server, conn: Connection | None, entries: list[Entry], access: Access | None) -> None:
    """Everything before the writes: ids, rewritten references, validation, new resources' drafts.

    `conn` is needed (a write transaction) only when there are conditional entries.
    """
    mapping: dict[str, str] = {}
    conditions: dict[tuple[str, str, tuple[tuple[str, str], ...]], Entry] = {}
    for en in entries:
        try:
            _plan(srv, conn, en, mapping, access, conditions=conditions)
        except FHIRError as exc:
            raise _fail(en, exc) from None
    _check_overlaps(entries)
    for en in entries:
        if en.resource is not None:
            try:  # validation also replaces each reference to a fullUrl by its server id
                en.checked = ia.check(srv, en.resource, en.res_type, in_bundle=True, rewrite=mapping)
            except FHIRError as exc:
                raise _fail(en, exc) from None
    for en in entries:
        if _creates(en):
            assert en.checked is not None and en.target_id is not None
            try:
                _authorize(access, en)
            except FHIRError as exc:
                raise _fail(en, exc) from None
            en.draft = ia.draft(srv, en.checked, en.target_id)


def _event(entries: list[Entry], audit: Audit | None) -> repo.Draft | None:
    """The AuditEvent of a transaction whose every entity is known before it runs (a conditional
    DELETE's is not): built before the write lock and inserted with the data."""
    touched = [_entity(en) for en in entries]
    if audit is None or None in touched:
        return None
    return audit([t for t in touched if t])


def _entity(en: Entry) -> str | None:
    """What an entry reads or writes, for the AuditEvent: `Type/id`, or `Type` for a search; ''
    for a conditional DELETE that matched nothing, None for one that has not run yet."""
    if en.method in ("GET", "HEAD") and en.res_id is None:
        return en.res_type
    res_id = en.target_id or en.res_id
    if res_id is None and en.outcome is not None:
        return f"{en.res_type}/{en.outcome.stored.res_id}" if en.outcome.stored is not None else ""
    return f"{en.res_type}/{res_id}" if res_id else None


def _write(
    srv: Server,
    conn: Connection,
    entries: list[Entry],
    access: Access | None,
    audit: Audit | None,
    event: repo.Draft | None = None,
) -> None:
    """Run the entries in FHIR's order (DELETE, POST, PUT/PATCH, GET), then check references.

    The AuditEvent goes in with the new resources when it was built (`event`), else last."""
    deferred = ia.Deferred()
    ordered = sorted(entries, key=lambda e: (_ORDER[e.method], e.index))
    for en in ordered:
        if en.method == "DELETE":
            _run(srv, conn, en, deferred, access)
    # Every new resource at once, in a few multi-row statements: their ids are all new.
    creates = [(en, en.draft) for en in ordered if en.draft is not None]
    drafts = [d for _, d in creates] + ([event] if event is not None else [])
    stored = repo.insert(conn, drafts, method="POST")[: len(creates)]
    for (en, _), new in zip(creates, stored, strict=True):
        assert en.checked is not None
        deferred.add(en.checked, (new.res_type, new.res_id), str(en.index))
        en.outcome = ia.Result(201, new, en.checked.warnings)
        en.result = _response(srv, en.outcome)
    for en in ordered:
        if en.method != "DELETE" and en.draft is None:
            _run(srv, conn, en, deferred, access)
    # What this transaction wrote exists at commit; one query checks every other reference.
    live = [en.outcome.stored for en in entries if en.outcome is not None and en.outcome.stored is not None]
    written = {(s.res_type, s.res_id) for s in live if not s.deleted}
    pending = [(p, r) for p, r in deferred.refs if (r.resource_type, r.id) not in written]
    found = repo.existing(conn, [(r.resource_type, r.id) for _, r in pending])
    by_index = {en.index: en for en in entries}
    for prefix, ref in pending:
        if (ref.resource_type, ref.id) not in found:
            try:
                ia.resolve_refs(conn, [ref], None)
            except FHIRError as exc:
                raise _fail(by_index[int(prefix)], exc) from None
    if audit is not None and event is None:
        late = audit([t for t in (_entity(en) for en in entries) if t])
        if late is not None:
            repo.insert(conn, [late])


def _run(srv: Server, conn: Connection, en: Entry, deferred: ia.Deferred, access: Access | None) -> None:
    try:
        en.result = _execute(srv, conn, en, deferred, access)
    except FHIRError as exc:
        raise _fail(en, exc) from None


def _check_overlaps(entries: list[Entry]) -> None:
    """FHIR: a transaction fails when two entries write the same resource (ids as resolved)."""
    seen: dict[tuple[str, str], Entry] = {}
    for en in entries:
        res_id = en.target_id if en.method in ("POST", "PUT") else en.res_id
        if en.same_as is not None or en.method in ("GET", "HEAD") or res_id is None:
            continue
        first = seen.setdefault((en.res_type, res_id), en)
        if first is not en:
            raise _fail(
                en,
                FHIRError.of(
                    400,
                    "invalid",
                    f"{en.res_type}/{res_id} is also written by entry {first.index}; "
                    "a transaction may touch each resource once.",
                ),
            )


def _plan(
    srv: Server,
    conn: Connection | None,
    en: Entry,
    mapping: dict[str, str],
    access: Access | None = None,
    *,
    conditions: dict[tuple[str, str, tuple[tuple[str, str], ...]], Entry] | None = None,
) -> None:
    """Decide each entry's server id before anything is written, so references can be rewritten.

    With `conditions`, entries with the same condition resolve together: a conditional create
    repeating an earlier one's ifNoneExist is that same resource (not a duplicate), and a
    conditional update repeating an earlier query gets its id (so the overlap check refuses it).
    """
    acl: dict[str, Any] = {"access": access, "grant": _authorize(access, en)}
    cond = en.if_none_exist if en.method == "POST" else None
    if en.method == "PUT" and en.res_id is None:
        cond = en.query
    key = (en.method, en.res_type, tuple(sorted(ia.query_pairs(cond)))) if cond else None
    first = conditions.setdefault(key, en) if conditions is not None and key else en
    if first is not en:
        en.target_id, en.matched = first.target_id, first.matched
        en.same_as = first if en.method == "POST" else None
    elif en.method == "POST":
        if en.if_none_exist:
            assert conn is not None  # conditional: planned inside the write transaction
            ia._guard(conn, en.res_type, en.if_none_exist)
            found = ia.match(srv, conn, en.res_type, ia.query_pairs(en.if_none_exist), limit=2, **acl)
            if len(found) > 1:
                raise FHIRError.of(
                    412, "multiple-matches", f"ifNoneExist matched more than one {en.res_type}."
                )
            if found:
                en.matched = found[0]
        en.target_id = en.matched.res_id if en.matched else repo.new_id()
    elif en.method == "PUT":
        if en.res_id is None:
            assert conn is not None
            ia._guard(conn, en.res_type, en.query)
            found = ia.match(srv, conn, en.res_type, ia.query_pairs(en.query), limit=2, **acl)
            if len(found) > 1:
                raise FHIRError.of(
                    412, "multiple-matches", f"The condition matched more than one {en.res_type}."
                )
            en.target_id = found[0].res_id if found else (en.resource or {}).get("id") or repo.new_id()
        else:
            en.target_id = en.res_id
    if en.target_id and en.full_url:
        mapping[en.full_url] = f"{en.res_type}/{en.target_id}"
    if en.target_id and en.resource is not None and en.method == "PUT":
        en.resource = {**en.resource, "id": en.target_id}


def _authorize(access: Access | None, en: Entry) -> Grant | None:
    """The grant for one entry (searches are checked inside search_bundle); 401/403 otherwise."""
    if access is None:
        return None
    letter = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}.get(en.method) or (
        "r" if en.res_id else ""
    )
    if not letter:
        return None
    grant = access.grant(en.res_type, letter)
    if en.checked is not None:
        access.check_data(grant, en.checked.data)
    return grant


def _execute(
    srv: Server, conn: Connection, en: Entry, deferred: ia.Deferred | None, access: Access | None = None
) -> dict[str, Any]:
    grant = _authorize(access, en)
    acl: dict[str, Any] = {"access": access, "grant": grant}
    prefix = str(en.index)
    if en.method == "DELETE":
        if en.res_id is None:
            en.outcome = ia.conditional_delete(srv, conn, en.res_type, en.query, **acl)
        else:
            en.outcome = ia.delete(conn, en.res_type, en.res_id, **acl)
        return {"response": {"status": "204 No Content"}}
    if en.method == "POST":  # one that creates nothing: `_write` stores the new resources
        if en.same_as is not None:  # ran before this one: entries run in index order per method
            assert en.same_as.outcome is not None and en.same_as.outcome.stored is not None
            en.outcome = ia.Result(200, en.same_as.outcome.stored, changed=False)
            return _response(srv, en.outcome)
        assert en.matched is not None
        if access is not None:
            access.check_stored(grant, en.matched)
        en.outcome = ia.Result(200, en.matched, changed=False)
        return _response(srv, en.outcome)
    if en.method == "PUT":
        assert en.checked is not None and en.target_id is not None
        en.outcome = ia.update(
            srv,
            conn,
            en.res_type,
            en.target_id,
            en.checked,
            if_match=en.if_match,
            deferred=deferred,
            prefix=prefix,
            **acl,
        )
        return _response(srv, en.outcome)
    if en.method == "PATCH":
        assert en.res_id is not None
        ops = (en.resource or {}).get("data") if isinstance(en.resource, dict) else None
        en.outcome = ia.patch(srv, conn, en.res_type, en.res_id, ops, if_match=en.if_match, **acl)
        return _response(srv, en.outcome)
    # GET / HEAD
    if en.res_id is not None:
        stored = ia.read(conn, en.res_type, en.res_id, **acl)
        return _response(srv, ia.Result(200, stored), body=True)
    return {
        "resource": search_bundle(
            srv, conn, en.res_type, ia.query_pairs(en.query), strict=False, access=access
        ),
        "response": {"status": "200 OK"},
    }


def _response(srv: Server, res: ia.Result, body: bool = False) -> dict[str, Any]:
    import orjson

    s = res.stored
    assert s is not None
    out: dict[str, Any] = {}
    if body and s.content:
        out["resource"] = orjson.Fragment(s.content)
    out["fullUrl"] = f"{srv.base}/{s.res_type}/{s.res_id}"
    out["response"] = {
        "status": _STATUS_TEXT.get(res.status, str(res.status)),
        "location": f"{s.res_type}/{s.res_id}/_history/{s.version}",
        "etag": s.etag,
        "lastModified": repo.instant(s.last_updated),
    }
    return out


def batch(srv: Server, raw: list[Any], strict: bool, access: Access | None = None) -> dict[str, Any]:
    """Each entry on its own, each with its own response or OperationOutcome."""
    results = []
    for i, e in enumerate(raw):
        try:
            en = parse_entry(i, e)
            if en.resource is not None and en.method in ("POST", "PUT"):
                en.checked = ia.check(srv, en.resource, en.res_type)
            if en.method == "GET":
                with read_tx(srv.engine) as conn:
                    results.append(_execute(srv, conn, en, None, access))
                continue
            with write_tx(srv.engine) as conn:
                if en.method == "PUT" and en.res_id is None:
                    assert en.checked is not None
                    grant = _authorize(access, en)
                    res = ia.conditional_update(
                        srv,
                        conn,
                        en.res_type,
                        en.query,
                        en.checked,
                        if_match=en.if_match,
                        access=access,
                        grant=grant,
                    )
                    results.append(_response(srv, res))
                    continue
                if en.method == "POST":
                    assert en.checked is not None
                    grant = _authorize(access, en)
                    res = ia.create(
                        srv, conn, en.checked, if_none_exist=en.if_none_exist, access=access, grant=grant
                    )
                    results.append(_response(srv, res))
                    continue
                en.target_id = en.res_id
                results.append(_execute(srv, conn, en, None, access))
        except FHIRError as exc:
            failed = _fail(
                Entry(
                    i,
                    "",
                    "",
                    None,
                    "",
                    (e or {}).get("fullUrl") if isinstance(e, dict) else None,
                    None,
                    None,
                    None,
                ),
                exc,
            )
            results.append({"response": {"status": str(exc.status), "outcome": outcome(failed.issues)}})
    return {"resourceType": "Bundle", "type": "batch-response", "entry": results}
