"""index rows without foreign keys

Revision ID: 10f779ab8d7e
Revises: 23310f4bdec0
Create Date: 2026-12-06 20:20:13.127868
"""

from alembic import op


revision = '10f779ab8d7e'
down_revision = '23310f4bdec0'
branch_labels = None
depends_on = None

TABLES = ("idx_date", "idx_number", "idx_quantity", "idx_reference", "idx_string", "idx_token", "idx_uri")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"fk_{table}_rid_resources", type_="foreignkey")


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(
                f"fk_{table}_rid_resources", "resources", ["rid"], ["rid"], ondelete="CASCADE"
            )
