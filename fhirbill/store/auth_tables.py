"""Tables of the SMART authorization server: clients, users, codes, tokens, assertion jtis, launches.

Secrets are never stored: client secrets, codes, tokens and launch strings as SHA-256 hex of
high-entropy random values, passwords as scrypt. Times are integer Unix seconds.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text

from fhirbill.store.tables import RowId, metadata

Epoch = BigInteger().with_variant(Integer(), "sqlite")

auth_clients = Table(
    "auth_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("auth_method", String(32), nullable=False),  # none | client_secret_basic | private_key_jwt
    Column("secret_hash", String(64), nullable=True),
    Column("grant_types", String(255), nullable=False),  # space-separated
    Column("redirect_uris", Text, nullable=False),  # JSON array
    Column("origins", Text, nullable=False),  # JSON array
    Column("scope", Text, nullable=False),  # registered scopes, space-separated
    Column("jwks", Text, nullable=True),  # JSON JWK Set, public keys by value
    Column("jwks_uri", String(1024), nullable=True),
    Column("created_at", Epoch, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

auth_users = Table(
    "auth_users",
    metadata,
    Column("username", String(255), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("patient_id", String(64), nullable=True),  # a Patient user's own record
    Column("fhir_user", String(255), nullable=True),  # e.g. Practitioner/123
    Column("created_at", Epoch, nullable=False),
)

auth_login_failures = Table(
    "auth_login_failures",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("username", String(255), nullable=False),
    Column("at", Epoch, nullable=False),
    Index(None, "username", "at"),
)

auth_codes = Table(
    "auth_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("grant_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("redirect_uri", String(1024), nullable=False),
    Column("scope", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("username", String(255), nullable=True),
    Column("patient_id", String(64), nullable=True),
    Column("fhir_user", String(255), nullable=True),
    Column("nonce", String(255), nullable=True),
    Column("expires_at", Epoch, nullable=False),
    Column("used_at", Epoch, nullable=True),
)

auth_tokens = Table(
    "auth_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),  # access | refresh
    Column("grant_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),  # exactly as granted
    Column("username", String(255), nullable=True),
    Column("patient_id", String(64), nullable=True),
    Column("fhir_user", String(255), nullable=True),
    Column("issued_at", Epoch, nullable=False),
    Column("expires_at", Epoch, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Index(None, "grant_id"),
    Index(None, "client_id"),
)

auth_jtis = Table(
    "auth_jtis",
    metadata,
    Column("iss", String(64), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires_at", Epoch, nullable=False),
    Index(None, "expires_at"),
)

auth_launches = Table(
    "auth_launches",
    metadata,
    Column("launch_hash", String(64), primary_key=True),
    Column("patient_id", String(64), nullable=True),
    Column("expires_at", Epoch, nullable=False),
)
