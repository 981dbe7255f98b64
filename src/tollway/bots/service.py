"""Feishu bots at work: an event comes in, is checked, answered 200 at once, and handled behind.

``receive`` (on the request path, within Feishu's 3 seconds): the bot (404 when unknown); the
signature over the raw body when the bot has an Encrypt Key (401; a bot with one takes only
encrypted bodies), the body decrypted and parsed (400, nothing handled), the Verification Token
(401); a URL check is answered with its challenge; a message event is taken on unless its
``event_id`` was seen here (a bounded memory of a day) and handed to a background task.

``_handle`` (behind): the event id claimed in ``bot_events`` (another replica, or this one
before a restart, may have had it: then nothing more); the bot's key identified like any
caller's; in a group only a message that mentions the bot (its open id from ``bot/v3/info``, once
per app; when that fails, any mention counts); only text (anything else gets a short reply). The
chat's earlier turns (``records.history`` of ``key:<id>`` and ``feishu:<bot>:<chat>``) and the
message go to the bot's model through the pipeline (admitted, limited, billed to the key, logged
and recorded under that client ref); the answer, or a short reason when the model failed, is the
reply. A key that cannot pay (revoked, disabled, out of credits, out of quota) is said once per
chat and reason every ``NOTICE_EVERY`` seconds, and logged.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from tollway.auth.keys import Identity
from tollway.billing.admission import Bound, estimate_tokens
from tollway.bots import feishu
from tollway.bots.config import BotSettings, settings
from tollway.bots.feishu import MessageEvent, UrlVerification
from tollway.bots.feishu_api import App, FeishuApi, FeishuApiError
from tollway.core.catalog import Credential
from tollway.core.chat import ChatRequest, ChatResponse, Message, TextBlock
from tollway.core.errors import (
    AuthenticationFailed,
    ConfigError,
    InsufficientCredits,
    InternalError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    PoolExhausted,
    QuotaExceeded,
    TollwayError,
)
from tollway.core.json_input import loads
from tollway.providers.base import ChatProvider
from tollway.routing.catalog import Route
from tollway.routing.gateway import Gateway
from tollway.routing.pipeline import ChatPipeline
from tollway.store.bots import BotRepository

log = logging.getLogger("tollway.bots")
KIND = "feishu"
DIALECT = "feishu"
HISTORY = 20  # earlier turns of a chat sent with a message
MAX_OUTPUT = 1024  # tokens an answer may take (its hold)
SEEN_FOR = 86_400.0  # seconds an event id is remembered
MAX_SEEN = 100_000
NOTICE_EVERY = 6 * 3600.0  # seconds between two notices of one reason in one chat
MAX_NOTICES = 10_000
MAX_PENDING = 1_000  # events waiting or in hand; past it, 503 (Feishu delivers again later)
CONCURRENCY = 64  # events handled at once
PURGE_EVERY = 3600.0
ONLY_TEXT = "Sorry, I can only read text messages."
_NOTICES: dict[type[TollwayError], str] = {
    AuthenticationFailed: "This bot's API key is no longer valid; ask the gateway's administrator to fix the bot.",
    PermissionDenied: "This bot's API key may not be used right now: {message}",
    InsufficientCredits: "This bot's API key has run out of credits; ask the gateway's administrator to top it up.",
    QuotaExceeded: "This bot's API key has used up its monthly quota.",
}


class Bot:
    """A stored bot with its settings opened."""

    __slots__ = ("id", "settings")

    def __init__(self, bot_id: int, bot_settings: BotSettings) -> None:
        self.id = bot_id
        self.settings = bot_settings

    @property
    def app(self) -> App:
        s = self.settings
        return App(s.api_base, s.app_id, s.app_secret)


def request_id() -> str:
    """A request-log id shaped like the middleware's."""
    return f"req_{time.time_ns() // 1_000_000:012x}{random.getrandbits(48):012x}"


def _notice(err: TollwayError) -> str | None:
    for kind, text in _NOTICES.items():
        if isinstance(err, kind):
            return text.format(message=err.message)
    return None


