"""stored forecasts keep the chance of paying no more than on the first date, which on sticky
prices (shelf and list prices that stay put for weeks) is far above the chance of paying less

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 01:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # rows stored before have none: they read as p_cheaper (what the advice was gated on then)
    # until the next daily refresh rebuilds them
    with op.batch_alter_table("price_forecast") as batch:
        batch.add_column(sa.Column("p_not_dearer", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("price_forecast") as batch:
        batch.drop_column("p_not_dearer")
