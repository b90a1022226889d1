"""The FHIR REST blueprint at /fhir: one route per interaction, thin over `interactions`.

Every route asks the request's `Access` for a grant before it touches data, and every
request leaves one AuditEvent (in the write's own transaction when a write succeeds).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, request
from sqlalchemy import Connection

from fhirbill import __version__
from fhirbill.api import audit, bundles, x12ops
from fhirbill.api import interactions as ia
from fhirbill.api.access import Access
from fhirbill.api.http import (
    error_response,
    fhir_response,
    negotiate,
    prefer,
    require_json_body,
    version_headers,
)
from fhirbill.api.pages import history_bundle, search_bundle
from fhirbill.api.server import Server
from fhirbill.auth.access import authenticate, reject_query_token, unauthorized
from fhirbill.auth.audit import audit_event
from fhirbill.auth.clients import all_origins
from fhirbill.fhir.capability import capability_statement
from fhirbill.fhir.errors import FHIRError, Issue, outcome
from fhirbill.fhir.registry import is_resource_type
from fhirbill.fhir.validation import parse_json
from fhirbill.store import resources as repo
from fhirbill.store.db import read_tx, write_tx

bp = Blueprint("fhir", __name__, url_prefix="/fhir")
OPEN_ENDPOINTS = frozenset({"fhir.metadata"})
_ACTIONS = {"GET": "R", "HEAD": "R", "POST": "C", "PUT": "U", "PATCH": "U", "DELETE": "D"}


def server() -> Server:
    """The app's Server."""
    return current_app.extensions["fhirbill"]  # type: ignore[no-any-return]


def access() -> Access:
    """This request's access decisions."""
    return g.access  # type: ignore[no-any-return]


@bp.before_request
def _authenticate() -> None:
    negotiate()
    srv = server()
    enabled = current_app.config.get("FHIRBILL_AUTHORIZATION", True)
    principal = None
    guarded = request.endpoint not in OPEN_ENDPOINTS and request.method != "OPTIONS"
    g.audit = ("E", "operation", []) if guarded and current_app.config.get("FHIRBILL_AUDIT", True) else None
    if enabled and guarded:
        reject_query_token(request.args)
        principal = authenticate(
            srv.engine,
            request.headers.get("Authorization"),
            cache=current_app.extensions["fhirbill_auth"].tokens,
        )
        if principal is None:
            raise unauthorized()
        g.client_id = principal.client_id
    g.access = Access(srv, principal, enabled)


@bp.after_request
def _cors(resp: Response) -> Response:
    """CORS for browser apps: origins registered for clients plus FHIRBILL_CORS_ORIGINS."""
    origin = request.headers.get("Origin")
    if origin and origin.rstrip("/") in _origins():
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers["Access-Control-Allow-Headers"] = (
            "Authorization, Content-Type, If-Match, If-None-Exist, Prefer"
        )
        resp.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
        resp.headers["Access-Control-Expose-Headers"] = "Location, ETag, Last-Modified"
    if origin:
        resp.headers.add("Vary", "Origin")
    return resp


# Registered origins change rarely (`fhirbill clients add` or `revoke`): read them at most this
# often per worker, not on every request a browser app makes.
ORIGINS_TTL = 5.0


def _origins() -> frozenset[str]:
    cached = current_app.extensions.get("fhirbill.origins")
    now = time.monotonic()
    if cached is None or cached[0] <= now:
        srv = server()
        with read_tx(srv.engine) as conn:
            found = all_origins(conn) | set(srv.settings.extra.get("cors_origins") or ())
        cached = current_app.extensions["fhirbill.origins"] = (now + ORIGINS_TTL, frozenset(found))
    return cached[1]  # type: ignore[no-any-return]


@bp.after_request
def _audit(resp: Response) -> Response:
    """One AuditEvent per request, unless a successful write already stored its own."""
    if g.get("audit") is not None and not g.get("audited"):
        action, subtype, entities = g.audit
        acc = g.get("access")
        current_app.extensions["fhirbill.audit"].put(
            _event(acc.principal if acc else None, action, subtype, entities, resp.status_code)
        )
    return resp


def _event(principal: Any, action: str, subtype: str, entities: Iterable[str], status: int) -> dict[str, Any]:
    return audit_event(
        principal, action, subtype, list(entities), status, request.remote_addr, datetime.now(UTC)
    )


