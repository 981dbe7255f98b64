"""The Feishu/Lark open API calls a bot makes, over one aiohttp session for every bot.

- ``POST {base}/open-apis/auth/v3/tenant_access_token/internal`` ``{"app_id", "app_secret"}`` ->
  ``{"code": 0, "tenant_access_token", "expire": <seconds>}``: cached per app (and secret) until
  ``REFRESH_MARGIN`` before it expires; a call answered with an invalid-token code (99991661,
  99991663) fetches a new one and is tried once more.
- ``GET {base}/open-apis/bot/v3/info`` -> ``{"code": 0, "bot": {"open_id", ...}}``: the bot's own
  open id, to tell its mentions in a group from others'; cached per app.
- ``POST {base}/open-apis/im/v1/messages/{message_id}/reply`` and ``POST {base}/open-apis/im/v1/
  messages?receive_id_type=chat_id``, ``{"msg_type": "text", "content": "{\\"text\\": ...}"}``.

Every answer is ``{"code", "msg", ...}``; a code other than 0 (or a transport failure) is a
``FeishuApiError``. Secrets and tokens are never logged nor put in an error's text.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

import msgspec

if TYPE_CHECKING:
    import aiohttp

TOKEN_INVALID = frozenset({99991661, 99991663})
REFRESH_MARGIN = 300.0  # seconds before a token's expiry when it is fetched again
MAX_TEXT = 30_000  # characters of one text message (the platform's limit is 150 KB of request)
MAX_APPS = 10_000  # apps whose token and open id are cached
_encoder = msgspec.json.Encoder()


class FeishuApiError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"feishu api error {code}: {msg}")
        self.code, self.msg = code, msg


class App(NamedTuple):
    """One Feishu/Lark app: where its API is and its credentials."""

    api_base: str
    app_id: str
    app_secret: str

    @property
    def cache_key(self) -> tuple[str, str, str]:
        return self.api_base, self.app_id, hashlib.sha256(self.app_secret.encode()).hexdigest()


class _Token(NamedTuple):
    value: str
    refresh_at: float


def text_content(text: str) -> str:
    """A text message's ``content``: the JSON string of ``{"text": ...}``."""
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + "…"
    return _encoder.encode({"text": text}).decode()


class FeishuApi:
    def __init__(self, *, timeout: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout = timeout
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._open_ids: dict[tuple[str, str, str], str] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    def _http(self) -> aiohttp.ClientSession:
        import aiohttp  # with a bot's first call, not at start (issue 19)

        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self._timeout, connect=min(5.0, self._timeout))
            self._session = aiohttp.ClientSession(timeout=timeout, raise_for_status=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, url: str, *, token: str | None = None,
                    body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = _encoder.encode(body) if body is not None else None
        import aiohttp

        try:
            async with self._http().request(method, url, data=data, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FeishuApiError(-1, f"{type(exc).__name__} calling {url.split('?')[0]}") from None
        try:
            answer = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise FeishuApiError(-1, f"HTTP {status}, not JSON, from {url.split('?')[0]}") from None
        if not isinstance(answer, dict):
            raise FeishuApiError(-1, f"HTTP {status}, not a JSON object, from {url.split('?')[0]}")
        code = answer.get("code")
        if code != 0:
            msg = answer.get("msg")
            raise FeishuApiError(code if isinstance(code, int) else -1,
                                 str(msg)[:200] if msg is not None else f"HTTP {status}")
        return answer

    def _lock(self, key: tuple[str, str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            if len(self._locks) >= MAX_APPS:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _remember(self, table: dict[tuple[str, str, str], Any], key: tuple[str, str, str], value: Any) -> None:
        if key not in table and len(table) >= MAX_APPS:
            del table[next(iter(table))]
        table[key] = value

    async def tenant_token(self, app: App, *, stale: str | None = None) -> str:
        """The app's tenant access token; ``stale``: a token the platform refused, fetched anew."""
        key = app.cache_key
        async with self._lock(key):  # one fetch per app at a time: a burst of events shares it
            cached = self._tokens.get(key)
            if cached is not None and cached.value != stale and self._clock() < cached.refresh_at:
                return cached.value
            answer = await self._call("POST", f"{app.api_base}/open-apis/auth/v3/tenant_access_token/internal",
                                      body={"app_id": app.app_id, "app_secret": app.app_secret})
            token, expire = answer.get("tenant_access_token"), answer.get("expire")
            if not isinstance(token, str) or not token:
                raise FeishuApiError(-1, "tenant_access_token missing from the answer")
            life = float(expire) if isinstance(expire, int | float) and expire > 0 else 0.0
            margin = min(REFRESH_MARGIN, life / 2)
            self._remember(self._tokens, key, _Token(token, self._clock() + life - margin))
            return token

    async def _authorized(self, app: App, method: str, url: str, body: dict[str, Any] | None = None
                          ) -> dict[str, Any]:
        token = await self.tenant_token(app)
        try:
            return await self._call(method, url, token=token, body=body)
        except FeishuApiError as err:
            if err.code not in TOKEN_INVALID:
                raise
        token = await self.tenant_token(app, stale=token)
        return await self._call(method, url, token=token, body=body)

    async def bot_open_id(self, app: App) -> str:
        key = app.cache_key
        known = self._open_ids.get(key)
        if known is not None:
            return known
        answer = await self._authorized(app, "GET", f"{app.api_base}/open-apis/bot/v3/info")
        bot = answer.get("bot")
        open_id = bot.get("open_id") if isinstance(bot, dict) else None
        if not isinstance(open_id, str) or not open_id:
            raise FeishuApiError(-1, "bot.open_id missing from the answer")
        self._remember(self._open_ids, key, open_id)
        return open_id

    async def reply(self, app: App, message_id: str, text: str) -> None:
        url = f"{app.api_base}/open-apis/im/v1/messages/{quote(message_id, safe='')}/reply"
        await self._authorized(app, "POST", url, {"msg_type": "text", "content": text_content(text)})

    async def send(self, app: App, chat_id: str, text: str) -> None:
        await self._authorized(app, "POST", f"{app.api_base}/open-apis/im/v1/messages?receive_id_type=chat_id",
                               {"receive_id": chat_id, "msg_type": "text", "content": text_content(text)})
