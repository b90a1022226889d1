"""The authorization server's HTTP endpoints: discovery, JWKS, authorize, token, introspect, revoke.

Small, explicit OAuth code rather than Authlib's AuthorizationServer: SMART needs PKCE S256 for
every client, `aud`, RS384/ES384 assertions with jti storage, scope narrowing, refresh gating and
code-reuse revocation, each of which would be an override there. Authlib's client drives the tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode, urlsplit, urlunsplit

from flask import Blueprint, Response, current_app, render_template_string, request
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import Connection, Engine, select

from fhirbill.auth import assertions, tokens, users
from fhirbill.auth import scopes as sc
from fhirbill.auth.access import TokenCache
from fhirbill.auth.clients import Client, all_origins, check_secret, get_client
from fhirbill.settings import Settings
from fhirbill.store.db import read_tx, write_tx
from fhirbill.store.tables import resources

log = logging.getLogger("fhirbill.auth")

bp = Blueprint("smart_auth", __name__)

AuditSink = Callable[[Connection, dict[str, Any]], None]
CAPABILITIES = [
    "launch-standalone",
    "launch-ehr",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-standalone-patient",
    "context-ehr-patient",
    "permission-patient",
    "permission-user",
    "permission-offline",
    "permission-online",
    "permission-v1",
    "permission-v2",
    "authorize-post",
]
SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.rs",
    "patient/*.read",
    "user/*.rs",
    "user/*.read",
    "system/*.rs",
    "system/*.read",
    "system/*.cruds",
    "system/AuditEvent.rs",
]
_CHALLENGE_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_VERIFIER_RE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass
class AuthState:
    """Per-app state of the authorization server."""

    key: RSAKey
    audit: AuditSink | None = None
    fetch_jwks: assertions.JwksFetcher = assertions.fetch_jwks
    clock: Callable[[], float] = time.time
    tokens: TokenCache = field(default_factory=lambda: TokenCache(0))  # the FHIR routes' cache


class OAuthError(Exception):
    """An OAuth error response (RFC 6749 §5.2)."""

    def __init__(self, status: int, error: str, description: str, **headers: str) -> None:
        super().__init__(error)
        self.status, self.error, self.description, self.headers = status, error, description, headers


def _server() -> Any:
    return current_app.extensions["fhirbill"]


def _settings() -> Settings:
    return _server().settings  # type: ignore[no-any-return]


def _engine() -> Engine:
    return _server().engine  # type: ignore[no-any-return]


def _state() -> AuthState:
    return current_app.extensions["fhirbill_auth"]  # type: ignore[no-any-return]


def _now() -> int:
    return int(_state().clock())


def urls(base_url: str) -> dict[str, str]:
    """Absolute URLs of the endpoints, derived from the FHIR base (`.../fhir`)."""
    root = base_url.rstrip("/").removesuffix("/fhir")
    return {
        "issuer": base_url,
        "authorize": f"{root}/oauth/authorize",
        "token": f"{root}/oauth/token",
        "introspect": f"{root}/oauth/introspect",
        "revoke": f"{root}/oauth/revoke",
        "jwks": f"{root}/oauth/jwks",
    }


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    resp = Response(json.dumps(body), status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


@bp.errorhandler(OAuthError)
def _on_oauth_error(e: OAuthError) -> Response:
    return _json({"error": e.error, "error_description": e.description}, e.status, {**NO_STORE, **e.headers})


def _audit(conn: Connection, event: dict[str, Any]) -> None:
    sink = _state().audit
    if sink is not None:
        sink(conn, event)


def _token_audit(client_id: str | None, grant_type: str | None, outcome: int, desc: str) -> Any:
    from fhirbill.auth.audit import token_event

    return token_event(
        client_id=client_id,
        grant_type=grant_type,
        outcome=outcome,
        description=desc,
        source_ip=request.remote_addr,
        when=_now(),
    )


# --- discovery ------------------------------------------------------------------------------


def _discovery() -> dict[str, Any]:
    """What the SMART and the OpenID discovery documents both say."""
    u = urls(_settings().base_url)
    return {
        "issuer": u["issuer"],
        "jwks_uri": u["jwks"],
        "authorization_endpoint": u["authorize"],
        "token_endpoint": u["token"],
        "introspection_endpoint": u["introspect"],
        "revocation_endpoint": u["revoke"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "none"],
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
    }


@bp.get("/fhir/.well-known/smart-configuration")
def smart_configuration() -> Response:
    """SMART discovery (JSON whatever the Accept header)."""
    return _json(
        {
            **_discovery(),
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "capabilities": CAPABILITIES,
        }
    )


@bp.get("/fhir/.well-known/openid-configuration")
def openid_configuration() -> Response:
    """OpenID Connect discovery at the issuer."""
    return _json(
        {
            **_discovery(),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        }
    )


@bp.get("/oauth/jwks")
def jwks() -> Response:
    """The public signing keys."""
    from fhirbill.auth.keys import jwks as key_set

    return _json(key_set(_state().key))


_OPEN = ("smart_auth.smart_configuration", "smart_auth.openid_configuration", "smart_auth.jwks")
_CORS = ("smart_auth.token", "smart_auth.introspect", "smart_auth.revoke")


@bp.after_request
def _cors(resp: Response) -> Response:
    if request.endpoint in _OPEN:
        resp.headers["Access-Control-Allow-Origin"] = "*"
    elif request.endpoint in _CORS:
        origin = request.headers.get("Origin")
        if origin:
            allowed = set(_state_origins())
            if origin.rstrip("/") in allowed:
                resp.headers["Access-Control-Allow-Origin"] = origin
                resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
                resp.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            resp.headers.add("Vary", "Origin")
    return resp


def _state_origins() -> set[str]:
    extra = _settings().extra.get("cors_origins") or ()
    with read_tx(_engine()) as conn:
        return all_origins(conn) | {o.rstrip("/") for o in extra}


# --- authorize ------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize {{ client.name }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem}
label{display:block;margin:.4rem 0}.error{color:#a00}</style></head>
<body>
<h1>fhirbill sign-in</h1>
<p><strong>{{ client.name }}</strong> asks to access your health and billing records.</p>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="{{ action }}">
{% for name, value in hidden %}<input type="hidden" name="{{ name }}" value="{{ value }}">
{% endfor %}
<fieldset><legend>Sign in</legend>
<label>Username <input name="username" autocomplete="username" required value="{{ username }}"></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
</fieldset>
<fieldset><legend>Allow this app to</legend>
{% for s in offered %}<label><input type="checkbox" name="scope" value="{{ s }}" checked> {{ s }}</label>
{% endfor %}
{% if wildcard %}<p>Scopes with <code>*</code> also cover record types added later.</p>{% endif %}
</fieldset>
{% if picker %}<fieldset><legend>Patient</legend>
<label>Patient id (practitioners) <input name="patient" value="{{ patient }}"></label></fieldset>{% endif %}
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>"""

