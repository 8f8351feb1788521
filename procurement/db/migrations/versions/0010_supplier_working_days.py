"""supplier working days: the weekdays each supplier takes orders on (default Mon-Fri)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("supplier") as batch:
        batch.add_column(
            sa.Column(
                "working_days", sa.String(length=30), nullable=False, server_default="Mon-Fri"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("supplier") as batch:
        batch.drop_column("working_days")
