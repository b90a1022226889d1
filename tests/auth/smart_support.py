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