def _note(subtype: str, *entities: str, action: str | None = None) -> None:
    """What this request is, for its AuditEvent."""
    if g.get("audit") is not None:
        g.audit = (action or _ACTIONS.get(request.method, "E"), subtype, [e for e in entities if e])


def _audit_in(conn: Connection, status: int) -> None:
    """Store the AuditEvent of a successful write inside the write's transaction."""
    event = _audit_draft(status)
    if event is not None:
        repo.insert(conn, [event])
        g.audited = True


def _audit_draft(status: int) -> repo.Draft | None:
    """This request's AuditEvent, ready to insert with the data it records (None: no audit)."""
    if g.get("audit") is None:
        return None
    action, subtype, entities = g.audit
    return audit.draft(server(), _event(access().principal, action, subtype, entities, status))


def _type(rt: str) -> str:
    if not is_resource_type(rt):
        raise FHIRError.of(404, "not-supported", f"Resource type '{rt}' is not supported by this server.")
    return rt


def _body() -> Any:
    require_json_body()
    return parse_json(request.get_data(cache=False))


def _incoming(rt: str, letter: str) -> tuple[Any, Any]:
    """The grant for a write and its validated body, which must stay within the grant."""
    grant = access().grant(rt, letter)
    checked = ia.check(server(), _body(), rt)
    access().check_data(grant, checked.data)
    return grant, checked


def _written(result: ia.Result) -> Response:
    """The response to a create or update, honouring Prefer: return=."""
    srv = server()
    stored = result.stored
    assert stored is not None
    headers = version_headers(stored, srv.base, location=result.status == 201)
    want = prefer("return") or "representation"
    if want == "minimal":
        return fhir_response(b"", result.status, headers)
    if want == "operationoutcome":
        return fhir_response(outcome(result.warnings), result.status, headers)
    return fhir_response(stored.content or "", result.status, headers)


def _ref(stored: Any) -> str:
    return f"{stored.res_type}/{stored.res_id}" if stored is not None else ""


@bp.get("/metadata")
def metadata() -> Response:
    """The CapabilityStatement (open to all, like discovery)."""
    srv = server()
    cs = current_app.extensions.get("fhirbill.capability")
    if cs is None:
        cs = orjson.dumps(
            capability_statement(
                base_url=srv.base,
                software_version=__version__,
                params=srv.params,
                supported_profiles=srv.profiles.by_type(),
                security=current_app.extensions.get("fhirbill.security"),
                date=datetime.now(UTC).strftime("%Y-%m-%d"),
            )
        )
        current_app.extensions["fhirbill.capability"] = cs
    return fhir_response(cs)


@bp.post("")
@bp.post("/")
def bundle() -> Response:
    """batch and transaction Bundles."""
    srv = server()
    body = _body()
    kind = body.get("type") if isinstance(body, dict) else None
    subtype = "transaction" if kind == "transaction" else "batch"  # never a client's string
    _note(subtype, action="E")

    def audit_with_data(touched: list[str]) -> repo.Draft | None:
        _note(subtype, *touched, action="E")
        return _audit_draft(200)

    result = bundles.process(
        srv, body, strict=prefer("handling") == "strict", access=access(), audit=audit_with_data
    )
    if subtype == "transaction" and g.get("audit") is not None:
        g.audited = True  # its AuditEvent committed with its data
    return fhir_response(result)


@bp.get("/<rt>")
def search(rt: str) -> Response:
    """search-type via GET."""
    return _search(_type(rt), list(request.args.items(multi=True)))


@bp.post("/<rt>/_search")
def search_post(rt: str) -> Response:
    """search-type via POST with a form body (same result as GET)."""
    if request.mimetype != "application/x-www-form-urlencoded":
        raise FHIRError.of(415, "not-supported", "POST _search takes application/x-www-form-urlencoded.")
    pairs = list(request.args.items(multi=True)) + list(request.form.items(multi=True))
    return _search(_type(rt), pairs)


def _search(rt: str, pairs: list[tuple[str, str]]) -> Response:
    srv = server()
    _note("search-type", rt, action="E")
    strict = prefer("handling") == "strict"
    with read_tx(srv.engine) as conn:
        return fhir_response(search_bundle(srv, conn, rt, pairs, strict=strict, access=access()))


@bp.post("/<rt>")
def create(rt: str) -> Response:
    """create and conditional create (If-None-Exist)."""
    srv = server()
    _note("create", _type(rt))
    grant, checked = _incoming(rt, "c")
    with write_tx(srv.engine) as conn:
        result = ia.create(
            srv,
            conn,
            checked,
            if_none_exist=request.headers.get("If-None-Exist"),
            access=access(),
            grant=grant,
        )
        _note("create", _ref(result.stored))
        _audit_in(conn, result.status)
    return _written(result)


