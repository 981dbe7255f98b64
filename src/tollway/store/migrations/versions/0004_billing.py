"""billing: key money and limits, groups, the model registry, model authorization, the ledger

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("month_quota", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("rpm", sa.Integer, nullable=True))
        batch.add_column(sa.Column("tpm", sa.Integer, nullable=True))
        batch.add_column(sa.Column("models", sa.Text, nullable=True))
        batch.add_column(sa.Column("updated_at", sa.Float, nullable=True))
    op.create_table(
        "groups",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("multiplier", sa.BigInteger, nullable=False),
        sa.Column("restricted", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("upstream_id", sa.String(200), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("capabilities", sa.Text, nullable=False),
        sa.Column("modalities", sa.Text, nullable=False),
        sa.Column("aliases", sa.Text, nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("price_in", sa.BigInteger, nullable=False),
        sa.Column("price_out", sa.BigInteger, nullable=False),
        sa.Column("credit_cost", sa.BigInteger, nullable=False),
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("tpm", sa.Integer, nullable=True),
        sa.Column("max_output_tokens", sa.Integer, nullable=True),
        sa.Column("group_id", sa.Integer, nullable=True),
        sa.Column("multiple", sa.Boolean, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "group_models",
        sa.Column("group_id", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "key_models",
        sa.Column("key_id", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("key_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_ledger_key_month", "ledger", ["key_id", "month"])
    op.create_index("ix_ledger_key_created", "ledger", ["key_id", "created_at"])
    op.create_index("ux_ledger_request", "ledger", ["request_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_ledger_request", table_name="ledger")
    op.drop_index("ix_ledger_key_created", table_name="ledger")
    op.drop_index("ix_ledger_key_month", table_name="ledger")
    for name in ("ledger", "key_models", "group_models", "models", "groups"):
        op.drop_table(name)
    with op.batch_alter_table("api_keys") as batch:
        for name in ("updated_at", "models", "tpm", "rpm", "month_quota", "balance"):
            batch.drop_column(name)
