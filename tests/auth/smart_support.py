"""Shared helpers for the SMART tests: the app builder, the authorize form, Authlib sessions."""

from __future__ import annotations

import html.parser
import socket
from dataclasses import dataclass
from typing import Any

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from flask import Flask
from sqlalchemy import Engine

from fhirbill import create_app
from fhirbill.auth import admin
from fhirbill.settings import Settings
from fhirbill.store.db import write_tx
from fhirbill.store.migrate import upgrade

PASSWORD = "correct horse battery staple"
REDIRECT = "http://127.0.0.1:9/callback"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_app(settings: Settings) -> tuple[Flask, Engine, list[dict[str, Any]]]:
    """The real app on a migrated database; token AuditEvents are also collected in a list."""
    app = create_app(settings)
    engine = app.extensions["fhirbill"].engine
    upgrade(engine)
    events: list[dict[str, Any]] = []
    state = app.extensions["fhirbill_auth"]
    stored = state.audit

    def collect(conn: Any, event: dict[str, Any]) -> None:
        events.append(event)
        if stored is not None:
            stored(conn, event)

    state.audit = collect
    return app, engine, events


@dataclass
class Live:
    base: str
    urls: dict[str, str]
    app: Flask
    engine: Engine
    events: list[dict[str, Any]]
    port: int

    def client(self, **kw: Any) -> dict[str, str]:
        with write_tx(self.engine) as conn:
            return admin.add_client(conn, **kw)


class FormParser(html.parser.HTMLParser):
    """The inputs of the authorize page's form."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: list[tuple[str, str]] = []
        self.checkboxes: list[tuple[str, str, bool]] = []
        self.names: set[str] = set()
        self.buttons: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input":
            self.names.add(a.get("name", ""))
            if a.get("type") == "hidden":
                self.hidden.append((a["name"], a.get("value", "")))
            elif a.get("type") == "checkbox":
                self.checkboxes.append((a["name"], a.get("value", ""), "checked" in a))
        elif tag == "button":
            self.buttons.append((a.get("name", ""), a.get("value", "")))


def parse_form(text: str) -> FormParser:
    p = FormParser()
    p.feed(text)
    return p


class SmartPrivateKeyJWT(PrivateKeyJWT):
    """Authlib's PrivateKeyJWT with the 5-minute lifetime SMART requires (its default is 1 h)."""

    def sign(self, auth: Any, token_endpoint: str) -> str:
        return private_key_jwt_sign(  # type: ignore[no-any-return]
            auth.client_secret,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            header=dict(self.headers or {}),
            alg=self.alg,
            expires_in=300,
        )


def app_session(live: Live, client: dict[str, str], scope: str, method: str | None = None) -> OAuth2Session:
    secret = client.get("client_secret")
    return OAuth2Session(
        client["client_id"],
        secret,
        scope=scope,
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method=method or ("client_secret_basic" if secret else "none"),
    )


def login_page(live: Live, url: str, method: str = "GET") -> requests.Response:
    if method == "GET":
        return requests.get(url, allow_redirects=False, timeout=10)
    base, _, query = url.partition("?")
    from urllib.parse import parse_qsl

    return requests.post(base, data=dict(parse_qsl(query)), allow_redirects=False, timeout=10)


def submit(
    live: Live,
    page: requests.Response,
    *,
    username: str = "alice",
    password: str = PASSWORD,
    decision: str = "allow",
    untick: tuple[str, ...] = (),
    patient: str | None = None,
) -> requests.Response:
    form = parse_form(page.text)
    data: list[tuple[str, str]] = list(form.hidden)
    data += [("username", username), ("password", password), ("decision", decision)]
    data += [(n, v) for n, v, checked in form.checkboxes if checked and v not in untick]
    if patient is not None:
        data.append(("patient", patient))
    return requests.post(live.urls["authorize"], data=data, allow_redirects=False, timeout=10)


def authorize(
    live: Live,
    client: dict[str, str],
    scope: str,
    *,
    session: OAuth2Session | None = None,
    method: str = "GET",
    **kw: Any,
) -> tuple[OAuth2Session, str, str]:
    """(session, redirect Location, code_verifier) after a login + consent."""
    sess = session or app_session(live, client, scope)
    verifier = generate_token(48)
    extra = {k: kw.pop(k) for k in ("launch",) if k in kw}
    url, _state = sess.create_authorization_url(
        live.urls["authorize"], code_verifier=verifier, aud=live.base, **extra
    )
    page = login_page(live, url, method)
    assert page.status_code == 200, page.text
    r = submit(live, page, **kw)
    assert r.status_code == 302, r.text
    return sess, r.headers["Location"], verifier


def launch(live: Live, client: dict[str, str], scope: str, **kw: Any) -> tuple[OAuth2Session, dict[str, Any]]:
    sess, location, verifier = authorize(live, client, scope, **kw)
    token = sess.fetch_token(live.urls["token"], authorization_response=location, code_verifier=verifier)
    return sess, dict(token)


