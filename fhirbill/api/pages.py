"""Bundles for history and search results, embedding stored JSON text without re-parsing it."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import Connection

from fhirbill.api.access import Access
from fhirbill.api.server import Server
from fhirbill.auth.access import Grant
from fhirbill.fhir.compartment import patient_param
from fhirbill.fhir.dates import parse_fhir_date
from fhirbill.fhir.errors import FHIRError, Issue, outcome
from fhirbill.fhir.registry import RESOURCE_TYPES
from fhirbill.fhir.search_query import parse_search
from fhirbill.fhir.subsetting import subset
from fhirbill.store import resources as repo
from fhirbill.store import search
from fhirbill.store.resources import Stored, instant

MAX_COUNT = 1000
DEFAULT_COUNT = 20
_STATUS = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK", "DELETE": "204 No Content"}


def encode_cursor(values: list[Any]) -> str:
    """An opaque keyset cursor for a `next` link."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(text: str) -> list[Any]:
    """The values inside a cursor; 400 when it was not made by us."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        values = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError):
        raise FHIRError.of(400, "invalid", "The paging cursor is not valid.", "_cursor") from None
    if not isinstance(values, list):
        raise FHIRError.of(400, "invalid", "The paging cursor is not valid.", "_cursor")
    return values


def parse_count(raw: str | None) -> int:
    """_count: 0..MAX_COUNT (larger values are lowered to the maximum)."""
    if raw is None:
        return DEFAULT_COUNT
    if not raw.isdigit():
        raise FHIRError.of(400, "invalid", "_count must be a non-negative integer.", "_count")
    return min(int(raw), MAX_COUNT)


def entry_of(srv: Server, s: Stored, **extra: Any) -> dict[str, Any]:
    """A Bundle entry embedding the stored text as-is."""
    e: dict[str, Any] = {"fullUrl": f"{srv.base}/{s.res_type}/{s.res_id}"}
    if s.content is not None:
        e["resource"] = orjson.Fragment(s.content)
    e.update(extra)
    return e


def history_bundle(
    srv: Server,
    conn: Connection,
    args: Mapping[str, str],
    *,
    res_type: str | None = None,
    rid: int | None = None,
    res_id: str | None = None,
    access: Access | None = None,
) -> dict[str, Any]:
    """A history Bundle, newest first, paged by keyset cursor."""
    count = parse_count(args.get("_count"))
    since = None
    if args.get("_since"):
        try:
            since = parse_fhir_date(args["_since"])[0]
        except ValueError:
            raise FHIRError.of(400, "invalid", "_since must be a FHIR instant.", "_since") from None
    before = None
    if args.get("_cursor"):
        c = decode_cursor(args["_cursor"])
        try:
            before = (datetime.fromisoformat(c[0]), int(c[1]), int(c[2]))
        except (ValueError, IndexError, TypeError):
            raise FHIRError.of(400, "invalid", "The paging cursor is not valid.", "_cursor") from None
    types = None
    if res_type is None and access is not None and access.enabled:  # only what the token may read
        types = [t for t in RESOURCE_TYPES if access.may(t, "r")]
    page = repo.history(
        conn, res_type=res_type, rid=rid, since=since, before=before, limit=count + 1, res_types=types
    )
    more = len(page) > count
    page = page[:count]
    rows = page
    if access is not None:  # instance history too: older versions may have been another patient's
        rows = [r for r in rows if access.visible(conn, [r]) or (r.deleted and access.may(r.res_type, "r"))]
    path = "/".join(p for p in (res_type, res_id, "_history") if p)
    keep = {k: args[k] for k in ("_count", "_since") if k in args}
    links = [
        {"relation": "self", "url": f"{srv.base}/{path}" + (f"?{urlencode(dict(args))}" if args else "")}
    ]
    if more:  # from the page as read: what was dropped from it must not end the paging
        last = page[-1]
        cursor = encode_cursor([last.last_updated.isoformat(), last.rid, last.version])
        links.append(
            {"relation": "next", "url": f"{srv.base}/{path}?{urlencode({**keep, '_cursor': cursor})}"}
        )
    entries = []
    for s in rows:
        url = s.res_type if s.method == "POST" else f"{s.res_type}/{s.res_id}"
        entries.append(
            entry_of(
                srv,
                s,
                request={"method": s.method, "url": url},
                response={
                    "status": _STATUS.get(s.method, "200 OK"),
                    "etag": s.etag,
                    "lastModified": instant(s.last_updated),
                },
            )
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history"}
    # The count query sees every version; under enforced authorization it would also count the
    # versions (and, server-wide, the types) this token may not read, so the optional total is left out.
    if access is None or not access.enabled:
        bundle["total"] = repo.history_count(conn, res_type=res_type, rid=rid, since=since)
    bundle["link"] = links
    bundle["entry"] = entries
    return bundle


INCLUDE_CAP = 1000


def _confinement(
    srv: Server, access: Access | None, rt: str, pairs: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], list[Any], Grant | None]:
    """The search scope a token allows: granular-scope parameters to add, and a patient condition."""
    grant = access.grant(rt, "s") if access is not None else None
    if grant is None:
        return pairs, [], None
    if len(grant.constraints) > 1:
        raise FHIRError.of(
            403, "forbidden", "Searching under several granular scopes at once is not supported."
        )
    if grant.constraints:
        pairs = pairs + sorted(grant.constraints[0].items())
    if access is None:
        return pairs, [], grant
    return pairs, access.confinement(grant, rt), grant  # one rule for searches and conditional matches


def _other_patient(parsed: Any, rt: str, param: str | None, pid: str) -> bool:
    """Does the query name a patient other than the token's (a 403, not an empty page)?"""
    for clause in parsed.clauses:
        if clause.chain or clause.has:
            continue
        code = clause.param.code
        for v in clause.values:
            if rt == "Patient" and code == "_id" and getattr(v, "code", pid) != pid:
                return True
            if code in (param, "patient") and getattr(v, "ref_type", "Patient") in ("Patient", None):
                if getattr(v, "ref_id", pid) not in (pid, None):
                    return True
    return False


