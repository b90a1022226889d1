"""The FHIR RESTful interactions as functions of (server, connection, inputs): no Flask here.

Each takes an open Connection so that a single request and a whole transaction Bundle share
the same code; the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl

import jsonpatch
import orjson
from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from fhirbill.api.access import Access
from fhirbill.api.server import Server
from fhirbill.auth.access import Grant
from fhirbill.fhir.errors import FHIRError, Issue
from fhirbill.fhir.search_query import parse_search
from fhirbill.fhir.validation import Checked, LocalRef, validate_resource
from fhirbill.store import resources as repo
from fhirbill.store import search
from fhirbill.store.search import find
from fhirbill.store.tables import create_guards

ETAG_RE = re.compile(r'^\s*(?:W/)?"?([0-9]+)"?\s*$')


@dataclass
class Result:
    """What an interaction produced: a status, the version it touched, and any warnings."""

    status: int
    stored: repo.Stored | None = None
    warnings: list[Issue] = field(default_factory=list)
    changed: bool = True  # False when nothing was written (a match, or an identical update)


@dataclass
class Deferred:
    """References to check once a whole transaction has been written."""

    refs: list[tuple[str, LocalRef]] = field(default_factory=list)  # (entry path prefix, ref)

    def add(self, checked: Checked, key: tuple[str, str], prefix: str) -> None:
        """A write's local references, bar any to the resource itself."""
        self.refs.extend((prefix, r) for r in checked.references if (r.resource_type, r.id) != key)


def match(
    server: Server,
    conn: Connection,
    res_type: str,
    pairs: list[tuple[str, str]],
    limit: int = 2,
    *,
    access: Access | None = None,
    grant: Grant | None = None,
) -> list[repo.Stored]:
    """Resources matching a condition (If-None-Exist, conditional update/delete); unknown
    parameters are an error here, since ignoring one could match the wrong resource.
    A patient-confined grant matches only its patient's records (other patients' records
    must not show through as a 412 or a 403)."""
    parsed = parse_search(res_type, pairs, server.params, base_url=server.base, strict=True)
    if not parsed.clauses:
        raise FHIRError.of(400, "invalid", "A conditional request needs at least one search parameter.")
    extra = access.confinement(grant, res_type) if access is not None else []
    if extra:
        if access is not None:
            access.check_hops(grant, parsed)
        return search.run(conn, replace(parsed, count=limit), extra=extra).rows
    return find(conn, parsed, limit)


def parse_etag(value: str, header: str = "If-Match") -> int:
    """The version number in an ETag such as W/"3"."""
    m = ETAG_RE.match(value)
    if not m:
        raise FHIRError.of(400, "invalid", f'{header} must be a version ETag like W/"3".')
    return int(m.group(1))


def query_pairs(query: str) -> list[tuple[str, str]]:
    """A conditional URL's query (after '?') as name/value pairs."""
    return parse_qsl(query.lstrip("?"), keep_blank_values=True)


def check(
    server: Server,
    data: Any,
    res_type: str | None,
    *,
    in_bundle: bool = False,
    root: str | None = None,
    rewrite: Mapping[str, str] | None = None,
) -> Checked:
    """Model and structure validation (rewriting a transaction's references, see
    `validate_resource`), then the profiles the resource claims."""
    checked = validate_resource(data, res_type, in_bundle=in_bundle, root=root, rewrite=rewrite)
    checked.warnings.extend(profile_issues(server, checked.data))
    return checked


def profile_issues(server: Server, data: dict[str, Any], extra: list[str] | None = None) -> list[Issue]:
    """Check the profiles in meta.profile (and `extra`); 422 on errors, warnings for unknown ones."""
    urls = list((data.get("meta") or {}).get("profile") or []) + list(extra or [])
    warnings: list[Issue] = []
    errors: list[Issue] = []
    for url in urls:
        sd = server.profiles.get(url)
        if sd is None:
            warnings.append(
                Issue("warning", "not-supported", f"Profile {url} is not known to this server; not checked.")
            )
            continue
        for issue in server.profiles.check(data, sd):
            (errors if issue.severity in ("error", "fatal") else warnings).append(issue)
    if errors:
        raise FHIRError(422, errors + warnings)
    return warnings


