"""Users who log in at the authorize page: scrypt password hashes and login throttling."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, select

from fhirbill.store.auth_tables import auth_login_failures, auth_users

_N, _R, _P = 2**14, 8, 1
MAX_FAILURES = 10
FAILURE_WINDOW = 15 * 60
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_REF_RE = re.compile(r"^(Patient|Practitioner|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class User:
    """A user who can authorize apps."""

    username: str
    patient_id: str | None
    fhir_user: str  # relative reference, e.g. Patient/123 or Practitioner/9


def hash_password(password: str) -> str:
    """An scrypt hash with a random salt, self-describing."""
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(dk).decode()}"


def check_password(stored: str, password: str) -> bool:
    """Constant-time check of a password against its stored hash."""
    try:
        scheme, n, r, p, salt, dk = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(base64.b64decode(dk)),
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(dk))


_DUMMY = hash_password(secrets.token_urlsafe(16))


def valid_patient_id(value: str) -> bool:
    """A bare FHIR id."""
    return bool(_ID_RE.match(value))


def add_user(
    conn: Connection,
    username: str,
    password: str,
    patient: str | None = None,
    fhir_user: str | None = None,
) -> dict[str, str | None]:
    """Create a user linked to a Patient (`Patient/ID` or a bare id) or a fhirUser reference."""
    if not username or len(username) > 255:
        raise ValueError("username must be 1-255 characters")
    if len(password) < 8:
        raise ValueError("password must be at least 8 characters")
    if (patient is None) == (fhir_user is None):
        raise ValueError("give exactly one of patient or fhir_user")
    patient_id = None
    if patient is not None:
        patient_id = patient.removeprefix("Patient/")
        if not valid_patient_id(patient_id):
            raise ValueError("patient must be Patient/ID")
        fhir_user = f"Patient/{patient_id}"
    elif fhir_user is not None and not _REF_RE.match(fhir_user):
        raise ValueError("fhir_user must be a reference such as Practitioner/ID")
    conn.execute(
        auth_users.insert().values(
            username=username,
            password_hash=hash_password(password),
            patient_id=patient_id,
            fhir_user=fhir_user,
            created_at=int(time.time()),
        )
    )
    return {"username": username, "fhirUser": fhir_user}


def throttled(conn: Connection, username: str, now: int) -> bool:
    """True once a username has too many recent failed logins."""
    n = conn.execute(
        select(func.count())
        .select_from(auth_login_failures)
        .where(auth_login_failures.c.username == username)
        .where(auth_login_failures.c.at > now - FAILURE_WINDOW)
    ).scalar_one()
    return n >= MAX_FAILURES


def login(conn: Connection, username: str, password: str, now: int) -> User | None:
    """The user if the password is right; records a failure otherwise."""
    row = conn.execute(select(auth_users).where(auth_users.c.username == username)).first()
    ok = check_password(row.password_hash if row else _DUMMY, password) and row is not None
    if not ok:
        conn.execute(auth_login_failures.insert().values(username=username[:255], at=now))
        conn.execute(delete(auth_login_failures).where(auth_login_failures.c.at < now - 86400))
        return None
    assert row is not None
    return User(row.username, row.patient_id, row.fhir_user)
