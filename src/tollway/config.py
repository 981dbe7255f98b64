"""Settings: one typed object, from environment variables, CLI flags and an optional YAML file.

Environment (all optional):
  TOLLWAY_HOST / TOLLWAY_PORT         bind address (127.0.0.1:4000)
  TOLLWAY_DATA_DIR                    state directory (./.tollway); the SQLite file lives here
  TOLLWAY_DATABASE_URL                SQLAlchemy async URL (sqlite+aiosqlite:///<data>/tollway.db)
  TOLLWAY_REDIS_URL                   redis://... : pools, limits, wallets and cache invalidation shared by
                                      every process (needed for --workers above 1)
  TOLLWAY_REDIS_PREFIX                prefix of every Redis key (tollway:)
  TOLLWAY_BILLING                     off: reserve and charge nothing, even for priced models (on)
  TOLLWAY_UNPRICED_MODELS             deny: keys may not call models without a price (allow)
  TOLLWAY_LEDGER_FLUSH_INTERVAL       seconds between ledger writes of settled requests (0.1)
  TOLLWAY_RESERVE_OUTPUT_TOKENS       output tokens held for a request without max_tokens (4096)
  TOLLWAY_ADMIN_KEY                   the admin secret; generated once and stored hashed if unset
  TOLLWAY_CONFIG                      YAML file with providers, models and aliases
  TOLLWAY_CONNECT_TIMEOUT / TOLLWAY_FIRST_BYTE_TIMEOUT / TOLLWAY_IDLE_TIMEOUT   seconds
  TOLLWAY_MAX_BODY_BYTES              largest request body accepted (20 MiB)
  TOLLWAY_MAX_UPLOAD_BYTES            largest upload (an audio file to transcribe) accepted (25 MiB)
  TOLLWAY_TASK_WORKERS                tasks (images, videos) one process runs at once (4)
  TOLLWAY_TASK_LEASE                  seconds a task stays claimed by a process that stopped renewing it (30)
  TOLLWAY_TASK_TIMEOUT                seconds a task may run before it fails (1800)
  TOLLWAY_TASK_POLL_INTERVAL          seconds before an upstream's video job is first polled (2; then x1.5, up to 30)
  TOLLWAY_TASK_RETENTION_DAYS         how long finished tasks and their results are kept (7)
  TOLLWAY_METRICS                     off: no GET /metrics and no counting (on)
  TOLLWAY_METRICS_TOKEN               a bearer that may scrape /metrics (the admin identity always may)
  TOLLWAY_METRICS_RAW_MODELS          on: model labels as asked, even names no catalog lists (off: "other")
  TOLLWAY_LOG_FORMAT                  json: one JSON line per request and per log record (text)
  TOLLWAY_RECORD_CHATS                off: record no chat unless a key, group or studio says so (on)
  TOLLWAY_RECORD_RETENTION_DAYS       how long chat records are kept (90)
  TOLLWAY_RECORD_MAX_CHARS            characters of a record's input and of its answer kept (32000; more is cut, marked)
  TOLLWAY_BLOB_URL_TTL                seconds a signed URL of a task's result stays valid (3600)
  TOLLWAY_LOG_FLUSH_INTERVAL / TOLLWAY_LOG_BATCH   request-log batching
  TOLLWAY_CHANGE_POLL_INTERVAL        how often caches look for changes by other processes (0.5 s)
  TOLLWAY_SHUTDOWN_GRACE              seconds in-flight requests get to finish after SIGTERM (30)
  TOLLWAY_TRUSTED_PROXIES             addresses / networks (or *) whose X-Forwarded-For and -Proto are believed
                                      (none: request.client is always the connection's peer)
  TOLLWAY_CLIENT_HEADER_TIMEOUT / TOLLWAY_CLIENT_BODY_TIMEOUT / TOLLWAY_CLIENT_READ_TIMEOUT   seconds a client
                                      gets for its headers (10), its body (60), and between two reads of it (15)
  TOLLWAY_KEEPALIVE_TIMEOUT           seconds an idle keep-alive connection stays open (5)
  TOLLWAY_MAX_CONNECTIONS             open client connections per process (1000); more are refused with 503
  TOLLWAY_MAX_HEADER_BYTES            request line and headers (64 KiB); larger gets 431
  TOLLWAY_MAX_INFLIGHT_PER_ACCOUNT    calls at once per account-style credential (a DS2API login) (2)
  TOLLWAY_MAX_INFLIGHT_PER_API_KEY    calls at once per API-key credential (1000)
  TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL  both of those at once (a kind's own variable wins)
  TOLLWAY_QUEUE_SIZE / TOLLWAY_QUEUE_TIMEOUT   waiting room when every credential is busy (100, 30 s)
  TOLLWAY_COOLDOWN_BASE / TOLLWAY_COOLDOWN_MAX  backoff of a failing credential (1 s doubling, up to 300 s)
  TOLLWAY_LEASE_TTL                   how soon a crashed process's in-flight slots come back (60 s)
  TOLLWAY_MAX_ATTEMPTS                attempts per model on different credentials (3), then its fallbacks
  TOLLWAY_MEDIA_MAX_BYTES / TOLLWAY_MEDIA_TIMEOUT   limits on images/documents fetched by URL
  TOLLWAY_MEDIA_MAX_URLS / TOLLWAY_MEDIA_MAX_TOTAL_BYTES   per-request bounds on those fetches
  TOLLWAY_MEDIA_MAX_INFLIGHT_BYTES    fetched media bytes held at once by all requests of a process (128 MiB)
  TOLLWAY_MEDIA_ALLOW_PRIVATE         let those fetches reach private/loopback addresses (tests only)
  TOLLWAY_DISCOVERY_INTERVAL          how often Ollama / OpenAI-compatible servers are asked for models (60 s)
  provider variables: OPENAI_API_KEY, OPENAI_BASE_URL, DEEPSEEK_API_KEY, DEEPSEEK_BASE_URL,
  OLLAMA_BASE_URL (see README)
"""

