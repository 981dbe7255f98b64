"""Routes of OpenAI's legacy completions: ``POST /v1/completions``, and the same under ``/api/v1``
with the platform error body. Each request goes through the request pipeline
(``routing.pipeline``) with ``CompletionsCodec`` (``front.py``): forwarded to an upstream that has
the completions endpoint, translated to chat for any other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.core.names import DIALECT_COMPLETIONS
from tollway.dialects.completions.front import CompletionsCodec
from tollway.dialects.openai.errors import openai_error_body, platform_error_body
from tollway.routing.call import Call
from tollway.routing.pipeline import ChatPipeline
from tollway.routing.responses import EventStreamResponse, Render, dialect_endpoint


def _completion(codec: CompletionsCodec) -> Callable[[Request, Call], Awaitable[Response | EventStreamResponse]]:
    async def handler(request: Request, call: Call) -> Response | EventStreamResponse:
        pipeline: ChatPipeline = request.app.state.pipeline
        return await pipeline.serve(request, call, codec)

    return handler


def completions_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    surfaces: tuple[tuple[str, Render], ...] = (("/v1", openai_error_body), ("/api/v1", platform_error_body))
    for prefix, render in surfaces:
        codec = CompletionsCodec(DIALECT_COMPLETIONS, render)
        routes.append(Route(f"{prefix}/completions", dialect_endpoint(DIALECT_COMPLETIONS, render, _completion(codec)),
                            methods=["POST"]))
    return routes
