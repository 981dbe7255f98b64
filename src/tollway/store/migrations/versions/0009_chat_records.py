"""chat records: sessions, threads and the record settings (seed 004)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# PostgreSQL: full-text indexes for ``q`` (titles, and threads' input and answer)
SEARCH_SESSIONS = "to_tsvector('simple', title)"
SEARCH_THREADS = "to_tsvector('simple', input || ' ' || output)"


def upgrade() -> None:
    op.create_table(
        "chat_sessions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(96), nullable=False),
        sa.Column("key_id", sa.Integer, nullable=True),
        sa.Column("studio_id", sa.String(64), nullable=True),
        sa.Column("client_ref", sa.String(300), nullable=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("dialect", sa.String(32), nullable=True),
        sa.Column("threads", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("owner", "client_ref", name="uq_chat_sessions_owner_ref"),
    )
    op.create_index("ix_chat_sessions_owner_updated", "chat_sessions", ["owner", "updated_at"])
    op.create_index("ix_chat_sessions_key", "chat_sessions", ["key_id", "updated_at"])
    op.create_index("ix_chat_sessions_updated", "chat_sessions", ["updated_at"])
    op.create_table(
        "chat_threads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(96), nullable=False),
        sa.Column("key_id", sa.Integer, nullable=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("response_ref", sa.String(128), nullable=True),
        sa.Column("dialect", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("truncated", sa.Boolean, nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost_micro", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_chat_threads_session", "chat_threads", ["session_id", "id"])
    op.create_index("ix_chat_threads_owner", "chat_threads", ["owner", "id"])
    op.create_index("ix_chat_threads_response_ref", "chat_threads", ["response_ref"])
    op.create_index("ix_chat_threads_created", "chat_threads", ["created_at"])
    op.create_table(
        "record_settings",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("scope_id", sa.String(64), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_chat_sessions_search ON chat_sessions USING gin ({SEARCH_SESSIONS})")
        op.execute(f"CREATE INDEX ix_chat_threads_search ON chat_threads USING gin ({SEARCH_THREADS})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_chat_threads_search")
        op.execute("DROP INDEX IF EXISTS ix_chat_sessions_search")
    op.drop_table("record_settings")
    for name in ("ix_chat_threads_created", "ix_chat_threads_response_ref", "ix_chat_threads_owner",
                 "ix_chat_threads_session"):
        op.drop_index(name, table_name="chat_threads")
    op.drop_table("chat_threads")
    for name in ("ix_chat_sessions_updated", "ix_chat_sessions_key", "ix_chat_sessions_owner_updated"):
        op.drop_index(name, table_name="chat_sessions")
    op.drop_table("chat_sessions")
