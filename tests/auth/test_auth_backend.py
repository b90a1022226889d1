"""Backend services (private_key_jwt RS384/ES384), introspection, revocation, over real HTTP."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from smart_support import REDIRECT, Live, SmartPrivateKeyJWT, launch
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from fhirbill.auth.access import authenticate, require
from fhirbill.fhir.errors import FHIRError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, {"kid": kid}, private=True)


def ec_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-384", {"kid": kid}, private=True)


def public_jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


@pytest.fixture(scope="module")
def rs_key() -> RSAKey:
    return rsa_key("rs-1")


@pytest.fixture(scope="module")
def es_key() -> ECKey:
    return ec_key("es-1")


@pytest.fixture(scope="module")
def jwks_server(es_key: ECKey) -> Iterator[str]:
    """A client's JWKS served from its own URL (keys by reference)."""
    body = json.dumps(public_jwks(es_key))

    @Request.application
    def serve(request: Request) -> Response:
        return Response(body, mimetype="application/json")

    server = make_server("127.0.0.1", 0, serve)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/jwks.json"
    server.shutdown()
    thread.join(5)
    server.server_close()


@pytest.fixture
def ehr(live: Live, rs_key: RSAKey) -> dict[str, str]:
    return live.client(
        name="ehr",
        grant_type="client_credentials",
        jwks=public_jwks(rs_key),
        scope="system/Claim.c system/Coverage.rs system/AuditEvent.rs",
    )


@pytest.fixture
def payer(live: Live, jwks_server: str) -> dict[str, str]:
    return live.client(
        name="payer",
        grant_type="client_credentials",
        jwks_uri=jwks_server,
        scope="system/ClaimResponse.cru",
    )


def backend(live: Live, client: dict[str, str], key: RSAKey | ECKey, alg: str) -> OAuth2Session:
    auth = SmartPrivateKeyJWT(live.urls["token"], headers={"kid": key.kid}, alg=alg)
    return OAuth2Session(client["client_id"], key, token_endpoint_auth_method=auth)


def assertion(
    client_id: str,
    key: Any,
    aud: str,
    *,
    alg: str = "RS384",
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 240, "jti": uuid.uuid4().hex}
    body.update(claims)
    h = {"alg": alg, "typ": "JWT", "kid": getattr(key, "kid", None)} | (header or {})
    h = {k: v for k, v in h.items() if v is not None}
    return jwt.encode(h, {k: v for k, v in body.items() if v is not None}, key, algorithms=[alg])


def token_request(live: Live, signed: str, scope: str = "system/Claim.c", **extra: str) -> requests.Response:
    data = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
    } | extra
    return requests.post(live.urls["token"], data=data, timeout=10)


def test_rs384_by_value(live: Live, ehr: dict[str, str], rs_key: RSAKey) -> None:
    token = backend(live, ehr, rs_key, "RS384").fetch_token(
        live.urls["token"], grant_type="client_credentials", scope="system/Claim.c"
    )
    assert token["token_type"] == "Bearer"
    assert 0 < token["expires_in"] <= 300
    assert token["scope"] == "system/Claim.c"
    assert "refresh_token" not in token
    principal = authenticate(live.engine, f"Bearer {token['access_token']}")
    assert require(principal, "Claim", "c").context == "system"
    with pytest.raises(FHIRError) as e:
        require(principal, "Claim", "r")  # an EHR with system/Claim.c can POST but not GET
    assert e.value.status == 403


def test_es384_by_jwks_uri(live: Live, payer: dict[str, str], es_key: ECKey) -> None:
    token = backend(live, payer, es_key, "ES384").fetch_token(
        live.urls["token"], grant_type="client_credentials", scope="system/ClaimResponse.cru"
    )
    principal = authenticate(live.engine, f"Bearer {token['access_token']}")
    require(principal, "ClaimResponse", "r")
    with pytest.raises(FHIRError):
        require(principal, "ExplanationOfBenefit", "r")


def test_authlib_default_lifetime_is_refused(live: Live, ehr: dict[str, str], rs_key: RSAKey) -> None:
    auth = PrivateKeyJWT(live.urls["token"], headers={"kid": rs_key.kid}, alg="RS384")
    sess = OAuth2Session(ehr["client_id"], rs_key, token_endpoint_auth_method=auth)
    with pytest.raises(Exception) as e:
        sess.fetch_token(live.urls["token"], grant_type="client_credentials", scope="system/Claim.c")
    assert "invalid_client" in str(e.value)


def test_scope_outside_registration(live: Live, ehr: dict[str, str], rs_key: RSAKey) -> None:
    for scope in ("system/ExplanationOfBenefit.rs", "system/*.rs", "patient/Claim.rs", ""):
        r = token_request(live, assertion(ehr["client_id"], rs_key, live.urls["token"]), scope)
        assert r.status_code == 400 and r.json()["error"] == "invalid_scope", scope


