"""SMART App Launch over real HTTP with Authlib's client: standalone, EHR, refresh, OIDC."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from joserfc import jwt
from joserfc.jwk import KeySet
from smart_support import REDIRECT, Live, app_session, authorize, launch, parse_form, submit

from fhirbill.auth import admin
from fhirbill.auth.access import authenticate, require
from fhirbill.fhir.errors import FHIRError
from fhirbill.store.db import write_tx

PATIENT_SCOPES = "openid fhirUser launch/patient offline_access patient/*.rs"


@pytest.fixture
def public(live: Live) -> dict[str, str]:
    return live.client(
        name="patient app",
        grant_type="authorization_code",
        redirect_uris=[REDIRECT],
        public=True,
        scope="openid fhirUser launch launch/patient offline_access online_access patient/*.rs user/*.rs",
    )


@pytest.fixture
def confidential(live: Live) -> dict[str, str]:
    return live.client(
        name="portal",
        grant_type="authorization_code",
        redirect_uris=[REDIRECT],
        secret=True,
        scope="openid fhirUser launch launch/patient offline_access patient/*.rs user/*.rs",
    )


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_discovery(live: Live) -> None:
    r = requests.get(
        f"{live.base}/.well-known/smart-configuration", headers={"Accept": "text/html"}, timeout=10
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    doc = r.json()
    assert doc["issuer"] == live.base
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "client_credentials"} <= set(doc["grant_types_supported"])
    assert doc["token_endpoint"] == live.urls["token"]
    assert doc["token_endpoint"].startswith("http://")
    assert {"RS384", "ES384"} == set(doc["token_endpoint_auth_signing_alg_values_supported"])
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
    assert all(isinstance(c, str) for c in doc["capabilities"])
    assert {"launch-ehr", "permission-v1", "permission-v2", "authorize-post"} <= set(doc["capabilities"])
    oidc = requests.get(f"{live.base}/.well-known/openid-configuration", timeout=10).json()
    assert oidc["issuer"] == live.base and "RS256" in oidc["id_token_signing_alg_values_supported"]
    keys = requests.get(doc["jwks_uri"], timeout=10).json()
    assert keys["keys"][0]["kty"] == "RSA" and "d" not in keys["keys"][0]


def test_standalone_patient_launch(live: Live, public: dict[str, str]) -> None:
    sess, token = launch(live, public, PATIENT_SCOPES)
    assert token["token_type"] == "Bearer"
    assert 0 < token["expires_in"] <= 3600
    assert token["scope"] == PATIENT_SCOPES
    assert token["patient"] == "pat-a"
    assert token["refresh_token"]
    # the id_token: RS256, kid in the JWKS, iss = issuer, aud = client_id, fhirUser
    keys = KeySet.import_key_set(requests.get(live.urls["jwks"], timeout=10).json())
    idt = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    assert idt.header["alg"] == "RS256" and idt.header["kid"]
    assert idt.claims["iss"] == live.base
    assert idt.claims["aud"] == public["client_id"]
    assert idt.claims["fhirUser"] == f"{live.base}/Patient/pat-a"
    # the bearer token works at the FHIR layer, confined to the patient
    principal = authenticate(live.engine, f"Bearer {token['access_token']}")
    assert principal is not None and principal.patient == "pat-a"
    grant = require(principal, "ExplanationOfBenefit", "s")
    assert grant.context == "patient" and grant.patient == "pat-a"
    with pytest.raises(FHIRError) as e:
        require(principal, "Claim", "c")
    assert e.value.status == 403


def test_token_response_headers(live: Live, public: dict[str, str]) -> None:
    sess, location, verifier = authorize(live, public, PATIENT_SCOPES)
    r = requests.post(
        live.urls["token"],
        data={
            "grant_type": "authorization_code",
            "code": query(location)["code"],
            "redirect_uri": REDIRECT,
            "client_id": public["client_id"],
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Pragma"] == "no-cache"


def test_authorize_by_post(live: Live, public: dict[str, str]) -> None:
    sess, token = launch(live, public, "launch/patient patient/ExplanationOfBenefit.rs", method="POST")
    assert token["scope"] == "launch/patient patient/ExplanationOfBenefit.rs"
    assert "refresh_token" not in token  # neither offline_access nor online_access
    assert "id_token" not in token


def test_state_is_echoed(live: Live, public: dict[str, str]) -> None:
    sess = app_session(live, public, PATIENT_SCOPES)
    url, state = sess.create_authorization_url(
        live.urls["authorize"], code_verifier=generate_token(48), aud=live.base
    )
    r = submit(live, requests.get(url, timeout=10))
    assert r.status_code == 302
    q = query(r.headers["Location"])
    assert q["state"] == state and q["code"]


def test_consent_page_shape(live: Live, public: dict[str, str]) -> None:
    sess = app_session(live, public, PATIENT_SCOPES)
    url, _ = sess.create_authorization_url(
        live.urls["authorize"], code_verifier=generate_token(48), aud=live.base
    )
    page = requests.get(url, timeout=10)
    form = parse_form(page.text)
    assert {"username", "password", "patient"} <= form.names
    assert [v for _, v, _ in form.checkboxes] == PATIENT_SCOPES.split()
    assert all(n == "scope" and checked for n, _, checked in form.checkboxes)
    assert ("decision", "allow") in form.buttons and ("decision", "deny") in form.buttons
    assert page.headers["X-Frame-Options"] == "DENY"


def test_limited_consent(live: Live, public: dict[str, str]) -> None:
    scope = "launch/patient patient/ExplanationOfBenefit.rs patient/Coverage.rs"
    _, token = launch(live, public, scope, untick=("patient/Coverage.rs",))
    assert token["scope"] == "launch/patient patient/ExplanationOfBenefit.rs"
    principal = authenticate(live.engine, f"Bearer {token['access_token']}")
    with pytest.raises(FHIRError) as e:
        require(principal, "Coverage", "s")
    assert e.value.status == 403
    require(principal, "ExplanationOfBenefit", "r")


def test_deny(live: Live, public: dict[str, str]) -> None:
    sess = app_session(live, public, PATIENT_SCOPES)
    url, state = sess.create_authorization_url(
        live.urls["authorize"], code_verifier=generate_token(48), aud=live.base
    )
    r = submit(live, requests.get(url, timeout=10), decision="deny")
    assert r.status_code == 302
    q = query(r.headers["Location"])
    assert q["error"] == "access_denied" and q["state"] == state and "code" not in q


def test_wrong_password_gives_no_code(live: Live, public: dict[str, str]) -> None:
    sess = app_session(live, public, PATIENT_SCOPES)
    url, _ = sess.create_authorization_url(
        live.urls["authorize"], code_verifier=generate_token(48), aud=live.base
    )
    r = submit(live, requests.get(url, timeout=10), password="wrong password")
    assert r.status_code == 401 and "Location" not in r.headers


def test_login_throttling(live: Live, public: dict[str, str]) -> None:
    with write_tx(live.engine) as conn:
        admin.add_user(conn, "carol", "carol's password", patient="Patient/pat-b")
    sess = app_session(live, public, PATIENT_SCOPES)
    url, _ = sess.create_authorization_url(
        live.urls["authorize"], code_verifier=generate_token(48), aud=live.base
    )
    page = requests.get(url, timeout=10)
    for _ in range(10):
        assert submit(live, page, username="carol", password="nope nope").status_code == 401
    r = submit(live, page, username="carol", password="carol's password")
    assert r.status_code == 429 and "Location" not in r.headers


def test_practitioner_picks_patient(live: Live, public: dict[str, str]) -> None:
    scope = "openid fhirUser launch/patient patient/*.rs"
    _, token = launch(live, public, scope, username="drsmith", patient="pat-b")
    assert token["patient"] == "pat-b"
    idt = jwt.decode(
        token["id_token"], KeySet.import_key_set(requests.get(live.urls["jwks"], timeout=10).json())
    )
    assert idt.claims["fhirUser"] == f"{live.base}/Practitioner/prac-1"


def test_practitioner_must_pick_an_existing_patient(live: Live, public: dict[str, str]) -> None:
    sess = app_session(live, public, "launch/patient patient/*.rs")
    url, _ = sess.create_authorization_url(
        live.urls["authorize"], code_verifier=generate_token(48), aud=live.base
    )
    r = submit(live, requests.get(url, timeout=10), username="drsmith", patient="nobody")
    assert r.status_code == 400 and "Location" not in r.headers


def test_ehr_launch(live: Live, public: dict[str, str]) -> None:
    with write_tx(live.engine) as conn:
        ctx = admin.new_launch(conn, "pat-b")
    scope = "launch openid fhirUser patient/*.rs"
    sess, token = launch(live, public, scope, launch=ctx["launch"], username="drsmith")
    assert token["patient"] == "pat-b"
    assert token["scope"] == scope


def test_unknown_launch_gives_no_code(live: Live, public: dict[str, str]) -> None:
    sess = app_session(live, public, "launch patient/*.rs")
    url, _ = sess.create_authorization_url(
        live.urls["authorize"], code_verifier=generate_token(48), aud=live.base, launch="bogus"
    )
    r = requests.get(url, allow_redirects=False, timeout=10)
    assert r.status_code == 302 and query(r.headers["Location"])["error"] == "invalid_request"


def test_confidential_symmetric_client(live: Live, confidential: dict[str, str]) -> None:
    sess, token = launch(live, confidential, PATIENT_SCOPES)
    assert token["patient"] == "pat-a"
    new = sess.refresh_token(live.urls["token"])
    assert new["scope"] == PATIENT_SCOPES


def test_scopes_beyond_registration_are_not_granted(live: Live) -> None:
    client = live.client(
        name="narrow app",
        grant_type="authorization_code",
        redirect_uris=[REDIRECT],
        public=True,
        scope="launch/patient patient/ExplanationOfBenefit.rs",
    )
    _, token = launch(live, client, "launch/patient offline_access patient/*.cruds patient/AuditEvent.rs")
    assert token["scope"] == "launch/patient patient/ExplanationOfBenefit.rs"
    assert "refresh_token" not in token


# --- refresh --------------------------------------------------------------------------------


def test_refresh_same_and_narrower(live: Live, public: dict[str, str]) -> None:
    sess, token = launch(live, public, PATIENT_SCOPES)
    first_refresh = token["refresh_token"]
    same = sess.refresh_token(live.urls["token"])
    assert same["scope"] == PATIENT_SCOPES and same["patient"] == "pat-a"
    assert same["refresh_token"] != first_refresh
    assert same.get("expires_in", 0) <= 3600
    again = sess.refresh_token(live.urls["token"], scope=same["scope"])
    assert again["scope"] == PATIENT_SCOPES
    narrow = sess.refresh_token(live.urls["token"], scope="offline_access patient/Claim.r")
    assert narrow["scope"] == "offline_access patient/Claim.r"
    # the rotated-out token is spent
    r = requests.post(
        live.urls["token"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": first_refresh,
            "client_id": public["client_id"],
        },
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_refresh_cannot_broaden(live: Live, public: dict[str, str]) -> None:
    _, token = launch(live, public, "launch/patient offline_access patient/Claim.rs")
    for scope in ("launch/patient offline_access patient/Claim.rs patient/Coverage.rs", "patient/*.rs"):
        r = requests.post(
            live.urls["token"],
            data={
                "grant_type": "refresh_token",
                "refresh_token": token["refresh_token"],
                "client_id": public["client_id"],
                "scope": scope,
            },
            timeout=10,
        )
        assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_refresh_random_or_other_clients_token(
    live: Live, public: dict[str, str], confidential: dict[str, str]
) -> None:
    _, token = launch(live, public, PATIENT_SCOPES)
    r = requests.post(
        live.urls["token"],
        data={"grant_type": "refresh_token", "refresh_token": "random", "client_id": public["client_id"]},
        timeout=10,
    )
    assert r.status_code == 400
    r = requests.post(
        live.urls["token"],
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(confidential["client_id"], confidential["client_secret"]),
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


# --- authorize negatives --------------------------------------------------------------------


def _authorize_params(live: Live, client: dict[str, str], **over: str | None) -> dict[str, str]:
    verifier = generate_token(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    p: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT,
        "scope": PATIENT_SCOPES,
        "state": generate_token(24),
        "aud": live.base,
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    p.update(over)
    return {k: v for k, v in p.items() if v is not None}


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"aud": "https://evil.example/fhir"}, "invalid_request"),
        ({"aud": None}, "invalid_request"),
        ({"state": None}, "invalid_request"),
        ({"scope": None}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_no_code_without_the_required_parameters(
    live: Live, public: dict[str, str], over: dict[str, str | None], error: str
) -> None:
    for method in ("GET", "POST"):
        params = _authorize_params(live, public, **over)
        if method == "GET":
            r = requests.get(live.urls["authorize"], params=params, allow_redirects=False, timeout=10)
        else:
            r = requests.post(live.urls["authorize"], data=params, allow_redirects=False, timeout=10)
        assert r.status_code == 302
        q = query(r.headers["Location"])
        assert q["error"] == error and "code" not in q
        if "state" in params:
            assert q["state"] == params["state"]


@pytest.mark.parametrize(
    "over",
    [
        {"redirect_uri": "http://127.0.0.1:9/other"},
        {"redirect_uri": REDIRECT + "/"},
        {"redirect_uri": REDIRECT + "?x=1"},
        {"redirect_uri": None},
        {"client_id": "nobody"},
    ],
)
def test_bad_redirect_or_client_is_an_error_page(
    live: Live, public: dict[str, str], over: dict[str, str | None]
) -> None:
    r = requests.get(
        live.urls["authorize"],
        params=_authorize_params(live, public, **over),
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 400
    assert "Location" not in r.headers
    assert r.headers["Content-Type"].startswith("text/html")


def test_tampered_consent_submission_gives_no_code(live: Live, public: dict[str, str]) -> None:
    sess = app_session(live, public, PATIENT_SCOPES)
    url, _ = sess.create_authorization_url(
        live.urls["authorize"], code_verifier=generate_token(48), aud=live.base
    )
    form = parse_form(requests.get(url, timeout=10).text)
    data = dict(form.hidden) | {"username": "alice", "password": "x" * 9, "decision": "allow"}
    data["code_challenge_method"] = "plain"
    r = requests.post(live.urls["authorize"], data=data, allow_redirects=False, timeout=10)
    assert "code" not in query(r.headers["Location"])


# --- code exchange negatives ----------------------------------------------------------------


def _exchange(live: Live, client: dict[str, str], code: str, verifier: str | None) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client["client_id"],
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    return requests.post(live.urls["token"], data=data, timeout=10)


def test_wrong_missing_or_echoed_verifier(live: Live, public: dict[str, str]) -> None:
    sess, location, verifier = authorize(live, public, PATIENT_SCOPES)
    code = query(location)["code"]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    for bad in (None, "", generate_token(48), challenge):
        r = _exchange(live, public, code, bad)
        assert r.status_code == 400, bad
        assert "access_token" not in r.json()
    assert _exchange(live, public, code, verifier).status_code == 200


def test_reused_code_fails_and_revokes(live: Live, public: dict[str, str]) -> None:
    sess, location, verifier = authorize(live, public, PATIENT_SCOPES)
    code = query(location)["code"]
    first = _exchange(live, public, code, verifier)
    assert first.status_code == 200
    tok = first.json()
    assert authenticate(live.engine, f"Bearer {tok['access_token']}") is not None
    again = _exchange(live, public, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert authenticate(live.engine, f"Bearer {tok['access_token']}") is None
    r = requests.post(
        live.urls["token"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": tok["refresh_token"],
            "client_id": public["client_id"],
        },
        timeout=10,
    )
    assert r.status_code == 400


def test_bad_code_and_bad_client(live: Live, public: dict[str, str], confidential: dict[str, str]) -> None:
    assert _exchange(live, public, "BAD_CODE", generate_token(48)).status_code == 400
    sess, location, verifier = authorize(live, confidential, PATIENT_SCOPES)
    r = requests.post(
        live.urls["token"],
        data={
            "grant_type": "authorization_code",
            "code": query(location)["code"],
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(confidential["client_id"], "wrong secret"),
        timeout=10,
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert "Basic" in r.headers["WWW-Authenticate"]
    # a code issued to the confidential client cannot be redeemed by another client
    r = _exchange(live, public, query(location)["code"], verifier)
    assert r.status_code == 400


def test_unsupported_grant_type(live: Live) -> None:
    r = requests.post(live.urls["token"], data={"grant_type": "password"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
