"""The schema: current resources, every version, typed search indexes, and write guards.

Resources are stored as their canonical JSON text and served as-is. Index tables hold the
values of the SearchParameter expressions, one table per parameter type, keyed by the
resource's surrogate `rid` so that search joins stay narrow.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY.
RowId = BigInteger().with_variant(Integer(), "sqlite")

resources = Table(
    "resources",
    metadata,
    Column("rid", RowId, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime(), nullable=False),  # naive UTC, millisecond precision
    Column("deleted", Boolean, nullable=False),
    Column("content", Text, nullable=True),  # current JSON text; NULL once deleted
    UniqueConstraint("res_type", "res_id"),
    Index(None, "res_type", "last_updated", "rid"),
)

resource_versions = Table(
    "resource_versions",
    metadata,
    Column("rid", RowId, ForeignKey("resources.rid", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("last_updated", DateTime(), nullable=False),
    Column("method", String(8), nullable=False),  # POST, PUT, PATCH, DELETE
    # The text of a replaced version; NULL for the current version (its text is in `resources`,
    # stored once) and for a DELETE entry.
    Column("content", Text, nullable=True),
    Index(None, "res_type", "last_updated"),
    Index(None, "last_updated"),
)

# One row per conditional-create condition: racing creates serialise on it.
create_guards = Table(
    "create_guards",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("condition", String(64), primary_key=True),  # sha256 of the normalised query
)


# Index rows carry no foreign key to `resources`: they are derived data (`db reindex` rebuilds
# them), written only by the store in the same transaction as their resource, and resources rows
# are never removed. The check cost a parent lookup per row, which on PostgreSQL is a trigger
# that locks the parent row (measured on Synthea transactions: PostgreSQL writes about 30% and
# SQLite inserts about 15% faster without it).
def _index_table(name: str, *cols: Column, indexes: tuple[tuple[str, ...], ...]) -> Table:
    table = Table(
        name,
        metadata,
        Column("rid", RowId, nullable=False),
        Column("res_type", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        *cols,
    )
    Index(None, table.c.rid)
    for cols_ in indexes:
        Index(None, table.c.res_type, table.c.param, *(table.c[c] for c in cols_))
    return table


idx_token = _index_table(
    "idx_token",
    Column("system", String(255), nullable=True),
    Column("code", String(255), nullable=True),
    Column("text", String(255), nullable=True),
    indexes=(("code", "system"),),
)
idx_reference = _index_table(
    "idx_reference",
    Column("ref_type", String(64), nullable=True),
    Column("ref_id", String(64), nullable=True),
    Column("url", String(512), nullable=True),
    indexes=(("ref_id", "ref_type"),),
)
# Partial: only external and canonical references have a url. A full index here tempted
# PostgreSQL, without fresh statistics, into scanning every reference of a parameter.
Index(
    "ix_idx_reference_url",
    idx_reference.c.res_type,
    idx_reference.c.param,
    idx_reference.c.url,
    postgresql_where=idx_reference.c.url.is_not(None),
    sqlite_where=idx_reference.c.url.is_not(None),
)
idx_date = _index_table(
    "idx_date",
    Column("low", DateTime(), nullable=False),
    Column("high", DateTime(), nullable=False),
    indexes=(("low", "high"),),
)
idx_string = _index_table(
    "idx_string",
    Column("norm", String(255), nullable=False),
    Column("value", String(512), nullable=False),
    indexes=(("norm",),),
)
idx_number = _index_table(
    "idx_number",
    Column("value", Numeric(24, 8), nullable=False),
    indexes=(("value",),),
)
idx_quantity = _index_table(
    "idx_quantity",
    Column("system", String(255), nullable=True),
    Column("code", String(64), nullable=True),
    Column("value", Numeric(24, 8), nullable=False),
    indexes=(("code", "value"),),
)
idx_uri = _index_table(
    "idx_uri",
    Column("uri", String(512), nullable=False),
    indexes=(("uri",),),
)

INDEX_TABLES = {
    "token": idx_token,
    "reference": idx_reference,
    "date": idx_date,
    "string": idx_string,
    "number": idx_number,
    "quantity": idx_quantity,
    "uri": idx_uri,
}

# X12: control numbers, and what was sent, so that 999/277CA/835 answers can be matched back.
x12_counters = Table(
    "x12_counters",
    metadata,
    Column("name", String(16), primary_key=True),  # isa13, gs06, st02
    Column("value", BigInteger, nullable=False),  # the last number handed out
)

x12_interchanges = Table(
    "x12_interchanges",
    metadata,
    Column("isa13", BigInteger, primary_key=True, autoincrement=False),
    Column("created", DateTime(), nullable=False),
    Column("claims", Integer, nullable=False),
    Column("content", Text, nullable=False),  # the 837 as sent
)

x12_claims = Table(
    "x12_claims",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("isa13", BigInteger, ForeignKey("x12_interchanges.isa13"), nullable=False),
    Column("gs06", BigInteger, nullable=False),
    Column("st02", BigInteger, nullable=False),
    Column("claim_id", String(64), nullable=False),
    Column("clm01", String(38), nullable=False),
    Column("frequency", String(1), nullable=False),
    UniqueConstraint("gs06", "st02"),
    Index(None, "claim_id"),
    Index(None, "clm01"),
)

x12_lines = Table(
    "x12_lines",
    metadata,
    Column("x12_claim_id", RowId, ForeignKey("x12_claims.id"), nullable=False),
    Column("sequence", Integer, nullable=False),  # Claim.item.sequence
    Column("line_control", String(50), nullable=False),  # REF*6R, echoed by the 835 and 277CA
    Index(None, "line_control"),
    Index(None, "x12_claim_id"),
)
