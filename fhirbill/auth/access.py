"""Request-time access decisions for the FHIR routes: who is calling, and may they do this."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from fhirbill.auth import scopes as sc
from fhirbill.auth.clients import digest
from fhirbill.auth.tokens import find_token
from fhirbill.fhir.errors import FHIRError
from fhirbill.store.db import read_tx

REALM = "fhirbill"


@dataclass(frozen=True)
class Principal:
    """The caller behind a valid access token."""

    client_id: str
    scopes: tuple[str, ...]  # exactly as granted
    patient: str | None  # launch context: a bare Patient id
    fhir_user: str | None  # relative reference, e.g. Practitioner/9 or Patient/123
    sub: str | None  # the user's subject (username); None for backend services
    expires_at: int = 0
    parsed: tuple[sc.Scope, ...] = field(default=(), repr=False, compare=False)

    @property
    def user_patient(self) -> str | None:
        """The Patient id a patient user is, whatever the launch context."""
        if self.fhir_user and self.fhir_user.startswith("Patient/"):
            return self.fhir_user.removeprefix("Patient/")
        return None


@dataclass(frozen=True)
class Grant:
    """Why an interaction is allowed, and the limits the FHIR layer must enforce.

    `patient` set: confine the interaction to that patient's records (EOB/Claim/ClaimResponse
    `.patient`, Coverage `.beneficiary`, Account `.subject`, others by compartment).
    `constraints` non-empty: a resource qualifies only if it matches one of these search
    parameter sets (granular v2 scopes, e.g. {"type": "...claim-type|pharmacy"}).
    """

    context: str  # system | user | patient
    patient: str | None
    constraints: tuple[dict[str, str], ...] = ()


def challenge(error: str | None = None, description: str | None = None) -> str:
    """A WWW-Authenticate value for a Bearer challenge (RFC 6750)."""
    value = f'Bearer realm="{REALM}"'
    if error:
        value += f', error="{error}"'
    if description:
        value += f', error_description="{description}"'
    return value


def unauthorized(
    description: str = "A valid bearer token is required.", error: str | None = "invalid_token"
) -> FHIRError:
    """401 with a Bearer WWW-Authenticate challenge, as an OperationOutcome."""
    return FHIRError.of(401, "login", description, **{"WWW-Authenticate": challenge(error)})


def reject_query_token(args: Mapping[str, Any]) -> None:
    """Refuse a token sent in the URL (it would land in access logs)."""
    if "access_token" in args:
        raise FHIRError.of(
            401,
            "login",
            "Send the access token in the Authorization header, never in the URL.",
            **{"WWW-Authenticate": challenge("invalid_request")},
        )


class TokenCache:
    """Access tokens this process verified recently, so a busy client costs no lookup per request.

    An entry lives `ttl` seconds at most and never past its token's expiry. Revocations made
    through this process clear the cache at once; one made elsewhere (another worker or host,
    the CLI) takes effect within `ttl`. A ttl of 0 looks every request up.
    """

    def __init__(self, ttl: float, capacity: int = 10_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, now: float) -> Principal | None:
        """The cached principal for a token digest, if still fresh."""
        hit = self._entries.get(key)
        if hit is None or hit[1] <= now:
            return None
        return hit[0]

    def put(self, key: str, principal: Principal, now: float) -> None:
        """Remember a verified principal for at most `ttl` seconds."""
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.capacity:
                self._entries.clear()  # rare; simpler and safer than an LRU
            self._entries[key] = (principal, min(now + self.ttl, principal.expires_at))

    def clear(self) -> None:
        """Forget everything (after any revocation)."""
        with self._lock:
            self._entries.clear()


def authenticate(
    engine: Engine,
    authorization_header: str | None,
    *,
    now: float | None = None,
    cache: TokenCache | None = None,
) -> Principal | None:
    """The principal of a valid Bearer access token, or None (missing, unknown, expired, revoked)."""
    if not authorization_header or authorization_header[:7].lower() != "bearer ":
        return None
    value = authorization_header[7:].strip()
    if not value or len(value) > 512:
        return None
    t = time.time() if now is None else now
    key = digest(value)
    if cache is not None and (hit := cache.get(key, t)) is not None:
        return hit
    with read_tx(engine) as conn:
        tok = find_token(conn, value)
    if tok is None or tok.kind != "access" or not tok.active(int(t)):
        return None
    tokens_ = tuple(sc.split(tok.scope))
    principal = Principal(
        client_id=tok.client_id,
        scopes=tokens_,
        patient=tok.patient_id,
        fhir_user=tok.fhir_user,
        sub=tok.username,
        expires_at=tok.expires_at,
        parsed=tuple(sc.parse_all(tokens_)),
    )
    if cache is not None:
        cache.put(key, principal, t)
    return principal


def require(principal: Principal | None, resource_type: str, letter: str) -> Grant:
    """The grant for an interaction (letter c/r/u/d/s), or FHIRError 401 (no principal) / 403."""
    if principal is None:
        raise unauthorized()
    scopes = principal.parsed or tuple(sc.parse_all(principal.scopes))
    for context in ("system", "user", "patient"):
        found = sc.constraints(scopes, context, resource_type, letter)
        if not found:
            continue
        if context == "system":
            patient = None
        elif context == "user":
            # A patient user's user/ scopes still reach only their own records.
            patient = principal.user_patient
        else:
            patient = principal.patient or principal.user_patient
            if patient is None:
                continue  # patient/ scopes without a patient context grant nothing
        constraints = () if found == [{}] else tuple(found)
        return Grant(context, patient, constraints)
    raise FHIRError.of(
        403,
        "forbidden",
        f"The access token's scopes do not allow this interaction on {resource_type}.",
    )