from __future__ import annotations

import ipaddress
import math
import os
from pathlib import Path
from typing import Any

import msgspec

from tollway.core.catalog import Credential, ModelInfo, ProviderConfig
from tollway.core.errors import ConfigError
from tollway.providers.http import Timeouts
from tollway.providers.kinds import KINDS
from tollway.providers.media import MediaPolicy
from tollway.routing.pools import PoolOptions


class ConnectionLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What a client may take of the HTTP server (``server.GuardedHttpToolsProtocol``)."""

    header_timeout: float = 10.0  # connection (or request) start -> complete headers
    body_timeout: float = 60.0  # complete headers -> the body's last byte
    read_timeout: float = 15.0  # the longest gap between two reads of a body
    max_header_bytes: int = 64 * 1024  # request line and headers
    max_connections: int = 1000  # open connections per process


class FileConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What a YAML config file adds: providers (several credentials each), models, aliases."""

    providers: tuple[ProviderConfig, ...] = ()
    models: tuple[ModelInfo, ...] = ()
    aliases: dict[str, str] = msgspec.field(default_factory=dict)
    # seed 002's claude_mapping: {fast: model, slow: model}. A Claude model name that is not a
    # configured model goes to "slow" when it names an opus/reasoner/slow family, else "fast"
    claude_mapping: dict[str, str] = msgspec.field(default_factory=dict)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 4000
    workers: int = 1
    data_dir: str = ".tollway"
    database_url: str = ""
    redis_url: str = ""  # shared state across processes: pools, limits, wallets, cache invalidation
    redis_prefix: str = "tollway:"
    billing: bool = True  # reserve and charge credits for priced models
    unpriced_models: str = "allow"  # deny: a key may not call a model without a price
    ledger_flush_interval: float = 0.1
    reserve_output_tokens: int = 4096  # what a request without max_tokens reserves, if its model says none
    admin_key: str | None = None
    config_file: str | None = None
    timeouts: Timeouts = Timeouts()
    max_body_bytes: int = 20 * 1024 * 1024
    log_flush_interval: float = 0.5
    log_batch: int = 500
    change_poll_interval: float = 0.5
    discovery_interval: float = 60.0
    shutdown_grace: float = 30.0
    trusted_proxies: tuple[str, ...] = ()  # whose X-Forwarded-For / -Proto uvicorn believes (none by default)
    connections: ConnectionLimits = ConnectionLimits()  # deadlines and bounds on what clients send
    keepalive_timeout: int = 5
    media: MediaPolicy = MediaPolicy()
    pool: PoolOptions = PoolOptions()  # every provider's, unless its YAML options say otherwise
    max_attempts: int = 3
    response_retention_days: float = 30.0  # how long stored Responses API responses are kept
    background_timeout: float = 3600.0  # how long a background response may run
    max_background: int = 1000  # background responses one process runs at once
    max_upload_bytes: int = 25 * 1024 * 1024  # an audio file to transcribe
    task_workers: int = 4  # tasks one process runs at once
    task_lease: float = 30.0  # seconds a task stays claimed by a process that stopped renewing it
    task_timeout: float = 1800.0  # seconds a task may run before it fails
    task_poll_interval: float = 2.0  # first wait before an upstream's job is polled (then x1.5, up to 30 s)
    task_retention_days: float = 7.0  # how long finished tasks and their results are kept
    blob_url_ttl: float = 3600.0  # how long a signed URL of a task's result is valid
    metrics: bool = True
    metrics_raw_models: bool = False
    log_format: str = "text"
    record_chats: bool = True  # the gateway's default; keys, groups and studios may say otherwise
    record_retention_days: float = 90.0
    record_max_chars: int = 32_000
    file: FileConfig = FileConfig()
    env: dict[str, str] = msgspec.field(default_factory=dict)


