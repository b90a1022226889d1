"""Registered OAuth clients: registration, lookup and secret checks (services taking a Connection)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from fhirbill.auth import scopes as sc
from fhirbill.store.auth_tables import auth_clients, auth_tokens

GRANT_TYPES = ("authorization_code", "client_credentials")
AUTH_METHODS = ("none", "client_secret_basic", "private_key_jwt")
DEFAULT_SCOPES = {
    "authorization_code": "openid fhirUser launch launch/patient offline_access online_access "
    "patient/*.rs user/*.rs",
    "client_credentials": "system/*.rs",
}


@dataclass(frozen=True)
class Client:
    """A registered client."""

    client_id: str
    name: str
    auth_method: str
    grant_types: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    origins: tuple[str, ...]
    scope: str
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    revoked: bool
    secret_hash: str | None = None

    @property
    def public(self) -> bool:
        """A client that cannot keep a secret."""
        return self.auth_method == "none"

    def summary(self) -> dict[str, Any]:
        """The registration as JSON, without secrets."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "token_endpoint_auth_method": self.auth_method,
            "grant_types": list(self.grant_types),
            "redirect_uris": list(self.redirect_uris),
            "origins": list(self.origins),
            "scope": self.scope,
            "jwks_uri": self.jwks_uri,
            "has_jwks": self.jwks is not None,
            "revoked": self.revoked,
        }


def digest(value: str) -> str:
    """SHA-256 hex of a high-entropy secret (tokens, codes, client secrets): stored, never the value."""
    return hashlib.sha256(value.encode()).hexdigest()


def _client(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        name=row.name,
        auth_method=row.auth_method,
        grant_types=tuple(row.grant_types.split()),
        redirect_uris=tuple(json.loads(row.redirect_uris)),
        origins=tuple(json.loads(row.origins)),
        scope=row.scope,
        jwks=json.loads(row.jwks) if row.jwks else None,
        jwks_uri=row.jwks_uri,
        revoked=bool(row.revoked),
        secret_hash=row.secret_hash,
    )


def _check_jwks(jwks: dict[str, Any]) -> None:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError("the JWKS must be an object with a non-empty 'keys' array")
    for k in keys:
        if not isinstance(k, dict) or k.get("kty") not in ("RSA", "EC") or not k.get("kid"):
            raise ValueError("each JWKS key needs kty RSA or EC and a kid")
        if "d" in k:
            raise ValueError("the JWKS must hold public keys only")


def add_client(
    conn: Connection,
    *,
    name: str,
    grant_type: str,
    redirect_uris: Iterable[str] = (),
    origins: Iterable[str] = (),
    scope: str | None = None,
    public: bool = False,
    secret: bool = False,
    jwks: dict[str, Any] | None = None,
    jwks_uri: str | None = None,
    client_id: str | None = None,
) -> dict[str, str]:
    """Register a client; returns {"client_id"} plus "client_secret" for a symmetric client.

    Exactly one of public / secret / jwks / jwks_uri chooses how it authenticates.
    """
    if grant_type not in GRANT_TYPES:
        raise ValueError(f"grant_type must be one of {', '.join(GRANT_TYPES)}")
    if [bool(public), bool(secret), jwks is not None, bool(jwks_uri)].count(True) != 1:
        raise ValueError("choose exactly one of public, secret, jwks, jwks_uri")
    uris = list(dict.fromkeys(redirect_uris))
    if grant_type == "authorization_code" and not uris:
        raise ValueError("an authorization_code client needs at least one redirect URI")
    if grant_type == "client_credentials" and public:
        raise ValueError("a client_credentials client must be confidential")
    if jwks is not None:
        _check_jwks(jwks)
    method = "none" if public else "client_secret_basic" if secret else "private_key_jwt"
    scope = " ".join(sc.split(scope if scope is not None else DEFAULT_SCOPES[grant_type]))
    # Hex, not url-safe base64: an id starting with "-" reads as an option on a command line.
    cid = client_id or secrets.token_hex(16)
    out = {"client_id": cid}
    secret_hash = None
    if secret:
        out["client_secret"] = secrets.token_urlsafe(32)
        secret_hash = digest(out["client_secret"])
    grants = [grant_type] + (["refresh_token"] if grant_type == "authorization_code" else [])
    conn.execute(
        auth_clients.insert().values(
            client_id=cid,
            name=name,
            auth_method=method,
            secret_hash=secret_hash,
            grant_types=" ".join(grants),
            redirect_uris=json.dumps(uris),
            origins=json.dumps(list(dict.fromkeys(o.rstrip("/") for o in origins))),
            scope=scope,
            jwks=json.dumps(jwks) if jwks is not None else None,
            jwks_uri=jwks_uri or None,
            created_at=int(time.time()),
            revoked=False,
        )
    )
    return out


def get_client(conn: Connection, client_id: str) -> Client | None:
    """A registered client (revoked ones included; callers check)."""
    row = conn.execute(select(auth_clients).where(auth_clients.c.client_id == client_id)).first()
    return _client(row) if row else None


def list_clients(conn: Connection) -> list[dict[str, Any]]:
    """Every registration, without secrets."""
    rows = conn.execute(select(auth_clients).order_by(auth_clients.c.created_at)).all()
    return [_client(r).summary() for r in rows]


def revoke_client(conn: Connection, client_id: str) -> bool:
    """Disable a client and revoke all its tokens; False if there is no such client."""
    n = conn.execute(
        update(auth_clients).where(auth_clients.c.client_id == client_id).values(revoked=True)
    ).rowcount
    conn.execute(update(auth_tokens).where(auth_tokens.c.client_id == client_id).values(revoked=True))
    return bool(n)


def check_secret(client: Client, secret: str) -> bool:
    """Constant-time comparison of a presented client secret."""
    if not client.secret_hash:
        return False
    return hmac.compare_digest(client.secret_hash, digest(secret))


def all_origins(conn: Connection) -> set[str]:
    """Browser origins registered by live clients (for CORS)."""
    rows = conn.execute(select(auth_clients.c.origins).where(auth_clients.c.revoked.is_(False))).all()
    return {o for r in rows for o in json.loads(r.origins)}