def test_audit_events_only_by_name(live: Live, ehr: dict[str, str], rs_key: RSAKey) -> None:
    r = token_request(live, assertion(ehr["client_id"], rs_key, live.urls["token"]), "system/AuditEvent.rs")
    assert r.status_code == 200
    principal = authenticate(live.engine, f"Bearer {r.json()['access_token']}")
    require(principal, "AuditEvent", "s")
    with pytest.raises(FHIRError):
        require(principal, "AuditEvent", "d")


def _bad_cases(ehr: dict[str, str], rs_key: RSAKey, token_url: str) -> dict[str, str]:
    cid = ehr["client_id"]
    now = int(time.time())
    other = rsa_key("rs-1")  # same kid, different key: the signature fails
    return {
        "bad signature": assertion(cid, other, token_url),
        "wrong aud": assertion(cid, rs_key, token_url.replace("/token", "/authorize")),
        "aud is the issuer": assertion(cid, rs_key, token_url.rsplit("/oauth", 1)[0] + "/fhir"),
        "expired": assertion(cid, rs_key, token_url, exp=now - 120),
        "too far ahead": assertion(cid, rs_key, token_url, exp=now + 3600),
        "no exp": assertion(cid, rs_key, token_url, exp=None),
        "no jti": assertion(cid, rs_key, token_url, jti=None),
        "iss != sub": assertion(cid, rs_key, token_url, sub="someone-else"),
        "unknown client": assertion("nobody", rs_key, token_url),
        "unknown kid": assertion(cid, rs_key, token_url, header={"kid": "nope"}),
        "no kid": assertion(cid, RSAKey.import_key(rs_key.as_pem(private=True)), token_url),
        "unregistered jku": assertion(cid, rs_key, token_url, header={"jku": "https://evil/jwks"}),
        "RS256": assertion(cid, rs_key, token_url, alg="RS256"),
        "HS256": assertion(cid, OctKey.import_key(b"k" * 32), token_url, alg="HS256"),
        "none": _unsigned(cid, token_url),
        "garbage": "not.a.jwt",
    }


def _unsigned(cid: str, aud: str) -> str:
    import base64

    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    claims = {"iss": cid, "sub": cid, "aud": aud, "exp": int(time.time()) + 60, "jti": "x"}
    return f"{b64({'alg': 'none', 'kid': 'rs-1'})}.{b64(claims)}."


def test_bad_assertions_are_invalid_client(live: Live, ehr: dict[str, str], rs_key: RSAKey) -> None:
    for name, signed in _bad_cases(ehr, rs_key, live.urls["token"]).items():
        r = token_request(live, signed)
        assert r.status_code == 401, name
        assert r.json()["error"] == "invalid_client", name
        assert "access_token" not in r.json()


def test_replayed_jti(live: Live, ehr: dict[str, str], rs_key: RSAKey) -> None:
    signed = assertion(ehr["client_id"], rs_key, live.urls["token"])
    assert token_request(live, signed).status_code == 200
    r = token_request(live, signed)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_client_id_must_match_assertion(live: Live, ehr: dict[str, str], rs_key: RSAKey) -> None:
    signed = assertion(ehr["client_id"], rs_key, live.urls["token"])
    assert token_request(live, signed, client_id="other").status_code == 401


def test_bad_assertion_type(live: Live, ehr: dict[str, str], rs_key: RSAKey) -> None:
    signed = assertion(ehr["client_id"], rs_key, live.urls["token"])
    r = token_request(live, signed, client_assertion_type="urn:bogus")
    assert r.status_code == 401