def _choice(env: dict[str, str], key: str, choices: tuple[str, ...], default: str) -> str:
    value = (env.get(key) or default).strip().lower()
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _float(env: dict[str, str], key: str, default: float, high: float = 86400.0) -> float:
    if not env.get(key):
        return default
    try:
        value = float(env[key])
    except ValueError:
        raise ConfigError(f"{key} must be a number, not {env[key]!r}") from None
    if not (math.isfinite(value) and 0 < value <= high):
        raise ConfigError(f"{key} must be a number greater than 0 and at most {high:g}, not {env[key]!r}")
    return value


def _int(value: object, key: str, default: int, low: int = 1, high: int = 2**31 - 1) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(str(value))
    except ValueError:
        raise ConfigError(f"{key} must be an integer, not {value!r}") from None
    if not low <= n <= high:
        raise ConfigError(f"{key} must be between {low} and {high}, not {n}")
    return n


def _flag(env: dict[str, str], key: str) -> bool:
    value = env.get(key, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{key} must be 1/0, true/false, yes/no or on/off, not {env[key]!r}")


def _proxies(env: dict[str, str]) -> tuple[str, ...]:
    """TOLLWAY_TRUSTED_PROXIES: comma-separated addresses and networks, or ``*`` (any peer)."""
    items = tuple(p.strip() for p in env.get("TOLLWAY_TRUSTED_PROXIES", "").split(",") if p.strip())
    if "*" in items:
        return ("*",)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"TOLLWAY_TRUSTED_PROXIES: {item!r} is not an IP address or network "
                              "(e.g. 10.0.0.5, 10.0.0.0/8, ::1, or * for any)") from None
    return items


def _secret(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: an api_key must be a non-empty string")
    return value


def _provider_from_yaml(raw: dict[str, Any], env: dict[str, str]) -> ProviderConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"each provider must be a mapping, not {raw!r}")
    name = raw.get("name")
    kind = raw.get("kind", "openai_compatible")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"a provider needs a name without '/': {raw!r}")
    if kind not in KINDS:
        raise ConfigError(f"provider {name!r}: kind must be one of {sorted(KINDS)}, not {kind!r}")
    if name == "echo":
        raise ConfigError("provider name 'echo' is reserved for the built-in test model")
    if kind in ("openai_compatible", "ollama") and not raw.get("base_url"):
        raise ConfigError(f"provider {name!r}: a {kind} provider needs base_url")
    base_url = raw.get("base_url") or ""
    if base_url and not (isinstance(base_url, str) and base_url.startswith(("http://", "https://"))):
        raise ConfigError(f"provider {name!r}: base_url must be an http(s) URL, not {base_url!r}")
    creds = [_credential(c, name, i, env) for i, c in enumerate(_list(raw.get("credentials"), f"{name}.credentials"))]
    if raw.get("api_key") or raw.get("api_key_env"):
        creds.append(_credential({"id": f"{name}:key", "api_key": raw.get("api_key"),
                                  "api_key_env": raw.get("api_key_env")}, name, len(creds), env))
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"provider {name!r}: options must be a mapping")
    return ProviderConfig(name=name, kind=kind, base_url=base_url, credentials=tuple(creds), options=dict(options))


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list")
    return value