def resolve_refs(
    conn: Connection, refs: list[LocalRef], self_key: tuple[str, str] | None, prefix: str = ""
) -> None:
    """Refuse (422) a write whose local references point at nothing."""
    wanted = {(r.resource_type, r.id) for r in refs} - ({self_key} if self_key else set())
    if not wanted:
        return
    found = repo.existing(conn, wanted)
    missing = [r for r in refs if (r.resource_type, r.id) in wanted - found]
    if missing:
        raise FHIRError(
            422,
            [
                Issue(
                    "error",
                    "not-found",
                    f"Reference {r.resource_type}/{r.id} does not resolve to a resource on this server.",
                    (prefix + r.path if prefix else r.path,),
                )
                for r in missing
            ],
        )


def _prepare(server: Server, data: dict[str, Any], previous: repo.Stored | None) -> dict[str, Any]:
    hook = server.hooks.get(data["resourceType"])
    if hook is None:
        return data
    prev = orjson.loads(previous.content) if previous and previous.content else None
    return hook(data, prev)


def _refs_or_defer(
    conn: Connection, checked: Checked, key: tuple[str, str], deferred: Deferred | None, prefix: str
) -> None:
    if deferred is not None:
        deferred.add(checked, key, prefix)
    else:
        resolve_refs(conn, checked.references, key)


def _guard(conn: Connection, res_type: str, query: str) -> None:
    """Serialise conditional creates on the same condition through one locked row."""
    pairs = sorted(query_pairs(query))
    digest = hashlib.sha256(orjson.dumps(pairs)).hexdigest()
    try:
        with conn.begin_nested():
            conn.execute(insert(create_guards), {"res_type": res_type, "condition": digest})
    except IntegrityError:
        pass  # another request created it earlier; on PostgreSQL the insert waited for it to commit
    q = select(create_guards.c.res_type).where(
        create_guards.c.res_type == res_type, create_guards.c.condition == digest
    )
    if conn.dialect.name != "sqlite":
        q = q.with_for_update()
    conn.execute(q).first()


def create(
    server: Server,
    conn: Connection,
    checked: Checked,
    *,
    if_none_exist: str | None = None,
    access: Access | None = None,
    grant: Grant | None = None,
) -> Result:
    """create, or conditional create with If-None-Exist (a transaction's creates: `draft`)."""
    data = checked.data
    rt = data["resourceType"]
    if if_none_exist:
        _guard(conn, rt, if_none_exist)
        found = match(server, conn, rt, query_pairs(if_none_exist), limit=2, access=access, grant=grant)
        if len(found) > 1:
            raise FHIRError.of(412, "multiple-matches", f"If-None-Exist matched more than one {rt}.")
        if found:
            if access is not None and _confined(access, grant):
                access.check_stored(grant, found[0])
            return Result(200, found[0], changed=False)
    new = draft(server, checked, repo.new_id())
    resolve_refs(conn, checked.references, (rt, new.res_id))
    stored = repo.insert(conn, [new], method="POST")[0]
    return Result(201, stored, checked.warnings)


def draft(server: Server, checked: Checked, res_id: str) -> repo.Draft:
    """The database-free part of a create (write hooks, stored document, index rows)."""
    return repo.draft(_prepare(server, checked.data, None), res_id, server.indexer, server.engine.dialect)


def _confined(access: Access | None, grant: Grant | None) -> bool:
    """Whether stored resources must be checked one by one: a patient or granular-scope grant."""
    return access is not None and grant is not None and (grant.patient is not None or bool(grant.constraints))


