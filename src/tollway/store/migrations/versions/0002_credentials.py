"""credentials: upstream accounts managed at run time; request_logs.attempts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("id", sa.String(200), primary_key=True),  # email, mobile, a chosen id, or token:<hash>
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("mobile", sa.String(64), nullable=False),
        sa.Column("password", sa.Text, nullable=True),
        sa.Column("secret", sa.Text, nullable=True),  # an API key or a session token
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_credentials_provider", "credentials", ["provider"])
    with op.batch_alter_table("request_logs") as batch:
        batch.add_column(sa.Column("attempts", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_logs") as batch:
        batch.drop_column("attempts")
    op.drop_index("ix_credentials_provider", table_name="credentials")
    op.drop_table("credentials")