def _credential(c: object, provider: str, i: int, env: dict[str, str]) -> Credential:
    where = f"provider {provider!r} credential {i}"
    if not isinstance(c, dict):
        raise ConfigError(f"{where} must be a mapping with api_key or api_key_env")
    if c.get("api_key") is not None:
        secret = _secret(c["api_key"], where)
    elif c.get("api_key_env"):
        if not env.get(str(c["api_key_env"])):
            raise ConfigError(f"{where}: environment variable {c['api_key_env']} is not set")
        secret = env[str(c["api_key_env"])]
    else:
        raise ConfigError(f"{where} needs api_key or api_key_env")
    extra = {}
    if c.get("max_inflight") is not None:  # this credential's own cap of calls at once
        extra["max_inflight"] = str(_int(c["max_inflight"], f"{where}: max_inflight", 1, high=1_000_000))
    for field in _CREDENTIAL_EXTRA:  # a second part some providers need (Bedrock's access key id)
        value = c.get(field)
        if value is None and c.get(f"{field}_env"):
            value = env.get(str(c[f"{field}_env"]))
            if not value:
                raise ConfigError(f"{where}: environment variable {c[f'{field}_env']} is not set")
        if value is not None:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}: {field} must be a non-empty string")
            extra[field] = value
    return Credential(id=str(c.get("id") or f"{provider}:{i}"), secret=secret, extra=extra)


_CREDENTIAL_EXTRA = ("access_key_id", "session_token")


def load_file_config(path: str, env: dict[str, str]) -> FileConfig:
    """The YAML config; any problem is a ConfigError naming the file and what is wrong."""
    import yaml  # only with a config file: start-up time and memory (issue 19)

    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path}: not valid YAML: {' '.join(str(exc).split())}") from None
    try:
        if not isinstance(raw, dict):
            raise ConfigError("the file must hold a mapping (providers, models, aliases)")
        providers = tuple(_provider_from_yaml(p, env) for p in _list(raw.get("providers"), "providers"))
        models = []
        for m in _list(raw.get("models"), "models"):
            if not isinstance(m, dict):
                raise ConfigError(f"each model must be a mapping, not {m!r}")
            m = dict(m)
            m.setdefault("upstream_id", m.get("id"))
            models.append(msgspec.convert(m, ModelInfo))
        aliases_raw = raw.get("aliases") or {}
        if not isinstance(aliases_raw, dict):
            raise ConfigError("aliases must be a mapping of name: model")
        aliases = {str(k): str(v) for k, v in aliases_raw.items()}
        mapping_raw = raw.get("claude_mapping") or {}
        if not isinstance(mapping_raw, dict) or not set(mapping_raw) <= {"fast", "slow"}:
            raise ConfigError("claude_mapping must be a mapping with the keys fast and/or slow")
        claude_mapping = {str(k): str(v) for k, v in mapping_raw.items()}
    except ConfigError as exc:
        raise ConfigError(f"config {path}: {exc.message}") from None
    except msgspec.ValidationError as exc:
        raise ConfigError(f"config {path}: a model is malformed: {exc}") from None
    return FileConfig(providers=providers, models=tuple(models), aliases=aliases, claude_mapping=claude_mapping)