@bp.put("/<rt>")
def conditional_update(rt: str) -> Response:
    """PUT T?params."""
    srv = server()
    _note("update", _type(rt))
    if not request.query_string:
        raise FHIRError.of(
            405, "not-supported", "PUT on a type needs search parameters (conditional update)."
        )
    grant, checked = _incoming(rt, "u")
    with write_tx(srv.engine) as conn:
        result = ia.conditional_update(
            srv,
            conn,
            rt,
            request.query_string.decode(),
            checked,
            if_match=request.headers.get("If-Match"),
            access=access(),
            grant=grant,
        )
        _note("update", _ref(result.stored))
        _audit_in(conn, result.status)
    return _written(result)


@bp.delete("/<rt>")
def conditional_delete(rt: str) -> Response:
    """DELETE T?params."""
    srv = server()
    _note("delete", _type(rt))
    if not request.query_string:
        raise FHIRError.of(405, "not-supported", "DELETE on a type needs search parameters.")
    grant = access().grant(rt, "d")
    with write_tx(srv.engine) as conn:
        result = ia.conditional_delete(
            srv, conn, rt, request.query_string.decode(), access=access(), grant=grant
        )
        _note("delete", _ref(result.stored))
        _audit_in(conn, 204)
    return fhir_response(b"", 204, version_headers(result.stored, srv.base) if result.stored else {})


@bp.get("/<rt>/<rid>")
def read(rt: str, rid: str) -> Response:
    """read."""
    srv = server()
    _note("read", f"{_type(rt)}/{rid}")
    grant = access().grant(rt, "r")
    with read_tx(srv.engine) as conn:
        stored = ia.read(conn, rt, rid, access=access(), grant=grant)
    return fhir_response(stored.content or "", 200, version_headers(stored, srv.base))


@bp.put("/<rt>/<rid>")
def update(rt: str, rid: str) -> Response:
    """update and update-as-create."""
    srv = server()
    _note("update", f"{_type(rt)}/{rid}")
    grant, checked = _incoming(rt, "u")
    with write_tx(srv.engine) as conn:
        result = ia.update(
            srv,
            conn,
            rt,
            rid,
            checked,
            if_match=request.headers.get("If-Match"),
            access=access(),
            grant=grant,
        )
        _audit_in(conn, result.status)
    return _written(result)


@bp.patch("/<rt>/<rid>")
def patch(rt: str, rid: str) -> Response:
    """JSON Patch."""
    srv = server()
    _note("patch", f"{_type(rt)}/{rid}")
    grant = access().grant(rt, "u")
    require_json_body(("application/json-patch+json",))
    ops = parse_json(request.get_data(cache=False))
    with write_tx(srv.engine) as conn:
        result = ia.patch(
            srv, conn, rt, rid, ops, if_match=request.headers.get("If-Match"), access=access(), grant=grant
        )
        _audit_in(conn, result.status)
    return _written(result)


@bp.delete("/<rt>/<rid>")
def delete(rt: str, rid: str) -> Response:
    """delete."""
    srv = server()
    _note("delete", f"{_type(rt)}/{rid}")
    grant = access().grant(rt, "d")
    with write_tx(srv.engine) as conn:
        result = ia.delete(conn, rt, rid, access=access(), grant=grant)
        _audit_in(conn, 204)
    headers = {"ETag": result.stored.etag} if result.stored else {}
    return fhir_response(b"", 204, headers)


@bp.get("/<rt>/<rid>/_history/<vid>")
def vread(rt: str, rid: str, vid: str) -> Response:
    """vread."""
    srv = server()
    _note("vread", f"{_type(rt)}/{rid}")
    grant = access().grant(rt, "r")
    with read_tx(srv.engine) as conn:
        stored = ia.vread(conn, rt, rid, vid, access=access(), grant=grant)
    return fhir_response(stored.content or "", 200, version_headers(stored, srv.base))


@bp.get("/<rt>/<rid>/_history")
def history_instance(rt: str, rid: str) -> Response:
    """history of one resource."""
    srv = server()
    _note("history-instance", f"{_type(rt)}/{rid}")
    grant = access().grant(rt, "r")
    with read_tx(srv.engine) as conn:
        cur = ia.read_any(conn, rt, rid, access=access(), grant=grant)
        return fhir_response(
            history_bundle(srv, conn, request.args, res_type=rt, rid=cur.rid, res_id=rid, access=access())
        )


