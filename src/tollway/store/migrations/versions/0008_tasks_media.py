"""tasks and media prices: durable asynchronous tasks, models' per-unit prices, logged units

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("unit_price", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("price_unit", sa.String(16), nullable=False, server_default=""))
    with op.batch_alter_table("request_logs") as batch:
        batch.add_column(sa.Column("units", sa.BigInteger, nullable=False, server_default="0"))
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("shape", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(96), nullable=False),
        sa.Column("key_id", sa.Integer, nullable=True),
        sa.Column("studio_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Integer, nullable=True),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("provider", sa.String(64), nullable=True),
        sa.Column("credential", sa.String(200), nullable=True),
        sa.Column("provider_task_id", sa.String(300), nullable=True),
        sa.Column("hold", sa.BigInteger, nullable=False),
        sa.Column("cost_micro", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("expires_at", sa.Float, nullable=True),
    )
    op.create_index("ix_tasks_owner", "tasks", ["owner", "created_at"])
    op.create_index("ix_tasks_status_lease", "tasks", ["status", "lease_until"])
    op.create_index("ix_tasks_expires", "tasks", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_expires", table_name="tasks")
    op.drop_index("ix_tasks_status_lease", table_name="tasks")
    op.drop_index("ix_tasks_owner", table_name="tasks")
    op.drop_table("tasks")
    with op.batch_alter_table("request_logs") as batch:
        batch.drop_column("units")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("price_unit")
        batch.drop_column("unit_price")