def load_settings(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    o = {k: v for k, v in (overrides or {}).items() if v is not None}
    data_dir = o.get("data_dir") or env.get("TOLLWAY_DATA_DIR") or ".tollway"
    config_file = o.get("config_file") or env.get("TOLLWAY_CONFIG") or None
    database_url = env.get("TOLLWAY_DATABASE_URL") or ""
    if not database_url:
        database_url = f"sqlite+aiosqlite:///{Path(data_dir).resolve() / 'tollway.db'}"
    every_credential = _int(env.get("TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL"), "TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL", 0,
                            high=1_000_000)
    return Settings(
        host=o.get("host") or env.get("TOLLWAY_HOST") or "127.0.0.1",
        port=_int(o.get("port") or env.get("TOLLWAY_PORT"), "TOLLWAY_PORT", 4000, high=65535),
        workers=_int(o.get("workers") or env.get("TOLLWAY_WORKERS"), "TOLLWAY_WORKERS", 1, high=64),
        data_dir=data_dir,
        database_url=database_url,
        redis_url=env.get("TOLLWAY_REDIS_URL") or "",
        redis_prefix=env.get("TOLLWAY_REDIS_PREFIX") or "tollway:",
        billing=env.get("TOLLWAY_BILLING", "on").strip().lower() not in ("0", "off", "false", "no"),
        unpriced_models=_choice(env, "TOLLWAY_UNPRICED_MODELS", ("allow", "deny"), "allow"),
        ledger_flush_interval=_float(env, "TOLLWAY_LEDGER_FLUSH_INTERVAL", 0.1, high=60.0),
        reserve_output_tokens=_int(env.get("TOLLWAY_RESERVE_OUTPUT_TOKENS"), "TOLLWAY_RESERVE_OUTPUT_TOKENS", 4096,
                                   high=10_000_000),
        admin_key=env.get("TOLLWAY_ADMIN_KEY") or None,
        config_file=config_file,
        timeouts=Timeouts(
            connect=_float(env, "TOLLWAY_CONNECT_TIMEOUT", 10.0),
            first_byte=_float(env, "TOLLWAY_FIRST_BYTE_TIMEOUT", 120.0),
            idle=_float(env, "TOLLWAY_IDLE_TIMEOUT", 120.0),
        ),
        max_body_bytes=_int(env.get("TOLLWAY_MAX_BODY_BYTES"), "TOLLWAY_MAX_BODY_BYTES", 20 * 1024 * 1024),
        log_flush_interval=_float(env, "TOLLWAY_LOG_FLUSH_INTERVAL", 0.5),
        log_batch=_int(env.get("TOLLWAY_LOG_BATCH"), "TOLLWAY_LOG_BATCH", 500),
        change_poll_interval=_float(env, "TOLLWAY_CHANGE_POLL_INTERVAL", 0.5),
        discovery_interval=_float(env, "TOLLWAY_DISCOVERY_INTERVAL", 60.0),
        shutdown_grace=_float(env, "TOLLWAY_SHUTDOWN_GRACE", 30.0),
        response_retention_days=_float(env, "TOLLWAY_RESPONSE_RETENTION_DAYS", 30.0, high=36500.0),
        background_timeout=_float(env, "TOLLWAY_BACKGROUND_TIMEOUT", 3600.0),
        max_background=_int(env.get("TOLLWAY_MAX_BACKGROUND"), "TOLLWAY_MAX_BACKGROUND", 1000, high=1_000_000),
        max_upload_bytes=_int(env.get("TOLLWAY_MAX_UPLOAD_BYTES"), "TOLLWAY_MAX_UPLOAD_BYTES", 25 * 1024 * 1024),
        task_workers=_int(env.get("TOLLWAY_TASK_WORKERS"), "TOLLWAY_TASK_WORKERS", 4, low=0, high=1000),
        task_lease=_float(env, "TOLLWAY_TASK_LEASE", 30.0, high=3600.0),
        task_timeout=_float(env, "TOLLWAY_TASK_TIMEOUT", 1800.0),
        task_poll_interval=_float(env, "TOLLWAY_TASK_POLL_INTERVAL", 2.0, high=300.0),
        task_retention_days=_float(env, "TOLLWAY_TASK_RETENTION_DAYS", 7.0, high=36500.0),
        blob_url_ttl=_float(env, "TOLLWAY_BLOB_URL_TTL", 3600.0, high=7 * 86400.0),
        metrics=env.get("TOLLWAY_METRICS", "on").strip().lower() not in ("0", "off", "false", "no"),
        metrics_raw_models=_flag(env, "TOLLWAY_METRICS_RAW_MODELS"),
        log_format=_choice(env, "TOLLWAY_LOG_FORMAT", ("text", "json"), "text"),
        record_chats=env.get("TOLLWAY_RECORD_CHATS", "on").strip().lower() not in ("0", "off", "false", "no"),
        record_retention_days=_float(env, "TOLLWAY_RECORD_RETENTION_DAYS", 90.0, high=36500.0),
        record_max_chars=_int(env.get("TOLLWAY_RECORD_MAX_CHARS"), "TOLLWAY_RECORD_MAX_CHARS", 32_000, low=100,
                              high=10_000_000),
        trusted_proxies=_proxies(env),
        connections=ConnectionLimits(
            header_timeout=_float(env, "TOLLWAY_CLIENT_HEADER_TIMEOUT", 10.0, high=3600.0),
            body_timeout=_float(env, "TOLLWAY_CLIENT_BODY_TIMEOUT", 60.0, high=86400.0),
            read_timeout=_float(env, "TOLLWAY_CLIENT_READ_TIMEOUT", 15.0, high=3600.0),
            max_header_bytes=_int(env.get("TOLLWAY_MAX_HEADER_BYTES"), "TOLLWAY_MAX_HEADER_BYTES", 64 * 1024,
                                  low=1024, high=16 * 1024 * 1024),
            max_connections=_int(env.get("TOLLWAY_MAX_CONNECTIONS"), "TOLLWAY_MAX_CONNECTIONS", 1000, high=1_000_000),
        ),
        keepalive_timeout=_int(env.get("TOLLWAY_KEEPALIVE_TIMEOUT"), "TOLLWAY_KEEPALIVE_TIMEOUT", 5, high=3600),
        media=MediaPolicy(
            max_bytes=_int(env.get("TOLLWAY_MEDIA_MAX_BYTES"), "TOLLWAY_MEDIA_MAX_BYTES", 20 * 1024 * 1024),
            timeout=_float(env, "TOLLWAY_MEDIA_TIMEOUT", 10.0, high=300.0),
            allow_private=_flag(env, "TOLLWAY_MEDIA_ALLOW_PRIVATE"),
            max_urls_per_request=_int(env.get("TOLLWAY_MEDIA_MAX_URLS"), "TOLLWAY_MEDIA_MAX_URLS", 16, high=1000),
            max_total_bytes=_int(env.get("TOLLWAY_MEDIA_MAX_TOTAL_BYTES"), "TOLLWAY_MEDIA_MAX_TOTAL_BYTES",
                                 50 * 1024 * 1024),
            max_inflight_bytes=_int(env.get("TOLLWAY_MEDIA_MAX_INFLIGHT_BYTES"), "TOLLWAY_MEDIA_MAX_INFLIGHT_BYTES",
                                    128 * 1024 * 1024),
        ),
        pool=PoolOptions(
            # seed 002's cap of 2 is for logged-in web accounts; an API key serves many calls at once
            max_inflight=_int(env.get("TOLLWAY_MAX_INFLIGHT_PER_ACCOUNT"), "TOLLWAY_MAX_INFLIGHT_PER_ACCOUNT",
                              every_credential or 2, high=1_000_000),
            api_key_max_inflight=_int(env.get("TOLLWAY_MAX_INFLIGHT_PER_API_KEY"), "TOLLWAY_MAX_INFLIGHT_PER_API_KEY",
                                      every_credential or 1000, high=1_000_000),
            queue_size=_int(env.get("TOLLWAY_QUEUE_SIZE"), "TOLLWAY_QUEUE_SIZE", 100, low=0, high=1_000_000),
            queue_timeout=_float(env, "TOLLWAY_QUEUE_TIMEOUT", 30.0, high=3600.0),
            cooldown_base=_float(env, "TOLLWAY_COOLDOWN_BASE", 1.0, high=3600.0),
            cooldown_max=_float(env, "TOLLWAY_COOLDOWN_MAX", 300.0),
            lease_ttl=_float(env, "TOLLWAY_LEASE_TTL", 60.0, high=3600.0),
        ),
        max_attempts=_int(env.get("TOLLWAY_MAX_ATTEMPTS"), "TOLLWAY_MAX_ATTEMPTS", 3, high=20),
        file=load_file_config(config_file, env) if config_file else FileConfig(),
        env=env,
    )
