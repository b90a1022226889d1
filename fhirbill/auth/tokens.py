"""Codes, tokens, EHR launch contexts and assertion jtis: stored as hashes, checked against the clock."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.exc import IntegrityError

from fhirbill.auth.clients import digest
from fhirbill.store.auth_tables import auth_codes, auth_jtis, auth_launches, auth_tokens

CODE_TTL = 60
LAUNCH_TTL = 3600
ACCESS_TTL = 3600
BACKEND_TTL = 300
OFFLINE_TTL = 90 * 86400
ONLINE_TTL = 86400


@dataclass(frozen=True)
class Token:
    """A stored token's record (never the token itself)."""

    token_hash: str
    kind: str
    grant_id: str
    client_id: str
    scope: str
    username: str | None
    patient_id: str | None
    fhir_user: str | None
    issued_at: int
    expires_at: int
    revoked: bool

    def active(self, now: int) -> bool:
        """Neither revoked nor expired."""
        return not self.revoked and now < self.expires_at


def _token(row: Any) -> Token:
    return Token(
        row.token_hash,
        row.kind,
        row.grant_id,
        row.client_id,
        row.scope,
        row.username,
        row.patient_id,
        row.fhir_user,
        int(row.issued_at),
        int(row.expires_at),
        bool(row.revoked),
    )


def new_launch(
    conn: Connection, patient_id: str | None, *, now: int | None = None, ttl: int = LAUNCH_TTL
) -> str:
    """An EHR launch string that carries a patient context to the authorize endpoint."""
    now = int(time.time()) if now is None else now
    launch = secrets.token_urlsafe(24)
    conn.execute(
        auth_launches.insert().values(launch_hash=digest(launch), patient_id=patient_id, expires_at=now + ttl)
    )
    return launch


def launch_patient(conn: Connection, launch: str, now: int) -> tuple[bool, str | None]:
    """(known and unexpired, patient id) for a launch string."""
    row = conn.execute(select(auth_launches).where(auth_launches.c.launch_hash == digest(launch))).first()
    if row is None or row.expires_at <= now:
        return False, None
    return True, row.patient_id


def create_code(
    conn: Connection,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    code_challenge: str,
    username: str | None,
    patient_id: str | None,
    fhir_user: str | None,
    nonce: str | None,
    now: int,
) -> str:
    """A single-use authorization code."""
    code = secrets.token_urlsafe(32)
    conn.execute(
        auth_codes.insert().values(
            code_hash=digest(code),
            grant_id=secrets.token_hex(16),
            client_id=client_id,
            redirect_uri=redirect_uri,
            scope=scope,
            code_challenge=code_challenge,
            username=username,
            patient_id=patient_id,
            fhir_user=fhir_user,
            nonce=nonce,
            expires_at=now + CODE_TTL,
        )
    )
    return code


def find_code(conn: Connection, code: str) -> Any:
    """The stored code row, used or not, or None."""
    return conn.execute(select(auth_codes).where(auth_codes.c.code_hash == digest(code))).first()


def consume_code(conn: Connection, code_hash: str, now: int) -> bool:
    """Mark a code used; False if it already was (a race or a replay)."""
    res = conn.execute(
        update(auth_codes)
        .where(auth_codes.c.code_hash == code_hash)
        .where(auth_codes.c.used_at.is_(None))
        .values(used_at=now)
    )
    return res.rowcount == 1


def revoke_grant(conn: Connection, grant_id: str) -> None:
    """Revoke every token issued under a grant (a code and the refreshes that followed it)."""
    conn.execute(update(auth_tokens).where(auth_tokens.c.grant_id == grant_id).values(revoked=True))


def issue(
    conn: Connection,
    *,
    kind: str,
    grant_id: str,
    client_id: str,
    scope: str,
    username: str | None,
    patient_id: str | None,
    fhir_user: str | None,
    now: int,
    ttl: int,
) -> str:
    """A new opaque token; only its hash is stored."""
    value = secrets.token_urlsafe(32)
    conn.execute(
        auth_tokens.insert().values(
            token_hash=digest(value),
            kind=kind,
            grant_id=grant_id,
            client_id=client_id,
            scope=scope,
            username=username,
            patient_id=patient_id,
            fhir_user=fhir_user,
            issued_at=now,
            expires_at=now + ttl,
            revoked=False,
        )
    )
    return value


def find_token(conn: Connection, value: str) -> Token | None:
    """The record of a token, active or not."""
    if not value or len(value) > 512:
        return None
    row = conn.execute(select(auth_tokens).where(auth_tokens.c.token_hash == digest(value))).first()
    return _token(row) if row else None


def revoke(conn: Connection, token: Token) -> None:
    """Revoke a token; revoking a refresh token revokes its whole grant."""
    if token.kind == "refresh":
        revoke_grant(conn, token.grant_id)
    else:
        conn.execute(
            update(auth_tokens).where(auth_tokens.c.token_hash == token.token_hash).values(revoked=True)
        )


def use_jti(conn: Connection, iss: str, jti: str, expires_at: int, now: int) -> bool:
    """Record an assertion's jti; False if this issuer used it before (a replay)."""
    conn.execute(delete(auth_jtis).where(auth_jtis.c.expires_at < now - 600))
    # A nested transaction so that the duplicate does not abort the caller's transaction.
    try:
        with conn.begin_nested():
            conn.execute(auth_jtis.insert().values(iss=iss, jti=jti, expires_at=expires_at))
    except IntegrityError:
        return False
    return True


def revoke_one(conn: Connection, token_hash: str) -> None:
    """Revoke one token only (a rotated-out refresh token)."""
    conn.execute(update(auth_tokens).where(auth_tokens.c.token_hash == token_hash).values(revoked=True))
