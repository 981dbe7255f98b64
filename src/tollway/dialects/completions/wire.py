"""A small msgspec view of OpenAI's ``CreateCompletionRequest``: what routing and billing read, and
the fields that decide whether a request can be translated to chat.

The rest of the body stays undecoded (``dialects.openai.wire.Body``): a pass-through forwards it
as it came, a translation decodes it once (``codec``).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from tollway.core.chat import MAX_TOKENS
from tollway.dialects.openai.wire import StreamOptions

MAX_CHOICES = 128  # OpenAI's bound on ``n`` (and ``best_of``): the billing bound multiplies by them


class RequestView(msgspec.Struct, kw_only=True):
    model: str | None = None
    prompt: msgspec.Raw = msgspec.Raw()  # a string, strings, tokens or token arrays; empty when absent
    suffix: str | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHOICES)] | None = None
    best_of: Annotated[int, msgspec.Meta(ge=0, le=MAX_CHOICES)] | None = None
    echo: bool | None = None
    logprobs: Annotated[int, msgspec.Meta(ge=0)] | None = None


request_view_decoder = msgspec.json.Decoder(RequestView)
