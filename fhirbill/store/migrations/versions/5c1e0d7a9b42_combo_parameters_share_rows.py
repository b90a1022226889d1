"""Observation's combo parameters read their parts' index rows, so their own rows go

Revision ID: 5c1e0d7a9b42
Revises: 10f779ab8d7e
Create Date: 2026-12-06 21:20:00.000000
"""

from alembic import op


revision = '5c1e0d7a9b42'
down_revision = '10f779ab8d7e'
branch_labels = None
depends_on = None

# Unions of two other parameters each (fhirbill.fhir.searchparams._shared); search no longer reads
# rows under these codes and writes no longer make them.
TOKEN = ("combo-code", "combo-data-absent-reason", "combo-value-concept")
QUANTITY = ("combo-value-quantity",)


def upgrade() -> None:
    for table, codes in (("idx_token", TOKEN), ("idx_quantity", QUANTITY)):
        listed = ", ".join(f"'{c}'" for c in codes)
        op.execute(f"DELETE FROM {table} WHERE res_type = 'Observation' AND param IN ({listed})")


def downgrade() -> None:
    # The rows are derived data: after downgrading, `fhirbill db reindex --type Observation`
    # writes them again.
    pass
