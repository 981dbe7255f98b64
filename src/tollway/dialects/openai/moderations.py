"""OpenAI's moderations (``POST /v1/moderations``) as the gateway forwards them: the request's
view, and the upstream's answer read back. A moderation has no canonical form: it goes, as
bytes with the model rewritten, only to an upstream that has the endpoint (``routes``). Pure: no
I/O, no clock, no settings.
"""

from __future__ import annotations

from typing import Final

import msgspec

from tollway.core.errors import InvalidRequest, UpstreamError
from tollway.core.json_input import body_loads
from tollway.dialects.openai.front import reported_error
from tollway.dialects.openai.wire import Body, body_decoder
from tollway.dialects.passthrough import model_field, renamed

DEFAULT_MODEL: Final = "omni-moderation-latest"  # what OpenAI moderates with when ``model`` is absent
CAPABILITY: Final = "moderation"  # a catalog model that moderates says so in its capabilities


class _RequestView(msgspec.Struct, kw_only=True):
    model: str | None = None
    input: msgspec.Raw = msgspec.Raw()  # a string, strings, or text and image parts; empty when absent


class _AnswerView(msgspec.Struct, kw_only=True):
    results: list[msgspec.Raw] | None = None


_request_view = msgspec.json.Decoder(_RequestView)
_answer_view = msgspec.json.Decoder(_AnswerView)


class ModerationRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: str  # as asked, or DEFAULT_MODEL
    body: Body  # the top-level values as they came, ``model`` among them when it was sent


def decode(raw: bytes) -> ModerationRequest:
    view = body_loads(raw, _request_view)
    if bytes(view.input).strip() in (b"", b"null"):
        raise InvalidRequest("The 'input' field is required.", param="input")
    if view.model == "":
        raise InvalidRequest("model must not be empty", param="model")
    return ModerationRequest(model=view.model or DEFAULT_MODEL, body=body_decoder.decode(raw))


def read_answer(provider: str, raw: bytes, secret: str | None, model: str) -> bytes:
    """The upstream's moderation naming ``model`` (the one the client asked for); a retryable
    ``UpstreamError`` when it is not a moderation (an error object with a 200, an unreadable body)."""
    try:
        view = _answer_view.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise UpstreamError(f"{provider} upstream sent an unreadable moderation", provider=provider) from None
    if view.results is None:
        err = reported_error(provider, raw, secret, "instead of a moderation")
        raise err or UpstreamError(f"{provider} upstream sent a 200 without results", provider=provider)
    return renamed(raw, model_field(model))
