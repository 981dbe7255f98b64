"""SQLAlchemy tables. ORM rows never leave ``store``: repositories return core types."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

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
    # money in integer micro-credits (1 credit = 1,000,000); the balance always equals the sum of
    # the key's ledger rows: both are written in one transaction
    Column("balance", BigInteger, nullable=False, default=0),
    Column("month_quota", BigInteger, nullable=True),  # spend per calendar month (UTC); None: no cap
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("models", Text, nullable=True),  # JSON list: a whitelist of model names; None: no whitelist
    Column("updated_at", Float, nullable=True),
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
    # what a call on a model without an operator price would cost at its provider's list price
    # (micro-USD, billing/reference_prices.py): an estimate, never charged; None when there is none
    Column("estimated_cost_micro", BigInteger, nullable=True),
    Column("dropped_params", Text, nullable=True),
    Column("note", Text, nullable=True),
    Column("attempts", Text, nullable=True),  # JSON: every upstream attempt (provider, credential, status)
    Column("upstream_model", String(200), nullable=True),  # the id the upstream was asked for
    Column("units", BigInteger, nullable=False, default=0),  # of the model's price unit (characters, seconds)
    Index("ix_request_logs_created_at", "created_at"),
    Index("ix_request_logs_key_id", "key_id"),
)

# --- billing and the model registry (seeds 003 and 004) ---------------------------------

groups = Table(
    "groups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("multiplier", BigInteger, nullable=False, default=1_000_000),  # price multiplier, parts per million
    # its keys may call only the models authorized to it (or to them); set by the first authorization
    # and kept until an admin clears it, so removing the last authorization never opens a group
    Column("restricted", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# models admins add or edit at run time; a name that a code catalog or the YAML also defines is
# overridden by its row (prices, enabled, display fields)
models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("provider", String(64), nullable=False),
    Column("upstream_id", String(200), nullable=False, default=""),
    Column("display_name", String(200), nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("category", String(32), nullable=False, default="chat"),
    Column("capabilities", Text, nullable=False, default="[]"),  # JSON list
    Column("modalities", Text, nullable=False, default="[]"),  # JSON list
    Column("aliases", Text, nullable=False, default="[]"),  # JSON list
    Column("config", Text, nullable=False, default="{}"),  # JSON object (seed 004), validated
    Column("price_in", BigInteger, nullable=False, default=0),  # micro-credits per million input tokens
    Column("price_out", BigInteger, nullable=False, default=0),  # micro-credits per million output tokens
    Column("credit_cost", BigInteger, nullable=False, default=0),  # micro-credits per request (per image)
    Column("unit_price", BigInteger, nullable=False, default=0),  # micro-credits per unit of price_unit
    Column("price_unit", String(16), nullable=False, default=""),  # "" | character | second
    Column("rpm", Integer, nullable=True),  # per key, on this model
    Column("tpm", Integer, nullable=True),
    Column("max_output_tokens", Integer, nullable=True),  # what a request without max_tokens reserves
    Column("group_id", Integer, nullable=True),  # seed 004's save: the group it was created for
    Column("multiple", Boolean, nullable=False, default=False),  # seed 004's flag, kept as given
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# model authorization (seed 004): by model name, so code-catalog models can be authorized too
group_models = Table(
    "group_models",
    metadata,
    Column("group_id", Integer, primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("created_at", Float, nullable=False),
)

key_models = Table(
    "key_models",
    metadata,
    Column("key_id", Integer, primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("created_at", Float, nullable=False),
)

# every credit movement: a recharge, or one billed request (the hold it reserved and what it was
# charged; a refunded request is charged 0). A key's balance equals the sum of its ``amount``s.
ledger = Table(
    "ledger",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("key_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),  # recharge | charge | refund
    Column("amount", BigInteger, nullable=False),  # signed micro-credits: what the balance moved by
    Column("reserved", BigInteger, nullable=False, default=0),  # the request's hold
    Column("month", String(7), nullable=False),  # YYYY-MM (UTC): the month a charge counts against
    Column("request_id", String(64), nullable=True),
    Column("model", String(200), nullable=True),
    Column("note", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_ledger_key_month", "key_id", "month"),
    Index("ix_ledger_key_created", "key_id", "created_at"),
    # one row per billed request: a batch written twice (a retry after a lost commit) is refused
    Index("ux_ledger_request", "request_id", unique=True),
)

# served requests whose settlement the wallet store (Redis) could not take: kept here, beside the
# ledger, until a process applies them to the wallet and books them (the row goes, the ledger row
# comes, in one transaction); nothing served is left unbilled by an outage or a crash meanwhile
pending_settlements = Table(
    "pending_settlements",
    metadata,
    Column("hold_id", String(64), primary_key=True),  # the hold it releases: applied once per hold
    Column("key_id", Integer, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("charge", BigInteger, nullable=False),  # what the request cost (micro-credits)
    Column("quota", BigInteger, nullable=True),  # the key's monthly quota when it was admitted
    Column("request_id", String(64), nullable=False),
    Column("model", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_pending_settlements_created", "created_at"),
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

# the Responses API's stored responses (store: true), kept until ``expires_at``: the Response
# object as the client got it, and the input items of its request (their ids assigned)
stored_responses = Table(
    "stored_responses",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("owner", String(96), nullable=False),  # "key:<id>", "admin" or "direct:<hash>"
    Column("previous_id", String(128), nullable=True),
    Column("model", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),  # None: kept until deleted
    Column("input", Text, nullable=False),  # JSON list of items
    Column("response", Text, nullable=False),  # JSON Response object
    Index("ix_stored_responses_owner", "owner"),
    Index("ix_stored_responses_expires", "expires_at"),
)

# durable asynchronous jobs (images and videos made as tasks): claimed by one process at a time
# through a lease (``lease_owner`` until ``lease_until``) that its owner renews while it works;
# a lease that runs out (its process died) lets another process take the task over
tasks = Table(
    "tasks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # image | video
    Column("shape", String(16), nullable=False),  # the API that made it: platform | openai | city
    Column("owner", String(96), nullable=False),  # "key:<id>" or "admin"
    Column("key_id", Integer, nullable=True),
    Column("studio_id", String(64), nullable=True),
    Column("model", String(200), nullable=False),  # as asked
    Column("status", String(16), nullable=False),  # pending | running | succeeded | failed | cancelled
    Column("progress", Integer, nullable=True),
    Column("request", Text, nullable=False),  # JSON: the canonical request
    Column("result", Text, nullable=True),  # JSON: the assets (blob names, media types) and usage
    Column("error_code", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("provider", String(64), nullable=True),
    Column("credential", String(200), nullable=True),  # the credential a long-running job is polled with
    Column("provider_task_id", String(300), nullable=True),
    Column("hold", BigInteger, nullable=False, default=0),  # micro-credits held for it
    Column("cost_micro", BigInteger, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),  # times a process took it on
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True),  # its results are deleted then (None: kept)
    Index("ix_tasks_owner", "owner", "created_at"),
    Index("ix_tasks_status_lease", "status", "lease_until"),
    Index("ix_tasks_expires", "expires_at"),
)

# chat records (seed 004): a session is one conversation, a thread one exchange in it, written
# behind the response in batches. ``owner`` is "key:<id>" or "admin"; ``client_ref`` what grouped
# the session (an X-Session-Id, metadata.session_id or user, a bot chat); None: a session of one
chat_sessions = Table(
    "chat_sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner", String(96), nullable=False),
    Column("key_id", Integer, nullable=True),
    Column("studio_id", String(64), nullable=True),
    Column("client_ref", String(300), nullable=True),
    Column("title", String(200), nullable=False, default=""),
    Column("model", String(200), nullable=True),
    Column("dialect", String(32), nullable=True),
    Column("threads", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("owner", "client_ref", name="uq_chat_sessions_owner_ref"),
    Index("ix_chat_sessions_owner_updated", "owner", "updated_at"),
    Index("ix_chat_sessions_key", "key_id", "updated_at"),
    Index("ix_chat_sessions_updated", "updated_at"),
)

chat_threads = Table(
    "chat_threads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", Integer, nullable=False),
    Column("owner", String(96), nullable=False),
    Column("key_id", Integer, nullable=True),
    Column("request_id", String(64), nullable=False),
    Column("response_ref", String(128), nullable=True),  # a Responses API response id (chains sessions)
    Column("dialect", String(32), nullable=False),
    Column("model", String(200), nullable=True),
    Column("input", Text, nullable=False),  # JSON list of {role, content}
    Column("output", Text, nullable=False),  # the answer's text as the client received it
    Column("truncated", Boolean, nullable=False, default=False),
    Column("stream", Boolean, nullable=False, default=False),
    Column("status", Integer, nullable=False),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cost_micro", BigInteger, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("created_at", Float, nullable=False),
    Index("ix_chat_threads_session", "session_id", "id"),
    Index("ix_chat_threads_owner", "owner", "id"),
    Index("ix_chat_threads_response_ref", "response_ref"),
    Index("ix_chat_threads_created", "created_at"),
)

# whether chats are recorded, per key, group or studio (``scope``: key | group | studio); a scope
# without a row follows the next one out (key, then group, then studio, then the gateway default)
record_settings = Table(
    "record_settings",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("scope_id", String(64), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# chat bots (issue 15): a Feishu/Lark app answered by a model and paid by a key. ``config`` is a
# JSON object whose secrets (appSecret, apiKey, verificationToken, encryptKey) are Fernet tokens
# (``auth.secret_box``); ``app_id``, ``model`` and ``key_id`` (the paying key) are copied out of it
# for listings. ``bot_events``: the event ids a bot has taken on (Feishu redelivers an event it
# thinks was missed), so that every replica answers one event once; kept about a day.
bots = Table(
    "bots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # "feishu"
    Column("name", String(200), nullable=False),
    Column("provider", String(64), nullable=False, default=""),  # as the admin gave it (seed 004)
    Column("app_id", String(128), nullable=False),
    Column("model", String(200), nullable=False),
    Column("key_id", Integer, nullable=True),
    Column("config", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_bots_kind", "kind", "id"),
)

bot_events = Table(
    "bot_events",
    metadata,
    Column("bot_id", Integer, primary_key=True),
    Column("event_id", String(128), primary_key=True),
    Column("created_at", Float, nullable=False),
    Index("ix_bot_events_created", "created_at"),
)

# --- alerts (issue 18) -------------------------------------------------------------------

# rules an operator sets (``tollway.alerts``): what to watch (``kind`` and its parameters), where to
# send it (``webhook``, sealed with the gateway's SecretBox, as is a Feishu signing ``secret``)
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, default=""),
    # quota | low_balance | credential | error_rate | latency_p99 | stranded_settlement | task_failures
    Column("kind", String(32), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("filters", Text, nullable=False, default="{}"),  # JSON: key_id, model, provider
    Column("threshold", String(40), nullable=True),  # a decimal, as given (credits for low_balance)
    Column("minutes", Integer, nullable=True),
    Column("window_minutes", Integer, nullable=True),
    Column("min_requests", Integer, nullable=True),
    Column("webhook", Text, nullable=False),  # SecretBox token of the URL
    Column("format", String(16), nullable=False, default="json"),  # json | slack | feishu
    Column("secret", Text, nullable=True),  # SecretBox token of Feishu's signing secret
    Column("debounce", Integer, nullable=False, default=60),  # minutes
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# every alert sent (or being sent): the row is claimed before the webhook is called, and the
# unique (rule, subject, period) lets exactly one process claim a firing. ``period`` is what makes
# a firing unique: "<YYYY-MM>/<percent>" for a quota threshold (once a month), "after:<id>" (the
# firing it follows: at most one successor of each, so one per debounce window) for the rest
alert_firings = Table(
    "alert_firings",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("rule_id", Integer, nullable=False),
    Column("subject", String(300), nullable=False),
    Column("period", String(64), nullable=False),
    Column("value", Float, nullable=True),
    Column("message", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False),  # sending | sent | failed | superseded
    Column("error", Text, nullable=True),
    Column("fired_at", Float, nullable=False),
    UniqueConstraint("rule_id", "subject", "period", name="ux_alert_firings_claim"),
    Index("ix_alert_firings_last", "rule_id", "subject", "fired_at"),
    Index("ix_alert_firings_fired", "fired_at"),
)
