"""Administrator operations for the CLI (each takes a Connection inside the caller's transaction)."""

from __future__ import annotations

from sqlalchemy import Connection

from fhirbill.auth.clients import add_client, list_clients, revoke_client
from fhirbill.auth.tokens import new_launch as _new_launch
from fhirbill.auth.users import add_user, valid_patient_id

__all__ = ["add_client", "add_user", "list_clients", "new_launch", "revoke_client"]


def new_launch(conn: Connection, patient_id: str) -> dict[str, str]:
    """An EHR launch context for a patient: {"launch": "..."} (valid for an hour)."""
    pid = patient_id.removeprefix("Patient/")
    if not valid_patient_id(pid):
        raise ValueError("patient must be a Patient id")
    return {"launch": _new_launch(conn, pid)}
