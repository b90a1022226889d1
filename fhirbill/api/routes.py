"""The FHIR REST blueprint at /fhir: one route per interaction, thin over `interactions`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, request

from fhirbill import __version__
from fhirbill.api import bundles, x12ops
from fhirbill.api import interactions as ia
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
from fhirbill.fhir.capability import capability_statement
from fhirbill.fhir.errors import FHIRError, Issue, outcome
from fhirbill.fhir.registry import is_resource_type
from fhirbill.fhir.validation import parse_json
from fhirbill.store.db import read_tx, write_tx

bp = Blueprint("fhir", __name__, url_prefix="/fhir")


def server() -> Server:
    """The app's Server."""
    return current_app.extensions["fhirbill"]  # type: ignore[no-any-return]


@bp.before_request
def _negotiate() -> None:
    negotiate()


def _type(rt: str) -> str:
    if not is_resource_type(rt):
        raise FHIRError.of(404, "not-supported", f"Resource type '{rt}' is not supported by this server.")
    return rt


def _body() -> Any:
    require_json_body()
    return parse_json(request.get_data(cache=False))


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


@bp.get("/metadata")
def metadata() -> Response:
    """The CapabilityStatement."""
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
    return fhir_response(bundles.process(srv, _body(), strict=prefer("handling") == "strict"))


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
    strict = prefer("handling") == "strict"
    with read_tx(srv.engine) as conn:
        return fhir_response(search_bundle(srv, conn, rt, pairs, strict=strict))


@bp.post("/<rt>")
def create(rt: str) -> Response:
    """create and conditional create (If-None-Exist)."""
    srv = server()
    checked = ia.check(srv, _body(), _type(rt))
    with write_tx(srv.engine) as conn:
        result = ia.create(srv, conn, checked, if_none_exist=request.headers.get("If-None-Exist"))
    return _written(result)


@bp.put("/<rt>")
def conditional_update(rt: str) -> Response:
    """PUT T?params."""
    srv = server()
    if not request.query_string:
        raise FHIRError.of(
            405, "not-supported", "PUT on a type needs search parameters (conditional update)."
        )
    checked = ia.check(srv, _body(), _type(rt))
    with write_tx(srv.engine) as conn:
        result = ia.conditional_update(
            srv, conn, rt, request.query_string.decode(), checked, if_match=request.headers.get("If-Match")
        )
    return _written(result)


@bp.delete("/<rt>")
def conditional_delete(rt: str) -> Response:
    """DELETE T?params."""
    srv = server()
    if not request.query_string:
        raise FHIRError.of(405, "not-supported", "DELETE on a type needs search parameters.")
    with write_tx(srv.engine) as conn:
        result = ia.conditional_delete(srv, conn, _type(rt), request.query_string.decode())
    return fhir_response(b"", 204, version_headers(result.stored, srv.base) if result.stored else {})


@bp.get("/<rt>/<rid>")
def read(rt: str, rid: str) -> Response:
    """read."""
    srv = server()
    with read_tx(srv.engine) as conn:
        stored = ia.read(conn, _type(rt), rid)
    return fhir_response(stored.content or "", 200, version_headers(stored, srv.base))


@bp.put("/<rt>/<rid>")
def update(rt: str, rid: str) -> Response:
    """update and update-as-create."""
    srv = server()
    checked = ia.check(srv, _body(), _type(rt))
    with write_tx(srv.engine) as conn:
        result = ia.update(srv, conn, rt, rid, checked, if_match=request.headers.get("If-Match"))
    return _written(result)


@bp.patch("/<rt>/<rid>")
def patch(rt: str, rid: str) -> Response:
    """JSON Patch."""
    srv = server()
    require_json_body(("application/json-patch+json",))
    ops = parse_json(request.get_data(cache=False))
    with write_tx(srv.engine) as conn:
        result = ia.patch(srv, conn, _type(rt), rid, ops, if_match=request.headers.get("If-Match"))
    return _written(result)


@bp.delete("/<rt>/<rid>")
def delete(rt: str, rid: str) -> Response:
    """delete."""
    srv = server()
    with write_tx(srv.engine) as conn:
        result = ia.delete(conn, _type(rt), rid)
    headers = {"ETag": result.stored.etag} if result.stored else {}
    return fhir_response(b"", 204, headers)


@bp.get("/<rt>/<rid>/_history/<vid>")
def vread(rt: str, rid: str, vid: str) -> Response:
    """vread."""
    srv = server()
    with read_tx(srv.engine) as conn:
        stored = ia.vread(conn, _type(rt), rid, vid)
    return fhir_response(stored.content or "", 200, version_headers(stored, srv.base))


@bp.get("/<rt>/<rid>/_history")
def history_instance(rt: str, rid: str) -> Response:
    """history of one resource."""
    srv = server()
    with read_tx(srv.engine) as conn:
        cur = ia.read_any(conn, _type(rt), rid)
        return fhir_response(history_bundle(srv, conn, request.args, res_type=rt, rid=cur.rid, res_id=rid))


@bp.get("/<rt>/_history")
def history_type(rt: str) -> Response:
    """history of a type."""
    srv = server()
    with read_tx(srv.engine) as conn:
        return fhir_response(history_bundle(srv, conn, request.args, res_type=_type(rt)))


@bp.get("/_history")
def history_system() -> Response:
    """history of the whole server."""
    srv = server()
    with read_tx(srv.engine) as conn:
        return fhir_response(history_bundle(srv, conn, request.args))


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
    """$validate a resource in the body."""
    resource, profiles = _validate_input()
    return _validate(_type(rt), resource, profiles)


@bp.route("/<rt>/<rid>/$validate", methods=["GET", "POST"])
def validate_instance(rt: str, rid: str) -> Response:
    """$validate the stored resource (POST may carry a Parameters with profiles)."""
    srv = server()
    profiles = request.args.getlist("profile")
    if request.method == "POST" and request.content_length:
        _, more = _validate_input()
        profiles += more
    with read_tx(srv.engine) as conn:
        stored = ia.read(conn, _type(rt), rid)
    return _validate(rt, orjson.loads(stored.content or "{}"), profiles)


@bp.get("/Claim/<rid>/$x12")
def claim_x12(rid: str) -> Response:
    """The 837 for one claim, or 422 with the scrubbing OperationOutcome."""
    srv = server()
    with read_tx(srv.engine) as conn:
        ia.read(conn, "Claim", rid)
    run = x12ops.run_837(srv, [rid])
    if not run.text:
        issues = [i for r in run.rejected for i in r.issues]
        return error_response(422, issues)
    return Response(run.text, 200, content_type=x12ops.EDI_X12)


@bp.post("/Claim/$x12")
def claims_x12() -> Response:
    """Many claims (or a payer's unbilled ones) into one interchange, with the rejected listed."""
    ids, payer = x12ops.parameters_input(_body())
    return fhir_response(x12ops.parameters_output(x12ops.run_837(server(), ids, payer)))