def search_bundle(
    srv: Server,
    conn: Connection,
    rt: str,
    pairs: list[tuple[str, str]],
    *,
    strict: bool,
    access: Access | None = None,
) -> dict[str, Any]:
    """A searchset Bundle: one keyset page of matches, their includes, links and outcome notes."""
    pairs, extra, grant = _confinement(srv, access, rt, pairs)
    parsed = parse_search(rt, pairs, srv.params, base_url=srv.base, strict=strict, passthrough=("_cursor",))
    pid = Access.patient(grant)
    if pid is not None and _other_patient(parsed, rt, patient_param(rt, srv.params), pid):
        raise FHIRError.of(403, "forbidden", "This token may only search its own patient's records.")
    if access is not None:
        access.check_hops(grant, parsed)
    cursor_text = dict(parsed.extra).get("_cursor")
    cursor = None
    if cursor_text:
        values = decode_cursor(cursor_text)
        if len(values) != 2 or values[0] not in ("n", "p") or not isinstance(values[1], list):
            raise FHIRError.of(400, "invalid", "The paging cursor is not valid.", "_cursor")
        cursor = {"d": values[0], "k": values[1]}
    want_total = parsed.total == "accurate" or (parsed.total is None and cursor is None)
    search.plan_for_values(conn)
    page = search.run(conn, parsed, cursor, want_total=want_total, extra=extra)
    included, capped = search.includes(conn, parsed, page.rows, INCLUDE_CAP) if page.rows else ([], False)
    if access is not None:
        included = access.visible(conn, included)

    def url(extra: list[tuple[str, str]]) -> str:
        q = urlencode(list(parsed.self_params) + extra)
        return f"{srv.base}/{rt}" + (f"?{q}" if q else "")

    links = [
        {"relation": "self", "url": url([("_cursor", cursor_text)] if cursor_text else [])},
        {"relation": "first", "url": url([])},
    ]
    if page.has_next:
        links.append({"relation": "next", "url": url([("_cursor", encode_cursor(["n", page.keys[-1]]))])})
    if page.has_prev:
        links.append({"relation": "previous", "url": url([("_cursor", encode_cursor(["p", page.keys[0]]))])})

    subsetting = parsed.summary in ("true", "text", "data") or bool(parsed.elements)

    def body(s: Stored) -> Any:
        if not subsetting:
            return orjson.Fragment(s.content or "{}")
        return subset(orjson.loads(s.content or "{}"), summary=parsed.summary, elements=parsed.elements)

    entries: list[dict[str, Any]] = []
    for s in page.rows:
        entries.append(
            {
                "fullUrl": f"{srv.base}/{s.res_type}/{s.res_id}",
                "resource": body(s),
                "search": {"mode": "match"},
            }
        )
    for s in included:
        entries.append(
            {
                "fullUrl": f"{srv.base}/{s.res_type}/{s.res_id}",
                "resource": body(s),
                "search": {"mode": "include"},
            }
        )
    notes = list(parsed.warnings)
    if parsed.ignored:
        notes.append(
            Issue(
                "warning",
                "not-supported",
                f"Ignored unknown or unsupported search parameters: {', '.join(sorted(set(parsed.ignored)))}.",
            )
        )
    if capped:
        notes.append(
            Issue(
                "warning",
                "too-costly",
                f"Included resources were limited to {INCLUDE_CAP}; narrow the search to see the rest.",
            )
        )
    if notes:
        entries.append({"resource": outcome(notes), "search": {"mode": "outcome"}})
    out: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        out["total"] = page.total
    out["link"] = links
    if entries:
        out["entry"] = entries
    return out