class FeishuBots:
    def __init__(self, gw: Gateway, pipeline: ChatPipeline, *, api: FeishuApi | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.gw = gw
        self.pipeline = pipeline
        self.repo = BotRepository(gw.engine)
        self.api = api or FeishuApi()
        self._clock = clock
        self._seen: collections.OrderedDict[tuple[int, str], float] = collections.OrderedDict()
        self._notices: collections.OrderedDict[tuple[int, str, str], float] = collections.OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._purged = 0.0

    # the request path ----------------------------------------------------------------------

    async def load(self, bot_id: int) -> Bot:
        row = await self.repo.get(bot_id, KIND)
        box = self.gw.secret_box
        if row is None:
            raise NotFound("no such bot")
        if box is None:
            raise ConfigError("bots need the gateway's secret box")
        return Bot(row.id, settings(box, row.config))

    async def receive(self, bot_id: int, headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
        """Check and take on one delivery; its answer's body (errors are raised)."""
        bot = await self.load(bot_id)
        s = bot.settings
        signed = feishu.is_signed(headers)
        if s.encrypt_key and signed:
            feishu.check_signature(headers, s.encrypt_key, raw, self._clock())
        data = loads(raw, invalid="body is not valid JSON")
        if not isinstance(data, dict):
            raise InvalidRequest("body must be a JSON object")
        if s.encrypt_key:
            sealed = data.get("encrypt")
            if not isinstance(sealed, str):
                if not signed:
                    raise AuthenticationFailed("missing X-Lark-Signature")
                raise InvalidRequest("this bot has an encryptKey: its events must be encrypted")
            data = loads(feishu.decrypt(s.encrypt_key, sealed), invalid="encrypt does not hold JSON")
            if not isinstance(data, dict):
                raise InvalidRequest("an event must be a JSON object")
        elif "encrypt" in data:
            raise InvalidRequest("an encrypted event, but this bot has no encryptKey")
        if s.verification_token:
            feishu.check_token(data, s.verification_token)
        event = feishu.parse(data)
        if s.encrypt_key and not signed and not isinstance(event, UrlVerification):
            # the platform signs every event but the URL check
            raise AuthenticationFailed("missing X-Lark-Signature")
        if isinstance(event, UrlVerification):
            return {"challenge": event.challenge}
        if isinstance(event, MessageEvent):
            self._take(bot, event)
        return {}

    def _take(self, bot: Bot, event: MessageEvent) -> None:
        now = self._clock()
        seen = self._seen
        while seen and next(iter(seen.values())) < now - SEEN_FOR:
            seen.popitem(last=False)
        key = (bot.id, event.event_id)
        if key in seen:
            return
        if len(self._tasks) >= MAX_PENDING:
            raise PoolExhausted("too many bot events in hand: deliver it again later", retry_after=5.0)
        seen[key] = now
        if len(seen) > MAX_SEEN:
            seen.popitem(last=False)
        task = asyncio.create_task(self._guarded(bot, event), name=f"feishu-bot-{bot.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # behind --------------------------------------------------------------------------------

    async def _guarded(self, bot: Bot, event: MessageEvent) -> None:
        async with self._slots:
            try:
                await self._handle(bot, event)
            except FeishuApiError as err:
                log.warning("feishu bot %s: event %s: %s", bot.id, event.event_id, err)
            except Exception:
                log.exception("feishu bot %s: event %s failed", bot.id, event.event_id)

    async def _handle(self, bot: Bot, event: MessageEvent) -> None:
        await self._purge()
        if not await self.repo.claim(bot.id, event.event_id):
            return  # another process (or this one before a restart) took it on
        if event.sender_type != "user":
            return  # another bot's message: never a conversation between bots
        open_id: str | None = None
        if event.chat_type != "p2p" and event.mentions:
            try:
                open_id = await self.api.bot_open_id(bot.app)
            except FeishuApiError as err:
                log.warning("feishu bot %s: its open id is unknown (%s): any mention counts", bot.id, err)
        addressed, text = feishu.text_for_bot(event, open_id)
        if not addressed:
            return
        try:
            identity = await self.gw.identify({"authorization": f"Bearer {bot.settings.api_key}"}, direct=False)
        except (AuthenticationFailed, PermissionDenied) as err:
            await self._refused(bot, event, err)
            return
        if event.message_type != "text":
            await self._reply(bot, event, ONLY_TEXT)
            return
        if not text:
            return
        try:
            answer = await self._ask(bot, identity, event, text)
        except TollwayError as err:
            if _notice(err) is not None:
                await self._refused(bot, event, err)
            else:
                log.info("feishu bot %s: the model failed: %s %s", bot.id, err.http_status, err.code)
                await self._reply(bot, event, f"Sorry, the model failed: {err.message[:300]}")
            return
        await self._reply(bot, event, answer or "(the model gave an empty answer)")

    async def _ask(self, bot: Bot, identity: Identity, event: MessageEvent, text: str) -> str:
        """The model's answer to ``text`` after the chat's earlier turns, billed to the bot's key."""
        gw = self.gw
        client_ref = f"feishu:{bot.id}:{event.chat_id}"
        key = identity.key
        history = []
        if gw.records is not None and key is not None:
            history = await gw.records.history(Identity(key=key).owner, client_ref, limit=HISTORY)
        sent: list[dict[str, str]] = []
        for asked, answered in history:
            sent += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
        sent.append({"role": "user", "content": text})
        model = bot.settings.model
        req = ChatRequest(model=model, max_tokens=MAX_OUTPUT, messages=tuple(
            Message(role="user" if m["role"] == "user" else "assistant", content=(TextBlock(text=m["content"]),))
            for m in sent))
        call = gw.begin(request_id(), f"/bots/feishu/{bot.id}", DIALECT)
        call.identify(identity)
        if gw.records is not None:
            call.recording = gw.records.start(identity, DIALECT, b"", client_ref=client_ref)

        async def work(route: Route, provider: ChatProvider, credential: Credential) -> ChatResponse:
            return await provider.complete(req, upstream_model=route.model.upstream_id, credential=credential)

        bound = Bound(estimate_tokens("".join(m["content"] for m in sent)), MAX_OUTPUT)
        try:
            resp = await self.pipeline.attempts(call, model, work, bound=bound)
        except TollwayError as err:
            self._recorded(call.recording, sent, "")
            call.finish(err.http_status, err)
            raise
        except BaseException:
            self._recorded(call.recording, sent, "")
            call.finish(500, InternalError("the bot's call failed"))
            raise
        answer = "".join(b.text for b in resp.content if isinstance(b, TextBlock)).strip()
        call.usage(resp.usage)
        self._recorded(call.recording, sent, answer)
        call.finish(200)
        return answer

    @staticmethod
    def _recorded(recording: Any, sent: list[dict[str, str]], answer: str) -> None:
        if recording is not None:
            recording.messages = sent
            recording.answer = answer

    async def _refused(self, bot: Bot, event: MessageEvent, err: TollwayError) -> None:
        """Say once per chat and reason (every NOTICE_EVERY) why the bot's key cannot pay."""
        now = self._clock()
        notices = self._notices
        while notices and next(iter(notices.values())) < now - NOTICE_EVERY:
            notices.popitem(last=False)
        key = (bot.id, event.chat_id, err.code)
        if key in notices:
            log.info("feishu bot %s: its key was refused again (%s)", bot.id, err.code)
            return
        notices[key] = now
        if len(notices) > MAX_NOTICES:
            notices.popitem(last=False)
        log.warning("feishu bot %s: its key was refused (%s %s): telling chat %s", bot.id, err.http_status,
                    err.code, event.chat_id)
        await self._reply(bot, event, _notice(err) or err.message)

    async def _reply(self, bot: Bot, event: MessageEvent, text: str) -> None:
        """A reply to the message; when the platform refuses that (a message withdrawn since), a
        message to its chat."""
        try:
            await self.api.reply(bot.app, event.message_id, text)
        except FeishuApiError as err:
            if err.code == -1:
                raise
            log.info("feishu bot %s: reply refused (%s): sending to the chat instead", bot.id, err.code)
            await self.api.send(bot.app, event.chat_id, text)

    async def _purge(self) -> None:
        now = self._clock()
        if now - self._purged < PURGE_EVERY:
            return
        self._purged = now
        try:
            await self.repo.purge(now - SEEN_FOR)
        except Exception as exc:
            log.warning("purging old bot events failed: %s", exc)

    async def close(self) -> None:
        """Let the events in hand finish (briefly), then close the HTTP session."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=5.0)
            for task in pending:
                task.cancel()
        await self.api.close()
