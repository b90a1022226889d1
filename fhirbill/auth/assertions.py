"""private_key_jwt client assertions (SMART Backend Services, RFC 7523): RS384 and ES384 only."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import requests
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import Connection

from fhirbill.auth.clients import Client, get_client
from fhirbill.auth.tokens import use_jti

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = {"RS384": ("RSA", None), "ES384": ("EC", "P-384")}
MAX_LIFETIME = 300
SKEW = 10

JwksFetcher = Callable[[str], dict[str, Any]]


class InvalidAssertion(Exception):
    """The assertion is not acceptable; the message is safe to return (no assertion content)."""


def fetch_jwks(url: str) -> dict[str, Any]:
    """A client's JWK Set from its registered jwks_uri (not cached: keys may rotate)."""
    r = requests.get(url, headers={"Accept": "application/json"}, timeout=5, allow_redirects=False)
    r.raise_for_status()
    data = r.json()
    if not isinstance(data, dict):
        raise ValueError("not a JWK Set")
    return data


def _pick_key(keyset: dict[str, Any], kid: str, alg: str) -> RSAKey | ECKey:
    kty, crv = ALGORITHMS[alg]
    matches = [
        k
        for k in keyset.get("keys", [])
        if isinstance(k, dict) and k.get("kid") == kid and k.get("kty") == kty and "d" not in k
    ]
    if crv is not None:
        matches = [k for k in matches if k.get("crv") == crv]
    if len(matches) != 1:
        raise InvalidAssertion("the assertion's kid does not resolve to exactly one key")
    key = KeySet.import_key_set({"keys": matches}).keys[0]
    assert isinstance(key, RSAKey | ECKey)
    return key


def verify(
    conn: Connection,
    assertion: str,
    *,
    token_url: str,
    now: int,
    form_client_id: str | None = None,
    fetch: JwksFetcher = fetch_jwks,
) -> Client:
    """The client an assertion authenticates; raises InvalidAssertion on any failure."""
    try:
        obj = jws.extract_compact(assertion.encode())
        header = obj.headers()
        claims = json.loads(obj.payload)
    except (JoseError, ValueError, UnicodeDecodeError) as e:
        raise InvalidAssertion("the client assertion is not a valid JWT") from e
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise InvalidAssertion("the client assertion must be signed with RS384 or ES384")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidAssertion("the client assertion needs a kid")
    if not isinstance(claims, dict):
        raise InvalidAssertion("the client assertion has no claims")
    iss = claims.get("iss")
    if not isinstance(iss, str) or claims.get("sub") != iss:
        raise InvalidAssertion("iss and sub must both be the client_id")
    if form_client_id is not None and form_client_id != iss:
        raise InvalidAssertion("client_id does not match the assertion")
    client = get_client(conn, iss)
    if client is None or client.revoked or client.auth_method != "private_key_jwt":
        raise InvalidAssertion("unknown client")
    jku = header.get("jku")
    if jku is not None and jku != client.jwks_uri:
        raise InvalidAssertion("jku is not the registered JWKS URL")
    if client.jwks is not None:
        keyset = client.jwks
    elif client.jwks_uri:
        try:
            keyset = fetch(client.jwks_uri)
        except (requests.RequestException, ValueError) as e:
            raise InvalidAssertion("the client's JWKS could not be retrieved") from e
    else:
        raise InvalidAssertion("the client has no keys")
    key = _pick_key(keyset, kid, alg)
    try:
        jwt.decode(assertion, key, algorithms=[alg])
    except (JoseError, ValueError) as e:
        raise InvalidAssertion("the client assertion's signature does not verify") from e
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if token_url not in auds:
        raise InvalidAssertion("aud must be the token endpoint")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise InvalidAssertion("exp is required")
    if exp <= now - SKEW:
        raise InvalidAssertion("the client assertion has expired")
    if exp > now + MAX_LIFETIME + SKEW:
        raise InvalidAssertion("exp must be at most 5 minutes ahead")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + SKEW:
        raise InvalidAssertion("the client assertion is not yet valid")
    iat = claims.get("iat")
    if isinstance(iat, int | float) and iat > now + SKEW:
        raise InvalidAssertion("the client assertion was issued in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise InvalidAssertion("jti is required")
    if not use_jti(conn, iss, jti, int(exp) + SKEW, now):
        raise InvalidAssertion("the client assertion's jti was used before")
    return client
