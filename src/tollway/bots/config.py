"""A Feishu bot's settings: validated from an admin's save body, sealed for the store, masked
for listings, opened for use.

A save body has ``name``, ``provider`` (kept as given) and ``config``: a JSON object or a string
holding one (seed 004 sends a string), with ``appId``, ``appSecret``, ``apiKey`` (the Tollway
key ``tw-...`` that pays for the bot's calls), ``modelId``, and optionally ``verificationToken``,
``encryptKey`` and ``apiBase`` (default ``https://open.feishu.cn``; Lark:
``https://open.larksuite.com``). Config fields may also come at the top level (seed 004's update
example); they are merged over ``config``. On an update a field not given keeps its value, and
a secret sent back as its listing mask (``abcd…``) too; ``verificationToken`` and ``encryptKey``
are cleared with ``""`` or ``null``.

Secrets (``SECRETS``) are stored as ``SecretBox`` tokens; a listing shows their first 4
characters and ``…``.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import urlsplit

from tollway.auth.keys import hash_secret
from tollway.auth.secret_box import SecretBox
from tollway.bots.feishu import DEFAULT_API_BASE
from tollway.core.errors import ConfigError, InvalidRequest
from tollway.core.json_input import loads
from tollway.routing.gateway import Gateway

SECRETS = ("appSecret", "apiKey", "verificationToken", "encryptKey")
OPTIONAL = ("verificationToken", "encryptKey")
FIELDS = ("appId", "appSecret", "apiKey", "modelId", "verificationToken", "encryptKey", "apiBase")
BODY = frozenset({"id", "name", "provider", "config", *FIELDS})
READ_ONLY = frozenset({"app_id", "model", "key_id", "event_url", "created_at", "updated_at", "kind"})
MAX_CONFIG = 16 * 1024
MASK = "…"
_LIMITS = {"appId": 128, "appSecret": 512, "apiKey": 512, "modelId": 200, "verificationToken": 512,
           "encryptKey": 512, "apiBase": 300}


class BotSettings(NamedTuple):
    """A bot's opened config: what handling its events needs."""

    app_id: str
    app_secret: str
    api_key: str
    model: str
    verification_token: str
    encrypt_key: str
    api_base: str


class Saved(NamedTuple):
    """What a save writes: the listing columns and the sealed config."""

    name: str
    provider: str
    app_id: str
    model: str
    key_id: int | None
    config: dict[str, Any]


def masked(value: str) -> str:
    return value[:4] + MASK if value else ""


def _text(value: Any, name: str, limit: int, *, blank: bool = False) -> str:
    if not isinstance(value, str) or (not blank and not value.strip()):
        raise InvalidRequest(f"{name} must be a non-empty string", param=name)
    if len(value) > limit or not value.isprintable():
        raise InvalidRequest(f"{name} must be at most {limit} printable characters", param=name)
    return value.strip()


def _config(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        if len(value.encode()) > MAX_CONFIG:
            raise InvalidRequest(f"config must be at most {MAX_CONFIG} bytes", param="config")
        value = loads(value, invalid="config is not valid JSON", param="config")
    if not isinstance(value, dict):
        raise InvalidRequest("config must be a JSON object (or a string holding one)", param="config")
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        raise InvalidRequest(f"unknown config field(s): {', '.join(unknown)}; known: {', '.join(FIELDS)}",
                             param="config")
    return dict(value)


def _api_base(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise InvalidRequest("apiBase must be an http(s) URL such as https://open.feishu.cn",
                             param="apiBase") from None
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InvalidRequest("apiBase must be an http(s) URL such as https://open.feishu.cn", param="apiBase")
    return value.rstrip("/")


def requested(body: dict[str, Any]) -> dict[str, Any]:
    """The config fields a save body gives: ``config`` with the top-level fields over it."""
    unknown = sorted(set(body) - BODY - READ_ONLY)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}", param=unknown[0])
    given = _config(body.get("config"))
    given.update({k: body[k] for k in FIELDS if k in body})
    return given


async def validate(gw: Gateway, box: SecretBox, body: dict[str, Any], before: dict[str, Any] | None,
                   old: tuple[str, str] | None) -> Saved:
    """A save body (over the stored config ``before`` and (name, provider) ``old`` on an update)
    checked and sealed."""
    given = requested(body)
    clear: dict[str, str] = {}
    for field in FIELDS:
        value = given.get(field)
        if field in SECRETS and isinstance(value, str) and value.endswith(MASK) and before is not None:
            value = None  # a listing's mask sent back: unchanged
        if value is None or (value == "" and field in OPTIONAL):
            if field in OPTIONAL and field in given:
                clear[field] = ""  # cleared
            elif before is not None and field in before:
                clear[field] = open_value(box, field, before[field])
            continue
        clear[field] = _text(value, field, _LIMITS[field])
    missing = [f for f in ("appId", "appSecret", "apiKey", "modelId") if not clear.get(f)]
    if missing:
        raise InvalidRequest(f"config needs {', '.join(missing)}", param=missing[0])
    clear["apiBase"] = _api_base(clear.get("apiBase") or DEFAULT_API_BASE)
    if any(c.isspace() for c in clear["appId"] + clear["modelId"]):
        raise InvalidRequest("appId and modelId must not contain whitespace", param="appId")
    key = await gw.keys.by_hash(hash_secret(clear["apiKey"]))
    if key is None or key.revoked_at is not None:
        raise InvalidRequest("apiKey must be a live Tollway key (tw-...) of this gateway", param="apiKey")
    name = body.get("name")
    provider = body.get("provider")
    if old is None and name is None:
        raise InvalidRequest("name is required", param="name")
    return Saved(
        name=_text(name, "name", 200) if name is not None else old[0] if old else "",
        provider=_text(provider, "provider", 64, blank=True) if provider is not None else old[1] if old else "",
        app_id=clear["appId"], model=clear["modelId"], key_id=key.id,
        config={f: box.encrypt(v) if f in SECRETS and v else v for f, v in clear.items()},
    )


def open_value(box: SecretBox, field: str, value: Any) -> str:
    if not isinstance(value, str):
        return ""
    return box.decrypt(value) if field in SECRETS and value else value


def settings(box: SecretBox, config: dict[str, Any]) -> BotSettings:
    """A stored config opened; ConfigError when it lacks what a bot needs."""
    values = {f: open_value(box, f, config.get(f)) for f in FIELDS}
    if not all(values[f] for f in ("appId", "appSecret", "apiKey", "modelId")):
        raise ConfigError("a stored bot lacks appId, appSecret, apiKey or modelId")
    return BotSettings(app_id=values["appId"], app_secret=values["appSecret"], api_key=values["apiKey"],
                       model=values["modelId"], verification_token=values["verificationToken"],
                       encrypt_key=values["encryptKey"], api_base=values["apiBase"] or DEFAULT_API_BASE)


def listed(box: SecretBox, config: dict[str, Any]) -> dict[str, str]:
    """A stored config as a listing shows it: secrets masked."""
    out = {}
    for field in FIELDS:
        value = open_value(box, field, config.get(field))
        out[field] = masked(value) if field in SECRETS else value
    return out
