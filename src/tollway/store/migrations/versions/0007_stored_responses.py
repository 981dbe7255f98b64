"""stored_responses: the Responses API's stored responses and their input items

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_responses",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(96), nullable=False),
        sa.Column("previous_id", sa.String(128), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
    )
    op.create_index("ix_stored_responses_owner", "stored_responses", ["owner"])
    op.create_index("ix_stored_responses_expires", "stored_responses", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_stored_responses_expires", table_name="stored_responses")
    op.drop_index("ix_stored_responses_owner", table_name="stored_responses")
    op.drop_table("stored_responses")
