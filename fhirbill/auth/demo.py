"""Demo clients and users from seeds/smart/demo.json (a non-FHIR file, so it has a schema)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Connection, select

from fhirbill.auth.clients import add_client, get_client
from fhirbill.auth.users import add_user
from fhirbill.store.auth_tables import auth_users

CREDENTIALS_FILE = "demo-credentials.json"


class ClientSchema(Schema):
    client_id = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9._-]{1,64}$"))
    name = fields.String(required=True)
    grant_type = fields.String(
        required=True, validate=validate.OneOf(["authorization_code", "client_credentials"])
    )
    auth = fields.String(required=True, validate=validate.OneOf(["public", "secret"]))
    redirect_uris = fields.List(fields.Url(require_tld=False), load_default=list)
    origins = fields.List(fields.Url(require_tld=False), load_default=list)
    scope = fields.String(required=True)


class UserSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(1, 255))
    password = fields.String(required=True, validate=validate.Length(min=8))
    patient = fields.String(load_default=None)
    fhir_user = fields.String(load_default=None)

    @validates_schema
    def _one_link(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("patient") is None) == (data.get("fhir_user") is None):
            raise ValidationError("give exactly one of patient or fhir_user")


class DemoSchema(Schema):
    clients = fields.List(fields.Nested(ClientSchema), load_default=list)
    users = fields.List(fields.Nested(UserSchema), load_default=list)


def load_demo(conn: Connection, path: Path, instance_dir: Path) -> dict[str, Any]:
    """Register the demo clients and users that are not there yet (idempotent).

    New client secrets are written to instance/demo-credentials.json (mode 0600) so that the
    demo can show how to get a token; they are never printed into logs.
    """
    try:
        demo = DemoSchema().load(json.loads(path.read_text()))
    except (ValidationError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    creds_path = instance_dir / CREDENTIALS_FILE
    creds: dict[str, Any] = json.loads(creds_path.read_text()) if creds_path.exists() else {}
    added: dict[str, list[str]] = {"clients": [], "users": []}
    for c in demo["clients"]:
        if get_client(conn, c["client_id"]) is not None:
            continue
        out = add_client(
            conn,
            client_id=c["client_id"],
            name=c["name"],
            grant_type=c["grant_type"],
            redirect_uris=c["redirect_uris"],
            origins=c["origins"],
            scope=c["scope"],
            public=c["auth"] == "public",
            secret=c["auth"] == "secret",
        )
        creds[c["client_id"]] = out
        added["clients"].append(c["client_id"])
    for u in demo["users"]:
        if conn.execute(select(auth_users.c.username).where(auth_users.c.username == u["username"])).first():
            continue
        add_user(conn, u["username"], u["password"], patient=u["patient"], fhir_user=u["fhir_user"])
        added["users"].append(u["username"])
    if added["clients"]:
        instance_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(creds_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(creds, fh, indent=2)
    return added
