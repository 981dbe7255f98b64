"""pending_settlements: settlements the wallet store could not take, kept until booked;
request_logs.estimated_cost_micro: a list-price estimate for models without an operator price

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_settlements",
        sa.Column("hold_id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.Integer, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("charge", sa.BigInteger, nullable=False),
        sa.Column("quota", sa.BigInteger, nullable=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_pending_settlements_created", "pending_settlements", ["created_at"])
    with op.batch_alter_table("request_logs") as batch:
        batch.add_column(sa.Column("estimated_cost_micro", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_logs") as batch:
        batch.drop_column("estimated_cost_micro")
    op.drop_index("ix_pending_settlements_created", table_name="pending_settlements")
    op.drop_table("pending_settlements")