@bp.get("/<rt>/_history")
def history_type(rt: str) -> Response:
    """history of a type (not for patient-confined tokens)."""
    srv = server()
    _note("history-type", _type(rt))
    _no_patient_history(access().grant(rt, "r"))
    with read_tx(srv.engine) as conn:
        return fhir_response(history_bundle(srv, conn, request.args, res_type=rt, access=access()))


@bp.get("/_history")
def history_system() -> Response:
    """history of the whole server, limited to the types the token may read."""
    srv = server()
    _note("history-system")
    if access().enabled:
        p = access().principal
        if p is not None and (p.patient or p.user_patient):
            raise FHIRError.of(403, "forbidden", "Patient-confined tokens have no server-wide history.")
    with read_tx(srv.engine) as conn:
        return fhir_response(history_bundle(srv, conn, request.args, access=access()))


def _no_patient_history(grant: Any) -> None:
    if Access.patient(grant) is not None:
        raise FHIRError.of(403, "forbidden", "Patient-confined tokens have no type-wide history.")


def _validate_input() -> tuple[Any, list[str]]:
    """The resource and profiles of a $validate call (the resource itself or a Parameters)."""
    profiles = request.args.getlist("profile")
    body = _body()
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource = None
        for p in body.get("parameter") or []:
            if p.get("name") == "resource":
                resource = p.get("resource")
            elif p.get("name") == "profile" and (p.get("valueUri") or p.get("valueCanonical")):
                profiles.append(p.get("valueUri") or p.get("valueCanonical"))
        if resource is None:
            raise FHIRError.of(
                400, "required", "Parameters must hold a 'resource' parameter.", "Parameters.parameter"
            )
        return resource, profiles
    return body, profiles


def _validate(rt: str, resource: Any, profiles: list[str]) -> Response:
    srv = server()
    try:
        checked = ia.check(srv, resource, rt)
        warnings = checked.warnings + ia.profile_issues(srv, checked.data, profiles)
    except FHIRError as exc:
        return fhir_response(outcome(exc.issues), 200 if exc.status in (400, 422) else exc.status)
    return fhir_response(outcome(warnings or [Issue("information", "informational", "Validation passed.")]))


@bp.post("/<rt>/$validate")
def validate_type(rt: str) -> Response:
    """$validate a resource in the body (needs create permission on the type)."""
    _note("operation", _type(rt), action="E")
    access().grant(rt, "c")
    resource, profiles = _validate_input()
    return _validate(rt, resource, profiles)


@bp.route("/<rt>/<rid>/$validate", methods=["GET", "POST"])
def validate_instance(rt: str, rid: str) -> Response:
    """$validate the stored resource (POST may carry a Parameters with profiles)."""
    srv = server()
    _note("operation", f"{_type(rt)}/{rid}", action="E")
    grant = access().grant(rt, "r")
    profiles = request.args.getlist("profile")
    if request.method == "POST" and request.content_length:
        _, more = _validate_input()
        profiles += more
    with read_tx(srv.engine) as conn:
        stored = ia.read(conn, rt, rid, access=access(), grant=grant)
    return _validate(rt, orjson.loads(stored.content or "{}"), profiles)


@bp.get("/Claim/<rid>/$x12")
def claim_x12(rid: str) -> Response:
    """The 837 for one claim, or 422 with the scrubbing OperationOutcome (needs read access to the Claim)."""
    srv = server()
    _note("operation", f"Claim/{rid}", action="E")
    grant = access().grant("Claim", "r")
    with read_tx(srv.engine) as conn:
        ia.read(conn, "Claim", rid, access=access(), grant=grant)
    run = x12ops.run_837(srv, [rid])
    if not run.text:
        issues = [i for r in run.rejected for i in r.issues]
        return error_response(422, issues)
    return Response(run.text, 200, content_type=x12ops.EDI_X12)


@bp.post("/Claim/$x12")
def claims_x12() -> Response:
    """Many claims (or a payer's unbilled ones) into one interchange, with the rejected listed."""
    _note("operation", "Claim", action="E")
    grant = access().grant("Claim", "r")
    if Access.patient(grant) is not None:
        raise FHIRError.of(403, "forbidden", "Batch 837s are not available to patient-confined tokens.")
    ids, payer = x12ops.parameters_input(_body())
    return fhir_response(x12ops.parameters_output(x12ops.run_837(server(), ids, payer)))
