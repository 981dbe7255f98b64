"""Feishu/Lark's event wire, as documented by the open platform: no I/O here.

**Encryption** (an app with an Encrypt Key): the body is ``{"encrypt": "<base64>"}``, the base64 of
a 16-byte IV followed by the AES-256-CBC ciphertext of the event's JSON, PKCS#7-padded, under the
key SHA-256(Encrypt Key).

**Signature** (same apps): ``X-Lark-Signature`` is the hex SHA-256 of ``X-Lark-Request-Timestamp``
+ ``X-Lark-Request-Nonce`` + Encrypt Key (UTF-8) followed by the raw body's bytes. The platform
leaves the request-URL check (``url_verification``) out of its security check, so a body without
the signature headers is taken only when it decrypts to that check.

**Verification Token**: ``token`` (the URL check, schema 1.0) or ``header.token`` (schema 2.0).

**Events**: ``{"type": "url_verification", "challenge", "token"}`` is answered with the challenge;
schema 2.0 ``im.message.receive_v1`` carries ``event.message`` (``message_id``, ``chat_id``,
``chat_type`` p2p|group, ``message_type``, ``content`` a JSON string: ``{"text": ...}`` for text,
``mentions``: ``[{"key": "@_user_1", "id": {"open_id", ...}, "name"}]``, whose keys stand in the
text where the mention was) and ``event.sender`` (``sender_type`` user|app).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from typing import Any

import msgspec
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tollway.core.errors import AuthenticationFailed, InvalidRequest

DEFAULT_API_BASE = "https://open.feishu.cn"
LARK_API_BASE = "https://open.larksuite.com"
MAX_SKEW = 300.0  # seconds a signed request's timestamp may be away from now (replays are older)
MESSAGE_EVENT = "im.message.receive_v1"
TIMESTAMP, NONCE, SIGNATURE = "x-lark-request-timestamp", "x-lark-request-nonce", "x-lark-signature"
_BLOCK = 16
_SPACES = re.compile(r"[ \t]{2,}")  # what removing a mention leaves
_json = msgspec.json.Decoder()


# encryption ---------------------------------------------------------------------------------

def _aes_key(encrypt_key: str) -> bytes:
    return hashlib.sha256(encrypt_key.encode("utf-8")).digest()


def decrypt(encrypt_key: str, payload: str) -> bytes:
    """The plaintext of an ``encrypt`` field; InvalidRequest when it is not one under this key."""
    try:
        data = base64.b64decode(payload.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidRequest("encrypt is not base64") from None
    if len(data) < 2 * _BLOCK or len(data) % _BLOCK:
        raise InvalidRequest("encrypt is not an AES-256-CBC payload")
    decryptor = Cipher(algorithms.AES(_aes_key(encrypt_key)), modes.CBC(data[:_BLOCK])).decryptor()
    padded = decryptor.update(data[_BLOCK:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise InvalidRequest("encrypt does not decrypt with this bot's encryptKey") from None


def encrypt(encrypt_key: str, plain: bytes, iv: bytes | None = None) -> str:
    """What the platform sends for ``plain`` (tests and fakes build events with it)."""
    iv = iv if iv is not None else os.urandom(_BLOCK)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_aes_key(encrypt_key)), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode("ascii")


# signature ----------------------------------------------------------------------------------

def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode("utf-8") + body).hexdigest()


def is_signed(headers: Mapping[str, str]) -> bool:
    return any(headers.get(h) for h in (TIMESTAMP, NONCE, SIGNATURE))


def check_signature(headers: Mapping[str, str], encrypt_key: str, body: bytes, now: float) -> None:
    """AuthenticationFailed unless the request carries a valid, recent signature."""
    timestamp, nonce, sent = headers.get(TIMESTAMP), headers.get(NONCE), headers.get(SIGNATURE)
    if not timestamp or not nonce or not sent:
        raise AuthenticationFailed("missing X-Lark-Request-Timestamp, X-Lark-Request-Nonce or X-Lark-Signature")
    expected = signature(timestamp, nonce, encrypt_key, body)
    if not hmac.compare_digest(expected.encode("ascii"), sent.strip().lower().encode("utf-8", "replace")):
        raise AuthenticationFailed("bad X-Lark-Signature")
    try:
        at = float(timestamp)
    except ValueError:
        raise AuthenticationFailed("bad X-Lark-Request-Timestamp") from None
    if not abs(now - at) <= MAX_SKEW:  # also refuses NaN
        raise AuthenticationFailed("X-Lark-Request-Timestamp is too old (or too far ahead)")


def check_token(data: Mapping[str, Any], token: str) -> None:
    """AuthenticationFailed unless the event names the bot's Verification Token."""
    header = data.get("header")
    sent = data.get("token")
    if sent is None and isinstance(header, dict):
        sent = header.get("token")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode("utf-8"), token.encode("utf-8")):
        raise AuthenticationFailed("bad verification token")


