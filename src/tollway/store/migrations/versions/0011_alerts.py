"""alerts: alert rules and the firings claimed for them (issue 18)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("filters", sa.Text, nullable=False),
        sa.Column("threshold", sa.String(40), nullable=True),
        sa.Column("minutes", sa.Integer, nullable=True),
        sa.Column("window_minutes", sa.Integer, nullable=True),
        sa.Column("min_requests", sa.Integer, nullable=True),
        sa.Column("webhook", sa.Text, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("secret", sa.Text, nullable=True),
        sa.Column("debounce", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "alert_firings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("rule_id", sa.Integer, nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("period", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("fired_at", sa.Float, nullable=False),
        sa.UniqueConstraint("rule_id", "subject", "period", name="ux_alert_firings_claim"),
    )
    op.create_index("ix_alert_firings_last", "alert_firings", ["rule_id", "subject", "fired_at"])
    op.create_index("ix_alert_firings_fired", "alert_firings", ["fired_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_firings_fired", table_name="alert_firings")
    op.drop_index("ix_alert_firings_last", table_name="alert_firings")
    op.drop_table("alert_firings")
    op.drop_table("alert_rules")