def test_public_client_cannot_use_client_credentials(live: Live) -> None:
    app = live.client(name="public", grant_type="authorization_code", redirect_uris=[REDIRECT], public=True)
    r = requests.post(
        live.urls["token"],
        data={"grant_type": "client_credentials", "client_id": app["client_id"], "scope": "system/*.rs"},
        timeout=10,
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_symmetric_backend_client(live: Live) -> None:
    c = live.client(name="sym", grant_type="client_credentials", secret=True, scope="system/*.rs")
    r = requests.post(
        live.urls["token"],
        data={"grant_type": "client_credentials", "scope": "system/Coverage.rs"},
        auth=(c["client_id"], c["client_secret"]),
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["expires_in"] <= 300


# --- introspection and revocation ------------------------------------------------------------


@pytest.fixture
def patient_app(live: Live) -> dict[str, str]:
    return live.client(
        name="patient app",
        grant_type="authorization_code",
        redirect_uris=[REDIRECT],
        public=True,
        scope="openid fhirUser launch/patient offline_access patient/*.rs",
    )


@pytest.fixture
def introspector(live: Live) -> dict[str, str]:
    return live.client(name="rs", grant_type="client_credentials", secret=True, scope="system/*.rs")


def test_introspection(live: Live, patient_app: dict[str, str], introspector: dict[str, str]) -> None:
    _, token = launch(live, patient_app, "openid fhirUser launch/patient offline_access patient/*.rs")
    auth = (introspector["client_id"], introspector["client_secret"])
    r = requests.post(live.urls["introspect"], data={"token": token["access_token"]}, auth=auth, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["active"] is True
    assert body["scope"] == token["scope"]
    assert body["client_id"] == patient_app["client_id"]
    assert body["patient"] == "pat-a"
    assert body["exp"] > time.time()
    idt = jwt.decode(
        token["id_token"], RSAKey.import_key(requests.get(live.urls["jwks"], timeout=10).json()["keys"][0])
    )
    assert (body["iss"], body["sub"], body["fhirUser"]) == (
        idt.claims["iss"],
        idt.claims["sub"],
        idt.claims["fhirUser"],
    )
    r = requests.post(live.urls["introspect"], data={"token": "garbage"}, auth=auth, timeout=10)
    assert r.json() == {"active": False}
    # a bearer token issued to a confidential client may introspect
    bearer = requests.post(
        live.urls["token"],
        data={"grant_type": "client_credentials", "scope": "system/Coverage.rs"},
        auth=auth,
        timeout=10,
    ).json()["access_token"]
    r = requests.post(
        live.urls["introspect"],
        data={"token": token["access_token"]},
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=10,
    )
    assert r.json()["active"] is True
    # no credentials, or a public client's bearer token: 401
    assert requests.post(live.urls["introspect"], data={"token": "x"}, timeout=10).status_code == 401
    r = requests.post(
        live.urls["introspect"],
        data={"token": "x"},
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=10,
    )
    assert r.status_code == 401


def test_revoking_refresh_token_revokes_access(
    live: Live, patient_app: dict[str, str], introspector: dict[str, str]
) -> None:
    sess, token = launch(live, patient_app, "launch/patient offline_access patient/*.rs")
    r = requests.post(
        live.urls["revoke"],
        data={"token": token["refresh_token"], "client_id": patient_app["client_id"]},
        timeout=10,
    )
    assert r.status_code == 200
    assert authenticate(live.engine, f"Bearer {token['access_token']}") is None
    auth = (introspector["client_id"], introspector["client_secret"])
    for t in (token["access_token"], token["refresh_token"]):
        r = requests.post(live.urls["introspect"], data={"token": t}, auth=auth, timeout=10)
        assert r.json() == {"active": False}
    r = requests.post(
        live.urls["token"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": patient_app["client_id"],
        },
        timeout=10,
    )
    assert r.status_code == 400


def test_revocation_of_unknown_or_foreign_tokens(
    live: Live, patient_app: dict[str, str], introspector: dict[str, str]
) -> None:
    _, token = launch(live, patient_app, "launch/patient patient/*.rs")
    auth = (introspector["client_id"], introspector["client_secret"])
    assert (
        requests.post(live.urls["revoke"], data={"token": "unknown"}, auth=auth, timeout=10).status_code
        == 200
    )
    # another client cannot revoke it
    requests.post(live.urls["revoke"], data={"token": token["access_token"]}, auth=auth, timeout=10)
    assert authenticate(live.engine, f"Bearer {token['access_token']}") is not None
    # the owning public client can
    requests.post(
        live.urls["revoke"],
        data={"token": token["access_token"], "client_id": patient_app["client_id"]},
        timeout=10,
    )
    assert authenticate(live.engine, f"Bearer {token['access_token']}") is None


def test_token_audit_events(live: Live, ehr: dict[str, str], rs_key: RSAKey) -> None:
    before = len(live.events)
    assert token_request(live, assertion(ehr["client_id"], rs_key, live.urls["token"])).status_code == 200
    assert token_request(live, "garbage").status_code == 401
    ok, failed = live.events[before:]
    assert ok["outcome"] == "0" and ok["agent"][0]["who"]["identifier"]["value"] == ehr["client_id"]
    assert failed["outcome"] == "4"
    assert "garbage" not in json.dumps(failed)


def test_no_secrets_in_logs(
    live: Live,
    patient_app: dict[str, str],
    ehr: dict[str, str],
    rs_key: RSAKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("authlib").setLevel(logging.DEBUG)
    _, token = launch(live, patient_app, "launch/patient offline_access patient/*.rs")
    signed = assertion(ehr["client_id"], rs_key, live.urls["token"])
    backend_token = token_request(live, signed).json()["access_token"]
    text = "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)
    for secret in (token["access_token"], token["refresh_token"], signed, backend_token, "correct horse"):
        assert secret not in text
