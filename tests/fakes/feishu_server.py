"""A fake Feishu/Lark open platform: one aiohttp server on 127.0.0.1, in its own thread, and the
helpers that build event deliveries exactly as the platform does.

Server paths (``base_url`` + ...), answering ``{"code", "msg", ...}`` as the platform does:
  ``POST /open-apis/auth/v3/tenant_access_token/internal``  ``{"app_id", "app_secret"}`` (checked
      against ``apps``) -> ``{"code": 0, "tenant_access_token", "expire"}``; ``token_fetches`` counts
      them, ``expire`` scripts the lifetime, ``revoke_tokens()`` makes every token issued so far
      invalid (code 99991663), as a rotated secret or an expiry would.
  ``GET /open-apis/bot/v3/info``  -> ``{"code": 0, "bot": {"open_id": BOT_OPEN_ID, ...}}``
  ``POST /open-apis/im/v1/messages/{message_id}/reply``  and
  ``POST /open-apis/im/v1/messages?receive_id_type=chat_id``: the bearer must be a live token of
      the app; the body ``{"msg_type": "text", "content": "{\\"text\\": ...}"}`` (plus ``receive_id``
      for a new message) is checked, shape errors go to ``spec_errors``; ``replies`` records what was
      sent. ``refuse_replies`` makes the reply API answer that code (a withdrawn message: 230011).

Deliveries: ``message_event`` / ``url_verification`` build the event JSON (schema 2.0 for
messages); ``deliver`` encrypts it (AES-256-CBC under SHA-256 of the Encrypt Key, a random IV in
front, PKCS#7, base64) and signs it (hex SHA-256 of timestamp + nonce + Encrypt Key + body),
written here from the platform's documentation, independently of the gateway's code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.fakes.serving import InThread

APP_ID, APP_SECRET = "cli_a1b2c3d4e5f6", "feishu-app-secret-0123456789"
BOT_OPEN_ID = "ou_bot_7f3a9c"
TOKEN_INVALID = 99991663


@dataclass
class Sent:
    via: str  # "reply" or "send"
    target: str  # the message replied to, or the chat
    text: str
    app_id: str


@dataclass
class FakeFeishu(InThread):
    apps: dict[str, str] = field(default_factory=lambda: {APP_ID: APP_SECRET})
    expire: int = 7200
    token_fetches: int = 0
    info_calls: int = 0
    refuse_replies: int | None = None
    replies: list[Sent] = field(default_factory=list)
    spec_errors: list[str] = field(default_factory=list)
    port: int = 0
    _tokens: dict[str, str] = field(default_factory=dict)  # live token -> app id

    def revoke_tokens(self) -> None:
        self._tokens.clear()

    def texts(self, target: str | None = None) -> list[str]:
        return [s.text for s in self.replies if target is None or s.target == target]

    def wait_replies(self, count: int, timeout: float = 10.0) -> list[Sent]:
        deadline = time.time() + timeout
        while len(self.replies) < count and time.time() < deadline:
            time.sleep(0.02)
        assert len(self.replies) >= count, f"{len(self.replies)} replies, wanted {count}: {self.replies}"
        return list(self.replies)

    # server ----------------------------------------------------------------------------------

    def start(self) -> None:
        self.serve("fake-feishu", self._app)

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._token)
        app.router.add_get("/open-apis/bot/v3/info", self._info)
        app.router.add_post("/open-apis/im/v1/messages/{message_id}/reply", self._reply)
        app.router.add_post("/open-apis/im/v1/messages", self._send)
        return app

    # endpoints -------------------------------------------------------------------------------

    async def _json(self, request: web.Request, where: str) -> dict[str, Any] | None:
        if not request.content_type.startswith("application/json"):
            self.spec_errors.append(f"{where}: content type {request.content_type!r}")
        try:
            body = json.loads(await request.read())
        except ValueError:
            self.spec_errors.append(f"{where}: body is not JSON")
            return None
        if not isinstance(body, dict):
            self.spec_errors.append(f"{where}: body is not an object")
            return None
        return body

    async def _token(self, request: web.Request) -> web.Response:
        body = await self._json(request, "tenant_access_token")
        self.token_fetches += 1
        if body is None or set(body) != {"app_id", "app_secret"}:
            self.spec_errors.append(f"tenant_access_token: body keys {sorted(body or {})}")
            return web.json_response({"code": 9499, "msg": "Bad Request"}, status=400)
        if self.apps.get(body["app_id"]) != body["app_secret"]:
            return web.json_response({"code": 10014, "msg": "app secret invalid"})
        token = "t-" + secrets.token_hex(20)
        self._tokens[token] = body["app_id"]
        return web.json_response({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": self.expire})

    def _app_of(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return self._tokens.get(token) if scheme == "Bearer" else None

    @staticmethod
    def _bad_token() -> web.Response:
        return web.json_response({"code": TOKEN_INVALID, "msg": "Invalid access token for authorization."},
                                 status=400)

    async def _info(self, request: web.Request) -> web.Response:
        self.info_calls += 1
        if self._app_of(request) is None:
            return self._bad_token()
        return web.json_response({"code": 0, "msg": "ok", "bot": {
            "activate_status": 2, "app_name": "Tollway bot", "avatar_url": "", "ip_white_list": [],
            "open_id": BOT_OPEN_ID}})

    def _text(self, body: dict[str, Any], where: str, allowed: set[str]) -> str | None:
        extra = set(body) - allowed
        if extra or body.get("msg_type") != "text" or not isinstance(body.get("content"), str):
            self.spec_errors.append(f"{where}: body {body}")
            return None
        try:
            content = json.loads(body["content"])
        except ValueError:
            self.spec_errors.append(f"{where}: content is not a JSON string")
            return None
        if not isinstance(content, dict) or set(content) != {"text"} or not isinstance(content["text"], str):
            self.spec_errors.append(f"{where}: content {content!r}")
            return None
        return str(content["text"])

    async def _reply(self, request: web.Request) -> web.Response:
        app = self._app_of(request)
        if app is None:
            return self._bad_token()
        body = await self._json(request, "reply")
        text = self._text(body or {}, "reply", {"msg_type", "content", "reply_in_thread", "uuid"})
        if text is None:
            return web.json_response({"code": 230001, "msg": "invalid content"}, status=400)
        if self.refuse_replies is not None:
            return web.json_response({"code": self.refuse_replies, "msg": "refused"}, status=400)
        message_id = request.match_info["message_id"]
        self.replies.append(Sent("reply", message_id, text, app))
        return web.json_response({"code": 0, "msg": "success", "data": {"message_id": "om_r" + secrets.token_hex(8)}})

    async def _send(self, request: web.Request) -> web.Response:
        app = self._app_of(request)
        if app is None:
            return self._bad_token()
        if request.query.get("receive_id_type") != "chat_id":
            self.spec_errors.append(f"send: receive_id_type {request.query.get('receive_id_type')!r}")
        body = await self._json(request, "send")
        text = self._text(body or {}, "send", {"receive_id", "msg_type", "content", "uuid"})
        if text is None or not isinstance((body or {}).get("receive_id"), str):
            return web.json_response({"code": 230001, "msg": "invalid content"}, status=400)
        self.replies.append(Sent("send", str((body or {})["receive_id"]), text, app))
        return web.json_response({"code": 0, "msg": "success", "data": {"message_id": "om_s" + secrets.token_hex(8)}})


# deliveries ---------------------------------------------------------------------------------

def encrypt(encrypt_key: str, plain: bytes, iv: bytes | None = None) -> str:
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = iv if iv is not None else os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + enc.update(padded) + enc.finalize()).decode()


def sign(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def url_verification(challenge: str, token: str = "") -> dict[str, Any]:
    return {"challenge": challenge, "token": token, "type": "url_verification"}


def message_event(*, text: str | None = None, event_id: str | None = None, message_id: str | None = None,
                  chat_id: str = "oc_chat_p2p", chat_type: str = "p2p", message_type: str = "text",
                  mentions: list[dict[str, Any]] | None = None, token: str = "", app_id: str = APP_ID,
                  sender_open_id: str = "ou_user_alice", content: str | None = None) -> dict[str, Any]:
    """A schema 2.0 ``im.message.receive_v1`` event as the platform sends it."""
    now_ms = str(int(time.time() * 1000))
    if content is None:
        content = json.dumps({"text": text or ""}, ensure_ascii=False) if message_type == "text" else \
            json.dumps({"image_key": "img_v2_0123"})
    return {
        "schema": "2.0",
        "header": {"event_id": event_id or secrets.token_hex(16), "event_type": "im.message.receive_v1",
                   "create_time": now_ms, "token": token, "app_id": app_id, "tenant_key": "tenant_1"},
        "event": {
            "sender": {"sender_id": {"union_id": "on_u1", "user_id": "u1", "open_id": sender_open_id},
                       "sender_type": "user", "tenant_key": "tenant_1"},
            "message": {"message_id": message_id or "om_" + secrets.token_hex(12), "root_id": "", "parent_id": "",
                        "create_time": now_ms, "update_time": now_ms, "chat_id": chat_id, "chat_type": chat_type,
                        "message_type": message_type, "content": content, "mentions": mentions or [],
                        "user_agent": "Mozilla/5.0"},
        },
    }


def mention(key: str = "@_user_1", open_id: str = BOT_OPEN_ID, name: str = "Tollway bot") -> dict[str, Any]:
    return {"key": key, "id": {"union_id": "on_x", "user_id": "", "open_id": open_id}, "name": name,
            "tenant_key": "tenant_1"}


def deliver(event: dict[str, Any], *, encrypt_key: str = "", timestamp: float | None = None,
            nonce: str | None = None, sign_it: bool = True) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one delivery: encrypted and signed when the app has an Encrypt Key."""
    raw = json.dumps(event, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Go-http-client/1.1"}
    if not encrypt_key:
        return raw, headers
    raw = json.dumps({"encrypt": encrypt(encrypt_key, raw)}).encode()
    if sign_it:
        ts = str(int(timestamp if timestamp is not None else time.time()))
        nonce = nonce or secrets.token_hex(8)
        headers.update({"X-Lark-Request-Timestamp": ts, "X-Lark-Request-Nonce": nonce,
                        "X-Lark-Signature": sign(ts, nonce, encrypt_key, raw)})
    return raw, headers
