"""an import keeps the name, supplier, currency, category and unit it replaced, so its undo
restores the catalog as well as the prices

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 02:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("import_change") as batch:
        batch.add_column(sa.Column("old_text", sa.String(500), nullable=True))
        batch.add_column(sa.Column("new_text", sa.String(500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("import_change") as batch:
        batch.drop_column("new_text")
        batch.drop_column("old_text")