# --- FHIR-layer helpers: tokens from real flows, requests with a bearer token, billing data -------

PATIENT_APP_SCOPES = "openid fhirUser launch/patient patient/*.cruds"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def fhir(live: Live, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
    """One FHIR request over HTTP; `path` is relative to the FHIR base."""
    headers = dict(kw.pop("headers", None) or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if "json" in kw:
        headers.setdefault("Content-Type", "application/fhir+json")
    return requests.request(method, f"{live.base}/{path.lstrip('/')}", headers=headers, timeout=20, **kw)


def backend_client(live: Live, scope: str, name: str = "backend") -> tuple[dict[str, str], Any]:
    """A backend-services client registered with an RS384 key: (client, private key)."""
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, {"kid": f"{name}-key"}, private=True)
    client = live.client(
        name=name,
        grant_type="client_credentials",
        jwks={"keys": [key.as_dict(private=False)]},
        scope=scope,
    )
    return client, key


def system_token(live: Live, client: dict[str, str], key: Any, scope: str) -> str:
    """A backend-services access token obtained with Authlib's PrivateKeyJWT (RS384)."""
    auth = SmartPrivateKeyJWT(live.urls["token"], headers={"kid": key.kid}, alg="RS384")
    sess = OAuth2Session(client["client_id"], key, token_endpoint_auth_method=auth)
    token = sess.fetch_token(live.urls["token"], grant_type="client_credentials", scope=scope)
    return str(token["access_token"])


def patient_app(live: Live, scope: str = PATIENT_APP_SCOPES) -> dict[str, str]:
    return live.client(
        name="patient app",
        grant_type="authorization_code",
        redirect_uris=[REDIRECT],
        public=True,
        scope=scope,
    )


def user_token(live: Live, client: dict[str, str], username: str, scope: str) -> dict[str, Any]:
    """The token response of a standalone launch by `username`."""
    _, token = launch(live, client, scope, username=username)
    return token


def billing(x: str) -> list[dict[str, Any]]:
    """Coverage, Claim, ClaimResponse, ExplanationOfBenefit and Account of Patient/pat-{x}."""
    pid = f"Patient/pat-{x}"
    ctype = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]
    }
    payer = {"reference": "Organization/org-payer"}
    return [
        {
            "resourceType": "Coverage",
            "id": f"cov-{x}",
            "status": "active",
            "beneficiary": {"reference": pid},
            "payor": [payer],
        },
        {
            "resourceType": "Claim",
            "id": f"claim-{x}",
            "identifier": [{"system": "urn:test:claim", "value": f"claim-{x}"}],
            "status": "active",
            "type": ctype,
            "use": "claim",
            "patient": {"reference": pid},
            "created": "2024-01-02",
            "provider": payer,
            "priority": {"coding": [{"code": "normal"}]},
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": f"Coverage/cov-{x}"}}],
        },
        {
            "resourceType": "ClaimResponse",
            "id": f"cr-{x}",
            "status": "active",
            "type": ctype,
            "use": "claim",
            "patient": {"reference": pid},
            "created": "2024-01-03",
            "insurer": payer,
            "outcome": "complete",
            "request": {"reference": f"Claim/claim-{x}"},
        },
        {
            "resourceType": "ExplanationOfBenefit",
            "id": f"eob-{x}",
            "status": "active",
            "type": ctype,
            "use": "claim",
            "patient": {"reference": pid},
            "created": "2024-01-04",
            "insurer": payer,
            "provider": payer,
            "outcome": "complete",
            "claim": {"reference": f"Claim/claim-{x}"},
            "insurance": [{"focal": True, "coverage": {"reference": f"Coverage/cov-{x}"}}],
        },
        {
            "resourceType": "Account",
            "id": f"acct-{x}",
            "status": "active",
            "subject": [{"reference": pid}],
        },
    ]


def load_billing(live: Live) -> None:
    """Both patients (with identifiers), a payer, and each patient's billing records."""
    from fhirbill.api.imports import write_one

    srv = live.app.extensions["fhirbill"]
    write_one(srv, {"resourceType": "Organization", "id": "org-payer", "name": "Payer"})
    for x in ("a", "b"):
        write_one(
            srv,
            {
                "resourceType": "Patient",
                "id": f"pat-{x}",
                "identifier": [{"system": "urn:test:mrn", "value": f"mrn-{x}"}],
                "name": [{"family": f"Patient{x.upper()}"}],
            },
        )
        for r in billing(x):
            write_one(srv, r)


def audit_rows(live: Live) -> list[dict[str, Any]]:
    """Every stored AuditEvent (after draining the buffer), oldest first."""
    import json

    from sqlalchemy import select

    from fhirbill.store.db import read_tx
    from fhirbill.store.tables import resources

    live.app.extensions["fhirbill.audit"].flush()
    q = select(resources.c.content).where(resources.c.res_type == "AuditEvent").order_by(resources.c.rid)
    with read_tx(live.engine) as conn:
        return [json.loads(c) for (c,) in conn.execute(q) if c]
