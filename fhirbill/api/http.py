"""HTTP plumbing for the FHIR API: content negotiation, FHIR responses, errors and request logs."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from fhirbill.fhir.errors import FHIRError, Issue, outcome
from fhirbill.fhir.ids import random_bytes
from fhirbill.store.resources import Stored, instant

log = logging.getLogger("fhirbill.http")

FHIR_JSON = "application/fhir+json; charset=utf-8"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
_FORMAT_JSON = {"json", "application/json", "application/fhir+json", "application/json+fhir"}
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_STATUS_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
}


def negotiate() -> None:
    """Refuse (406) a request that asks only for a format other than JSON."""
    fmt = request.args.get("_format")
    if fmt is not None:
        if fmt.split(";")[0].strip().lower() not in _FORMAT_JSON:
            raise FHIRError.of(406, "not-supported", "Only JSON is supported (_format=json).")
        return
    accept = request.accept_mimetypes
    if not accept.provided:
        return
    # accept[t] honours wildcards in the header (*/*, application/*) and q=0.
    if not any(accept[t] for t in JSON_TYPES):
        raise FHIRError.of(406, "not-supported", "Only application/fhir+json is supported.")


def require_json_body(allowed: tuple[str, ...] = JSON_TYPES) -> None:
    """Refuse (415) a body whose Content-Type is not one we read."""
    ctype = (request.mimetype or "").lower()
    if ctype not in allowed:
        raise FHIRError.of(415, "not-supported", f"Content-Type must be one of {', '.join(allowed)}.")


def fhir_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A FHIR JSON response; `body` is stored JSON text, bytes, or a dict (orjson Fragments allowed)."""
    if isinstance(body, dict):
        data = orjson.dumps(body)
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body
    resp = Response(data, status=status, content_type=FHIR_JSON)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def version_headers(stored: Stored, base: str, *, location: bool = False) -> dict[str, str]:
    """ETag, Last-Modified and (for creates) Location of a stored version."""
    from datetime import UTC
    from email.utils import format_datetime

    h = {
        "ETag": stored.etag,
        "Last-Modified": format_datetime(stored.last_updated.replace(tzinfo=UTC), usegmt=True),
    }
    if location:
        h["Location"] = f"{base}/{stored.res_type}/{stored.res_id}/_history/{stored.version}"
    return h


def prefer(name: str) -> str | None:
    """A token from the Prefer header, e.g. prefer('return') -> 'minimal'."""
    for part in request.headers.get("Prefer", "").split(","):
        k, _, v = part.strip().partition("=")
        if k.strip().lower() == name:
            return v.strip().strip('"').lower()
    return None


def error_response(status: int, issues: list[Issue], headers: dict[str, str] | None = None) -> Response:
    """An OperationOutcome response."""
    return fhir_response(outcome(issues), status, headers)


def _on_fhir_error(exc: FHIRError) -> Response:
    return error_response(exc.status, exc.issues, exc.headers)


def _on_http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 413:
        text = "The request body is larger than this server accepts."
    elif status == 405:
        text = f"{request.method} is not allowed on this URL."
    elif status == 404:
        text = "No such endpoint."
    else:
        text = exc.name
    allowed = getattr(exc, "valid_methods", None)
    headers = {"Allow": ", ".join(allowed)} if allowed else {}
    return error_response(status, [Issue("error", _STATUS_CODES.get(status, "exception"), text)], headers)


def _on_unexpected(exc: Exception) -> Response:
    # The class name only: messages and tracebacks can carry request values (patient data).
    log.error("unhandled exception", extra={"request_id": g.get("request_id"), "error": type(exc).__name__})
    return error_response(
        500,
        [Issue("fatal", "exception", f"Internal server error (request id {g.get('request_id')}).")],
    )


def install(app: Flask) -> None:
    """Register the error handlers and the request log on the app."""
    app.register_error_handler(FHIRError, _on_fhir_error)
    app.register_error_handler(HTTPException, _on_http_error)
    app.register_error_handler(Exception, _on_unexpected)

    @app.before_request
    def _start() -> None:
        g.t0 = time.perf_counter()
        rid = request.headers.get("X-Request-ID", "")
        g.request_id = rid if _REQUEST_ID_RE.match(rid) else random_bytes(8).hex()

    @app.after_request
    def _finish(resp: Response) -> Response:
        resp.headers["X-Request-ID"] = g.get("request_id", "")
        if log.isEnabledFor(logging.INFO):
            fields: dict[str, Any] = {
                "request_id": g.get("request_id"),
                "method": request.method,
                "route": request.url_rule.rule if request.url_rule else "(unmatched)",
                "status": resp.status_code,
                "duration_ms": round((time.perf_counter() - g.get("t0", time.perf_counter())) * 1000, 2),
            }
            if request.args:
                fields["params"] = sorted(set(request.args.keys()))  # names only, never values
            if g.get("client_id"):
                fields["client_id"] = g.client_id
            log.info("request", extra=fields)
        return resp


def last_modified(stored: Stored) -> str:
    """FHIR instant of a stored version."""
    return instant(stored.last_updated)
