"""monitoring: forecast archive, drift checks, drift-triggered retrains, app latency

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 02:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forecast_archive",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("y_pred", sa.Double(), nullable=False),
        sa.Column("lo_80", sa.Double(), nullable=False),
        sa.Column("hi_80", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "version", "sku", "date"),
    )
    op.create_index("ix_forecast_archive_date", "forecast_archive", ["date"])
    op.create_table(
        "drift_check",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.Column("data_drift", sa.Double(), nullable=True),
        sa.Column("live_mase", sa.Double(), nullable=True),
        sa.Column("backtest_mase", sa.Double(), nullable=True),
        sa.Column("concept_drift", sa.Double(), nullable=True),
        sa.Column("live_coverage_80", sa.Double(), nullable=True),
        sa.Column("n_actuals", sa.Integer(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_drift_check_tenant_at", "drift_check", ["tenant_id", "computed_at"])
    op.create_table(
        "drift_retrain",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "version"),
    )
    op.create_table(
        "app_latency",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("le", sa.String(length=20), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", "le"),
    )


def downgrade() -> None:
    op.drop_table("app_latency")
    op.drop_table("drift_retrain")
    op.drop_index("ix_drift_check_tenant_at", table_name="drift_check")
    op.drop_table("drift_check")
    op.drop_index("ix_forecast_archive_date", table_name="forecast_archive")
    op.drop_table("forecast_archive")
