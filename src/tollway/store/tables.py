"""SQLAlchemy tables. ORM rows never leave ``store``: repositories return core types."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, default=""),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False, default="user"),
    Column("email", String(320), nullable=False, default=""),
    Column("group_id", Integer, nullable=True),
    Column("studio_id", String(64), nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

request_logs = Table(
    "request_logs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("path", String(200), nullable=False),
    Column("dialect", String(32), nullable=False),
    Column("status", Integer, nullable=False),
    Column("key_id", Integer, nullable=True),
    Column("key_prefix", String(16), nullable=True),
    Column("studio_id", String(64), nullable=True),
    Column("model", String(200), nullable=True),
    Column("provider", String(64), nullable=True),
    Column("credential", String(200), nullable=True),
    Column("stream", Boolean, nullable=False, default=False),
    Column("error_code", String(64), nullable=True),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("ttft_ms", Float, nullable=True),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("reasoning_tokens", Integer, nullable=False, default=0),
    Column("cost_micro", BigInteger, nullable=False, default=0),
    Column("dropped_params", Text, nullable=True),
    Column("note", Text, nullable=True),
    Column("attempts", Text, nullable=True),  # JSON: every upstream attempt (provider, credential, status)
    Index("ix_request_logs_created_at", "created_at"),
    Index("ix_request_logs_key_id", "key_id"),
)

# upstream credentials managed at run time (seed 002's accounts), beside those of env and YAML
credentials = Table(
    "credentials",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("provider", String(64), nullable=False),
    Column("email", String(320), nullable=False, default=""),
    Column("mobile", String(64), nullable=False, default=""),
    Column("password", Text, nullable=True),
    Column("secret", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_credentials_provider", "provider"),
)

# --- the City surface (seed 000) ---------------------------------------------------------

studios = Table(
    "studios",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # active | paused
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("removed_at", Float, nullable=True),
)

env_vars = Table(
    "env_vars",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),  # encrypted with TOLLWAY_SECRET_KEY
    Column("updated_at", Float, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=True, unique=True),
    Column("name", String(200), nullable=False),
    Column("password_hash", Text, nullable=True),
    Column("studio_id", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
)

user_links = Table(
    "user_links",
    metadata,
    Column("provider", String(32), primary_key=True),
    Column("subject", String(200), primary_key=True),
    Column("user_id", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)

oauth_states = Table(
    "oauth_states",
    metadata,
    Column("state", String(128), primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("code_verifier", Text, nullable=False),
    Column("studio_id", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("token", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# small key/value facts: the admin secret's hash, the change revision counter
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
