"""stored forecasts keep the calibrated expected saving, so pages give the same advice as the model

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 06:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # forecasts are refreshed daily and after every retrain: the old rows, without the column,
    # are dropped and rebuilt on the next refresh rather than guessed
    op.execute("DELETE FROM price_forecast")
    with op.batch_alter_table("price_forecast") as batch:
        batch.add_column(sa.Column("expected_saving", sa.Double(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("price_forecast") as batch:
        batch.drop_column("expected_saving")