_ERROR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorization error</title></head>
<body><h1>Authorization error</h1><p>{{ message }}</p></body></html>"""

_HTML_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
_CARRIED = (
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
    "launch",
    "nonce",
)


def _html(body: str, status: int = 200) -> Response:
    resp = Response(body, status=status, mimetype="text/html")
    resp.headers.update(_HTML_HEADERS)
    return resp


def _error_page(message: str, status: int = 400) -> Response:
    return _html(render_template_string(_ERROR_PAGE, message=message), status)


def _redirect(redirect_uri: str, params: dict[str, str]) -> Response:
    parts = urlsplit(redirect_uri)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    resp = Response(status=302)
    resp.headers["Location"] = urlunsplit(parts._replace(query=query))
    resp.headers.update(_HTML_HEADERS)
    return resp


class _RedirectError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(error)
        self.error, self.description = error, description


def _patient_exists(conn: Connection, patient_id: str) -> bool:
    row = conn.execute(
        select(resources.c.deleted)
        .where(resources.c.res_type == "Patient")
        .where(resources.c.res_id == patient_id)
    ).first()
    return row is not None and not row.deleted


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize() -> Response:
    """The authorization endpoint: validate, then a login + consent page, then a code."""
    form = request.form if request.method == "POST" else request.args
    submitted = request.method == "POST" and "decision" in form
    p = {k: form.get(k, "") for k in _CARRIED}
    p["scope"] = form.get("requested_scope", "") if submitted else form.get("scope", "")
    now = _now()
    with read_tx(_engine()) as conn:
        client = get_client(conn, p["client_id"]) if p["client_id"] else None
    if client is None or client.revoked or "authorization_code" not in client.grant_types:
        return _error_page("Unknown client.")
    if not p["redirect_uri"] or p["redirect_uri"] not in client.redirect_uris:
        return _error_page("The redirect_uri is not registered for this client.")
    state = p["state"]

    def fail(error: str, description: str) -> Response:
        out = {"error": error, "error_description": description}
        if state:
            out["state"] = state
        return _redirect(p["redirect_uri"], out)

    try:
        offered, launch_patient = _validate(p, client, now)
    except _RedirectError as e:
        return fail(e.error, e.description)
    if not submitted:
        return _page(client, p, offered, launch_patient)
    if form.get("decision") != "allow":
        return fail("access_denied", "The user denied the request.")
    username = form.get("username", "")
    with write_tx(_engine()) as conn:
        if users.throttled(conn, username, now):
            blocked = True
            user = None
        else:
            blocked = False
            user = users.login(conn, username, form.get("password", ""), now)
    if blocked:
        return _html(
            render_template_string(_ERROR_PAGE, message="Too many failed sign-ins. Try later."),
            429,
        )
    if user is None:
        return _page(client, p, offered, launch_patient, "Wrong username or password.", 401)
    ticked = set(form.getlist("scope"))
    granted = [s for s in offered if s in ticked]
    if not any(sc.parse(s) for s in granted):
        return fail("access_denied", "No resource access was granted.")
    patient: str | None = user.patient_id or launch_patient
    needs_patient = "launch/patient" in granted or any(
        (s := sc.parse(t)) is not None and s.context == "patient" for t in granted
    )
    if patient is None and needs_patient:
        chosen = form.get("patient", "").strip().removeprefix("Patient/")
        with read_tx(_engine()) as conn:
            ok = users.valid_patient_id(chosen) and _patient_exists(conn, chosen)
        if not ok:
            return _page(client, p, offered, launch_patient, "Choose an existing patient.", 400)
        patient = chosen
    with write_tx(_engine()) as conn:
        code = tokens.create_code(
            conn,
            client_id=client.client_id,
            redirect_uri=p["redirect_uri"],
            scope=" ".join(granted),
            code_challenge=p["code_challenge"],
            username=user.username,
            patient_id=patient,
            fhir_user=user.fhir_user,
            nonce=p["nonce"] or None,
            now=now,
        )
    return _redirect(p["redirect_uri"], {"code": code, "state": state})


def _validate(p: dict[str, str], client: Client, now: int) -> tuple[list[str], str | None]:
    if p["response_type"] != "code":
        raise _RedirectError("unsupported_response_type", "response_type must be code")
    if not p["state"]:
        raise _RedirectError("invalid_request", "state is required")
    if not p["scope"].strip():
        raise _RedirectError("invalid_scope", "scope is required")
    if p["aud"].rstrip("/") != _settings().base_url:
        raise _RedirectError("invalid_request", "aud must be this server's FHIR base URL")
    if not p["code_challenge"]:
        raise _RedirectError("invalid_request", "PKCE code_challenge is required")
    if p["code_challenge_method"] != "S256":
        raise _RedirectError("invalid_request", "code_challenge_method must be S256")
    if not _CHALLENGE_RE.match(p["code_challenge"]):
        raise _RedirectError("invalid_request", "code_challenge is not an S256 challenge")
    launch_patient = None
    if p["launch"]:
        with read_tx(_engine()) as conn:
            known, launch_patient = tokens.launch_patient(conn, p["launch"], now)
        if not known:
            raise _RedirectError("invalid_request", "unknown or expired launch")
    requested = sc.split(p["scope"])
    if "launch" in requested and not p["launch"]:
        requested.remove("launch")
    offered = sc.narrow(requested, client.scope)
    if not any(sc.parse(s) for s in offered):
        raise _RedirectError("invalid_scope", "none of the requested scopes may be granted")
    return offered, launch_patient


def _page(
    client: Client,
    p: dict[str, str],
    offered: list[str],
    launch_patient: str | None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    hidden = [(k, p[k]) for k in _CARRIED if p[k]] + [("requested_scope", p["scope"])]
    body = render_template_string(
        _PAGE,
        client=client,
        hidden=hidden,
        offered=offered,
        wildcard=any("/*." in s for s in offered),
        picker="launch/patient" in offered and launch_patient is None,
        error=error,
        username=request.form.get("username", ""),
        patient=request.form.get("patient", ""),
        action=request.path,
    )
    return _html(body, status)


# --- client authentication ------------------------------------------------------------------


def _authenticate_client(conn: Connection, now: int, *, allow_public: bool) -> Client:
    """The client making a token/introspect/revoke request, or OAuthError invalid_client."""
    form = request.form
    auth = request.headers.get("Authorization", "")
    ca_type, ca = form.get("client_assertion_type"), form.get("client_assertion")
    if auth[:6].lower() == "basic ":
        basic = {"WWW-Authenticate": 'Basic realm="fhirbill"'}
        try:
            raw = base64.b64decode(auth[6:].strip(), validate=True).decode()
            cid, _, secret = raw.partition(":")
            cid, secret = unquote_plus(cid), unquote_plus(secret)
        except ValueError:
            raise OAuthError(401, "invalid_client", "malformed Basic credentials", **basic) from None
        client = get_client(conn, cid)
        if (
            client is None
            or client.revoked
            or client.auth_method != "client_secret_basic"
            or not check_secret(client, secret)
            or form.get("client_id", cid) != cid
        ):
            raise OAuthError(401, "invalid_client", "client authentication failed", **basic)
        return client
    if ca_type is not None or ca is not None:
        if ca_type != assertions.ASSERTION_TYPE or not ca:
            raise OAuthError(401, "invalid_client", "unsupported client_assertion_type")
        try:
            return assertions.verify(
                conn,
                ca,
                token_url=urls(_settings().base_url)["token"],
                now=now,
                form_client_id=form.get("client_id"),
                fetch=_state().fetch_jwks,
            )
        except assertions.InvalidAssertion as e:
            raise OAuthError(401, "invalid_client", str(e)) from None
    if form.get("client_secret") is not None:
        raise OAuthError(401, "invalid_client", "use client_secret_basic")
    cid = form.get("client_id", "")
    client = get_client(conn, cid) if cid else None
    if client is None or client.revoked or not client.public or not allow_public:
        raise OAuthError(401, "invalid_client", "client authentication failed")
    return client


# --- token ----------------------------------------------------------------------------------


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _refresh_ttl(scope: str) -> int | None:
    granted = sc.split(scope)
    if "offline_access" in granted:
        return tokens.OFFLINE_TTL
    if "online_access" in granted:
        return tokens.ONLINE_TTL
    return None


def _fhir_user_url(fhir_user: str | None) -> str | None:
    return f"{_settings().base_url}/{fhir_user}" if fhir_user else None


def _id_token(
    client_id: str, username: str, fhir_user: str | None, nonce: str | None, now: int, scope: str
) -> str:
    key = _state().key
    claims: dict[str, Any] = {
        "iss": _settings().base_url,
        "sub": username,
        "aud": client_id,
        "iat": now,
        "exp": now + tokens.ACCESS_TTL,
    }
    if "fhirUser" in sc.split(scope) and fhir_user:
        claims["fhirUser"] = _fhir_user_url(fhir_user)
    if nonce:
        claims["nonce"] = nonce
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)


def _issue_app_tokens(
    conn: Connection,
    *,
    grant_id: str,
    client: Client,
    scope: str,
    username: str | None,
    patient_id: str | None,
    fhir_user: str | None,
    now: int,
) -> dict[str, Any]:
    common = dict(
        grant_id=grant_id,
        client_id=client.client_id,
        scope=scope,
        username=username,
        patient_id=patient_id,
        fhir_user=fhir_user,
        now=now,
    )
    body: dict[str, Any] = {
        "access_token": tokens.issue(conn, kind="access", ttl=tokens.ACCESS_TTL, **common),  # type: ignore[arg-type]
        "token_type": "Bearer",
        "expires_in": tokens.ACCESS_TTL,
        "scope": scope,
    }
    if patient_id:
        body["patient"] = patient_id
        body["need_patient_banner"] = True
    ttl = _refresh_ttl(scope)
    if ttl is not None:
        body["refresh_token"] = tokens.issue(conn, kind="refresh", ttl=ttl, **common)  # type: ignore[arg-type]
    return body


def _grant_code(conn: Connection, client: Client, now: int) -> dict[str, Any] | OAuthError:
    form = request.form
    row = tokens.find_code(conn, form.get("code", ""))
    if row is None:
        return OAuthError(400, "invalid_grant", "unknown authorization code")
    if row.used_at is not None:
        tokens.revoke_grant(conn, row.grant_id)
        return OAuthError(400, "invalid_grant", "the authorization code was already used")
    if row.client_id != client.client_id:
        return OAuthError(400, "invalid_grant", "the code was issued to another client")
    if row.expires_at <= now:
        return OAuthError(400, "invalid_grant", "the authorization code has expired")
    if form.get("redirect_uri") != row.redirect_uri:
        return OAuthError(400, "invalid_grant", "redirect_uri does not match the authorization")
    verifier = form.get("code_verifier", "")
    if not _VERIFIER_RE.match(verifier) or not secrets.compare_digest(_s256(verifier), row.code_challenge):
        return OAuthError(400, "invalid_grant", "PKCE verification failed")
    if not tokens.consume_code(conn, row.code_hash, now):
        tokens.revoke_grant(conn, row.grant_id)
        return OAuthError(400, "invalid_grant", "the authorization code was already used")
    body = _issue_app_tokens(
        conn,
        grant_id=row.grant_id,
        client=client,
        scope=row.scope,
        username=row.username,
        patient_id=row.patient_id,
        fhir_user=row.fhir_user,
        now=now,
    )
    if "openid" in sc.split(row.scope) and row.username:
        body["id_token"] = _id_token(client.client_id, row.username, row.fhir_user, row.nonce, now, row.scope)
    return body


def _grant_refresh(conn: Connection, client: Client, now: int) -> dict[str, Any] | OAuthError:
    form = request.form
    old = tokens.find_token(conn, form.get("refresh_token", ""))
    if old is None or old.kind != "refresh" or not old.active(now):
        return OAuthError(400, "invalid_grant", "unknown, expired or revoked refresh token")
    if old.client_id != client.client_id:
        return OAuthError(400, "invalid_grant", "the refresh token was issued to another client")
    requested = form.get("scope")
    scope = old.scope
    if requested is not None and requested.strip():
        if not sc.covered_by(requested, old.scope):
            return OAuthError(400, "invalid_scope", "refresh may not broaden the granted scope")
        scope = " ".join(sc.split(requested))
    # Rotation: the presented refresh token is spent; earlier access tokens live out their time.
    tokens.revoke_one(conn, old.token_hash)
    return _issue_app_tokens(
        conn,
        grant_id=old.grant_id,
        client=client,
        scope=scope,
        username=old.username,
        patient_id=old.patient_id,
        fhir_user=old.fhir_user,
        now=now,
    )


def _grant_client_credentials(conn: Connection, client: Client, now: int) -> dict[str, Any] | OAuthError:
    requested = sc.split(request.form.get("scope", ""))
    if not requested:
        return OAuthError(400, "invalid_scope", "scope is required")
    parsed = [sc.parse(t) for t in requested]
    if any(s is None or s.context != "system" for s in parsed):
        return OAuthError(400, "invalid_scope", "backend services may request system/ scopes only")
    if not sc.covered_by(requested, client.scope):
        return OAuthError(400, "invalid_scope", "scope exceeds the client's registration")
    scope = " ".join(requested)
    value = tokens.issue(
        conn,
        kind="access",
        grant_id=secrets.token_hex(16),
        client_id=client.client_id,
        scope=scope,
        username=None,
        patient_id=None,
        fhir_user=None,
        now=now,
        ttl=tokens.BACKEND_TTL,
    )
    return {
        "access_token": value,
        "token_type": "Bearer",
        "expires_in": tokens.BACKEND_TTL,
        "scope": scope,
    }


_GRANTS = {
    "authorization_code": _grant_code,
    "refresh_token": _grant_refresh,
    "client_credentials": _grant_client_credentials,
}


@bp.post("/oauth/token")
def token() -> Response:
    """The token endpoint."""
    grant_type = request.form.get("grant_type", "")
    handler = _GRANTS.get(grant_type)
    now = _now()
    client_id: str | None = None
    try:
        if handler is None:
            raise OAuthError(400, "unsupported_grant_type", "unsupported grant_type")
        with write_tx(_engine()) as conn:
            client = _authenticate_client(conn, now, allow_public=True)
            client_id = client.client_id
            if grant_type == "client_credentials" and client.public:
                raise OAuthError(401, "invalid_client", "public clients cannot use this grant")
            if grant_type not in client.grant_types:
                raise OAuthError(400, "unauthorized_client", "grant_type not allowed for client")
            result = handler(conn, client, now)
            if isinstance(result, dict):
                _audit(conn, _token_audit(client_id, grant_type, 0, "token issued"))
        # Failures that change state (a reused code revokes its tokens) commit before the error.
        if isinstance(result, OAuthError):
            _state().tokens.clear()
            raise result
    except OAuthError as e:
        log.info("token refused", extra={"client_id": client_id, "error": e.error})
        with write_tx(_engine()) as conn:
            _audit(conn, _token_audit(client_id, grant_type or None, 4, e.error))
        raise
    log.info("token issued", extra={"client_id": client_id, "grant_type": grant_type})
    return _json(result, 200, NO_STORE)


# --- introspection and revocation -----------------------------------------------------------


def _bearer_caller(conn: Connection, now: int) -> bool:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() != "bearer ":
        return False
    tok = tokens.find_token(conn, auth[7:].strip())
    if tok is None or tok.kind != "access" or not tok.active(now):
        return False
    client = get_client(conn, tok.client_id)
    return client is not None and not client.revoked and not client.public


@bp.post("/oauth/introspect")
def introspect() -> Response:
    """RFC 7662 introspection for confidential clients and bearers of their tokens."""
    now = _now()
    with write_tx(_engine()) as conn:
        if not _bearer_caller(conn, now):
            try:
                _authenticate_client(conn, now, allow_public=False)
            except OAuthError as e:
                e.headers.setdefault("WWW-Authenticate", 'Bearer realm="fhirbill"')
                raise
        tok = tokens.find_token(conn, request.form.get("token", ""))
        client = get_client(conn, tok.client_id) if tok else None
    if tok is None or not tok.active(now) or client is None or client.revoked:
        return _json({"active": False}, 200, NO_STORE)
    body: dict[str, Any] = {
        "active": True,
        "scope": tok.scope,
        "client_id": tok.client_id,
        "exp": tok.expires_at,
        "iat": tok.issued_at,
        "iss": _settings().base_url,
        "token_type": "Bearer" if tok.kind == "access" else "refresh_token",
    }
    if tok.kind == "access":
        body["aud"] = _settings().base_url
    if tok.username:
        body["sub"] = tok.username
    if tok.patient_id:
        body["patient"] = tok.patient_id
    if tok.fhir_user:
        body["fhirUser"] = _fhir_user_url(tok.fhir_user)
    return _json(body, 200, NO_STORE)


@bp.post("/oauth/revoke")
def revoke() -> Response:
    """RFC 7009 revocation; unknown tokens and other clients' tokens answer 200 and change nothing."""
    now = _now()
    with write_tx(_engine()) as conn:
        client = _authenticate_client(conn, now, allow_public=True)
        value = request.form.get("token")
        if not value:
            raise OAuthError(400, "invalid_request", "token is required")
        tok = tokens.find_token(conn, value)
        if tok is not None and tok.client_id == client.client_id:
            tokens.revoke(conn, tok)
    _state().tokens.clear()
    return Response(status=200, headers=NO_STORE)