def read(
    conn: Connection, res_type: str, res_id: str, *, access: Access | None = None, grant: Grant | None = None
) -> repo.Stored:
    """read: 404 unknown, 410 deleted; a patient-confined token gets 403 for anything not its own."""
    cur = repo.get_current(conn, res_type, res_id)
    if access is not None and _confined(access, grant):
        access.check_stored(grant, cur if cur is not None and not cur.deleted else None)
    if cur is None:
        raise FHIRError.of(404, "not-found", f"{res_type}/{res_id} is not known.")
    if cur.deleted:
        raise FHIRError.of(410, "deleted", f"{res_type}/{res_id} was deleted.", ETag=cur.etag)
    return cur


def read_any(
    conn: Connection, res_type: str, res_id: str, *, access: Access | None = None, grant: Grant | None = None
) -> repo.Stored:
    """The current row, deleted or not (history of a deleted resource is still readable)."""
    cur = repo.get_current(conn, res_type, res_id)
    if access is not None and _confined(access, grant):
        access.check_stored(grant, cur)
    if cur is None:
        raise FHIRError.of(404, "not-found", f"{res_type}/{res_id} is not known.")
    return cur


def vread(
    conn: Connection,
    res_type: str,
    res_id: str,
    vid: str,
    *,
    access: Access | None = None,
    grant: Grant | None = None,
) -> repo.Stored:
    """vread: a version as it was; 410 for the version that records a delete."""
    if access is not None and _confined(access, grant):
        v = repo.get_version(conn, res_type, res_id, int(vid)) if vid.isdigit() else None
        access.check_stored(grant, v)
    if not vid.isdigit():
        raise FHIRError.of(404, "not-found", f"{res_type}/{res_id} has no version '{vid}'.")
    v = repo.get_version(conn, res_type, res_id, int(vid))
    if v is None:
        raise FHIRError.of(404, "not-found", f"{res_type}/{res_id} has no version {vid}.")
    if v.deleted:
        raise FHIRError.of(410, "deleted", f"Version {vid} of {res_type}/{res_id} records its deletion.")
    return v


def update(
    server: Server,
    conn: Connection,
    res_type: str,
    res_id: str,
    checked: Checked,
    *,
    if_match: str | None = None,
    deferred: Deferred | None = None,
    prefix: str = "",
    method: str = "PUT",
    access: Access | None = None,
    grant: Grant | None = None,
) -> Result:
    """update, or update-as-create for a client-chosen id; If-Match gives 412 when stale."""
    data = checked.data
    body_id = data.get("id")
    if body_id is None:
        raise FHIRError.of(400, "required", "The resource must carry its id on update.", f"{res_type}.id")
    if body_id != res_id:
        raise FHIRError.of(
            400,
            "invalid",
            f"The id in the body ({body_id}) does not match the URL ({res_id}).",
            f"{res_type}.id",
        )
    expected = parse_etag(if_match) if if_match else None
    for _attempt in range(2):
        cur = repo.get_current(conn, res_type, res_id, lock=True)
        if access is not None and _confined(access, grant):
            # A write may not take a resource from another patient; and no update-as-create with
            # a client-chosen id either, or 201 versus 403 would tell which ids exist.
            access.check_stored(grant, cur if cur is not None and not cur.deleted else None)
        if expected is not None and (cur is None or cur.version != expected):
            raise FHIRError.of(
                412,
                "conflict",
                f"If-Match version {expected} is not the current version of {res_type}/{res_id}.",
            )
        prepared = _prepare(server, data, cur)
        _refs_or_defer(conn, checked, (res_type, res_id), deferred, prefix)
        if cur is None:
            try:
                stored = repo.create(conn, prepared, server.indexer, res_id=res_id, method=method)
            except FHIRError as exc:
                if exc.status == 409:
                    continue  # created concurrently: update it instead
                raise
            return Result(201, stored, checked.warnings)
        if repo.same_content(cur, prepared):
            return Result(200, cur, checked.warnings, changed=False)
        stored = repo.update(conn, cur, prepared, server.indexer, method=method)
        return Result(201 if cur.deleted else 200, stored, checked.warnings)
    raise FHIRError.of(409, "conflict", f"{res_type}/{res_id} is being written concurrently; retry.")


