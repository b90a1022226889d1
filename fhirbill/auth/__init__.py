"""SMART on FHIR authorization: scope algebra, the authorization server, access decisions, audit.

The lead wires it from create_app with `init_app(app)`; the app must hold the Server (with
`.settings` and `.engine`) in `app.extensions["fhirbill"]`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy import Connection


class _RedactAuthlib(logging.Filter):
    """Authlib logs whole token dicts at DEBUG; drop its DEBUG records outright."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def init_app(
    app: Flask,
    *,
    audit: Callable[[Connection, dict[str, Any]], None] | None = None,
    signing_key_pem: str | None = None,
) -> None:
    """Register the authorization server blueprint and load (or create) the signing key.

    `audit(conn, event)` is called with an AuditEvent dict for each token issued or refused,
    inside the request's transaction.
    """
    from fhirbill.auth import keys
    from fhirbill.auth.access import TokenCache
    from fhirbill.auth.views import AuthState, bp

    server = app.extensions["fhirbill"]
    pem = signing_key_pem or server.settings.extra.get("auth_signing_key_pem")
    key = keys.load_or_create(server.settings.instance_dir, pem)
    app.extensions["fhirbill_auth"] = AuthState(
        key=key, audit=audit, tokens=TokenCache(server.settings.token_cache_seconds)
    )
    logging.getLogger("authlib").addFilter(_RedactAuthlib())
    app.register_blueprint(bp)