# events -------------------------------------------------------------------------------------

class UrlVerification(msgspec.Struct, frozen=True, kw_only=True):
    challenge: str


class Mention(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    open_id: str | None = None
    name: str = ""


class MessageEvent(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    message_id: str
    chat_id: str
    chat_type: str  # p2p | group (| topic_group)
    message_type: str
    content: str  # the message's content, a JSON string
    mentions: tuple[Mention, ...] = ()
    sender_type: str = "user"
    sender_open_id: str | None = None


class OtherEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event this gateway does not act on (answered 200, ignored)."""

    event_type: str


Event = UrlVerification | MessageEvent | OtherEvent


def _str(value: Any, name: str, limit: int = 512) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidRequest(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def parse(data: Any) -> Event:
    """A decrypted event body; InvalidRequest when a message event lacks what a reply needs."""
    if not isinstance(data, dict):
        raise InvalidRequest("an event must be a JSON object")
    if data.get("type") == "url_verification":
        challenge = data.get("challenge")
        if not isinstance(challenge, str):
            raise InvalidRequest("url_verification without a challenge")
        return UrlVerification(challenge=challenge)
    header = data.get("header")
    if data.get("schema") != "2.0" or not isinstance(header, dict):
        kind = data.get("type") if isinstance(data.get("type"), str) else "unknown"
        return OtherEvent(event_type=str(kind))
    event_type = header.get("event_type")
    if event_type != MESSAGE_EVENT:
        return OtherEvent(event_type=str(event_type))
    event = data.get("event")
    message = event.get("message") if isinstance(event, dict) else None
    if not isinstance(event, dict) or not isinstance(message, dict):
        raise InvalidRequest("im.message.receive_v1 without event.message")
    sender = _obj(event.get("sender"))
    sender_id = _obj(sender.get("sender_id"))
    mentions = []
    listed = message.get("mentions")
    for m in listed if isinstance(listed, list) else ():
        if isinstance(m, dict) and isinstance(m.get("key"), str) and m["key"]:
            mentions.append(Mention(key=m["key"], open_id=_opt(_obj(m.get("id")).get("open_id")),
                                    name=_opt(m.get("name")) or ""))
    return MessageEvent(
        event_id=_str(header.get("event_id"), "header.event_id", 128),
        message_id=_str(message.get("message_id"), "message.message_id"),
        chat_id=_str(message.get("chat_id"), "message.chat_id", 200),
        chat_type=_str(message.get("chat_type"), "message.chat_type", 32),
        message_type=_str(message.get("message_type"), "message.message_type", 32),
        content=_opt(message.get("content")) or "",
        mentions=tuple(mentions),
        sender_type=_opt(sender.get("sender_type")) or "user",
        sender_open_id=_opt(sender_id.get("open_id")),
    )


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _opt(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def text_for_bot(message: MessageEvent, bot_open_id: str | None) -> tuple[bool, str]:
    """Whether ``message`` is addressed to the bot, and its text as the model should read it.

    A p2p message always is. In a group it is when one of its mentions is the bot (by open id);
    with the bot's open id unknown, any mention counts. The bot's mention placeholders are
    removed from the text; another's becomes ``@name``."""
    ours = [m for m in message.mentions if bot_open_id is None or m.open_id == bot_open_id]
    addressed = message.chat_type == "p2p" or bool(ours)
    if message.message_type != "text":
        return addressed, ""
    try:
        content = _json.decode(message.content)
    except msgspec.DecodeError:
        content = None
    text = content.get("text") if isinstance(content, dict) else None
    if not isinstance(text, str):
        return addressed, ""
    # the longest keys first: @_user_1 must not eat the start of @_user_10
    for m in sorted(message.mentions, key=lambda m: len(m.key), reverse=True):
        text = text.replace(m.key, "" if m in ours else f"@{m.name or 'someone'}")
    return addressed, _SPACES.sub(" ", text).strip()