def conditional_update(
    server: Server,
    conn: Connection,
    res_type: str,
    query: str,
    checked: Checked,
    *,
    if_match: str | None = None,
    deferred: Deferred | None = None,
    prefix: str = "",
    access: Access | None = None,
    grant: Grant | None = None,
) -> Result:
    """PUT T?params: update the one match, create when none, 412 when several."""
    _guard(conn, res_type, query)
    found = match(server, conn, res_type, query_pairs(query), limit=2, access=access, grant=grant)
    if len(found) > 1:
        raise FHIRError.of(412, "multiple-matches", f"The condition matched more than one {res_type}.")
    data = checked.data
    if found and access is not None and _confined(access, grant):
        access.check_stored(grant, found[0])
    if found:
        target = found[0].res_id
        if data.get("id") not in (None, target):
            raise FHIRError.of(
                400,
                "invalid",
                "The id in the body does not match the resource the condition found.",
                f"{res_type}.id",
            )
        checked.data = {**data, "id": target}
        return update(
            server,
            conn,
            res_type,
            target,
            checked,
            if_match=if_match,
            deferred=deferred,
            prefix=prefix,
            access=access,
            grant=grant,
        )
    new_id = data.get("id") or repo.new_id()
    checked.data = {**data, "id": new_id}
    return update(
        server, conn, res_type, new_id, checked, deferred=deferred, prefix=prefix, access=access, grant=grant
    )


def patch(
    server: Server,
    conn: Connection,
    res_type: str,
    res_id: str,
    ops: Any,
    *,
    if_match: str | None = None,
    access: Access | None = None,
    grant: Grant | None = None,
) -> Result:
    """JSON Patch (RFC 6902) on the current version, then the full write validation."""
    if not isinstance(ops, list):
        raise FHIRError.of(400, "structure", "A JSON Patch body must be an array of operations.")
    cur = read(conn, res_type, res_id, access=access, grant=grant)
    if if_match and parse_etag(if_match) != cur.version:
        raise FHIRError.of(412, "conflict", f"If-Match is not the current version of {res_type}/{res_id}.")
    try:
        patched = jsonpatch.JsonPatch(ops).apply(orjson.loads(cur.content or "{}"))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
        raise FHIRError.of(
            422, "processing", f"The patch could not be applied: {type(exc).__name__}."
        ) from None
    if patched.get("resourceType") != res_type or patched.get("id") != res_id:
        raise FHIRError.of(422, "processing", "A patch may not change resourceType or id.")
    checked = check(server, patched, res_type)
    if access is not None:
        access.check_data(grant, checked.data)
    return update(
        server,
        conn,
        res_type,
        res_id,
        checked,
        if_match=f'W/"{cur.version}"',
        method="PATCH",
        access=access,
        grant=grant,
    )


def delete(
    conn: Connection, res_type: str, res_id: str, *, access: Access | None = None, grant: Grant | None = None
) -> Result:
    """delete: keeps history; deleting a deleted resource is a no-op."""
    cur = repo.get_current(conn, res_type, res_id, lock=True)
    if access is not None and _confined(access, grant):
        access.check_stored(grant, cur if cur is not None and not cur.deleted else None)
    if cur is None:
        raise FHIRError.of(404, "not-found", f"{res_type}/{res_id} is not known.")
    if cur.deleted:
        return Result(204, cur)
    return Result(204, repo.mark_deleted(conn, cur))


def conditional_delete(
    server: Server,
    conn: Connection,
    res_type: str,
    query: str,
    *,
    access: Access | None = None,
    grant: Grant | None = None,
) -> Result:
    """DELETE T?params: deletes the single match; 412 when several match; 204 when none."""
    found = match(server, conn, res_type, query_pairs(query), limit=2, access=access, grant=grant)
    if len(found) > 1:
        raise FHIRError.of(412, "multiple-matches", f"The condition matched more than one {res_type}.")
    if not found:
        return Result(204)
    if access is not None and _confined(access, grant):
        access.check_stored(grant, found[0])
    return Result(204, repo.mark_deleted(conn, found[0]))
