"""bots: Feishu/Lark bots and the event ids they have taken on (issue 15)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("app_id", sa.String(128), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("key_id", sa.Integer, nullable=True),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_bots_kind", "bots", ["kind", "id"])
    op.create_table(
        "bot_events",
        sa.Column("bot_id", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_bot_events_created", "bot_events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_bot_events_created", table_name="bot_events")
    op.drop_table("bot_events")
    op.drop_index("ix_bots_kind", table_name="bots")
    op.drop_table("bots")
