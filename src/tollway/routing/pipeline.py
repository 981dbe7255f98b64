"""The one request path of every chat dialect.

``ChatPipeline.serve`` takes a request, the call its route guard began and the dialect's codec
(``routing.dialect.ChatCodec``), and does, in this order, for every front door alike:

1. **identify** the caller (a key, the admin secret, a direct upstream token);
2. **decode** the body with the codec, which gives the model, the stream flag and the token
   **bound** (input estimate, output cap);
3. **admit** it (``billing.admission``: authorization, RPM/TPM, the credit hold);
4. **attempt** it: a credential from the model's pool; on a retryable failure before any byte
   reached the client, another credential, then each fallback model; a stream counts as
   answered once its first events arrived (**first-event retry**). When every attempt failed
   the caller gets one ``AllUpstreamsFailed`` naming each;
5. **answer**: a same-dialect upstream's bytes are forwarded (``PassThrough``), anything else is
   translated (the canonical request to the provider, its answer through the codec);
6. **meter** a stream (events sent, usage, time to first token, a client that cut it);
7. **finish**: settle the holds and write the request-log row, on every path.

A dialect never touches the call's bookkeeping: it hands the call on.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tollway.auth.keys import Identity
from tollway.billing.admission import Bound, estimate_tokens
from tollway.core.catalog import Credential, ModelInfo
from tollway.core.chat import StreamEvent, Usage, UsageReport
from tollway.core.errors import (
    AllUpstreamsFailed,
    AuthenticationFailed,
    CredentialsDisabled,
    InternalError,
    InvalidRequest,
    PoolExhausted,
    RateLimited,
    TollwayError,
    UpstreamError,
)
from tollway.core.media import CATEGORY, SURFACE_NAMES
from tollway.providers.base import ChatProvider, PassThroughProvider, TokenCounter, is_passthrough
from tollway.providers.http import TRACE_HEADERS, UpstreamStream
from tollway.providers.sse import SSEEvent
from tollway.routing.call import Call
from tollway.routing.catalog import Route
from tollway.routing.dialect import ChatCodec, PassReader, R
from tollway.routing.gateway import Gateway, Topology
from tollway.routing.responses import EventStreamResponse, JSONBytes, guarded_stream, read_body, unless_disconnected

_encoder = msgspec.json.Encoder()
T = TypeVar("T")
Work = Callable[[Route, ChatProvider, Credential], Awaitable[T]]


class Whole(NamedTuple):
    """A whole (non-stream) answer, encoded for the client."""

    body: bytes
    usage: Usage | None


class Translated(NamedTuple):
    """An upstream stream in canonical events, its first read already in."""

    events: AsyncIterator[list[StreamEvent]]
    first: list[StreamEvent]


class Forwarded(NamedTuple):
    """A same-dialect upstream stream, read for the client as it is, its first read already in
    (``frames``, what the reader made of it)."""

    upstream: UpstreamStream
    reader: PassReader
    provider: str
    reads: AsyncIterator[list[SSEEvent]]
    frames: list[bytes]


Answer = Whole | Translated | Forwarded


async def _first_read(upstream: UpstreamStream, reader: PassReader, provider: str) -> Forwarded:
    """A forwarded stream's first read: the upstream has answered. An upstream that fails
    instead (closes, breaks, or reports an error before any event the client would get) is this
    attempt's failure, and the connection is closed; another attempt may follow."""
    reads = upstream.batches()
    try:
        batch = await anext(reads, None)
        if batch is None:
            raise UpstreamError(f"{provider} upstream closed the stream before it finished", provider=provider)
        frames = reader.feed(batch)
        if reader.error is not None and not frames:
            raise reader.error
    except BaseException:
        upstream.close()
        raise
    return Forwarded(upstream, reader, provider, reads, frames)


async def first_batch(events: AsyncIterator[list[StreamEvent]]) -> list[StreamEvent]:
    """A provider stream's first events: the upstream has answered. If it fails instead, the
    stream is closed (its upstream connection with it) before the error goes on, to a plain
    error response or another attempt."""
    try:
        return await anext(events)
    except BaseException:
        await events.aclose()  # type: ignore[attr-defined]
        raise


class ChatPipeline:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    # 1. identify -----------------------------------------------------------------------

    async def identify(self, request: Request, call: Call, *, direct: bool = True) -> Identity:
        """The caller, recorded on the call (any route that needs a key calls this)."""
        identity = await self.gw.identify(request.headers, direct=direct)
        call.identify(identity)
        return identity

    # the chat path -----------------------------------------------------------------------

    async def serve(self, request: Request, call: Call, codec: ChatCodec[R], *,
                    raw: bytes | None = None, context: int = 0) -> Response | EventStreamResponse:
        """One chat request of ``codec``'s dialect, from its body to its response. ``raw``: a
        body the route already read (City's actions); a call already identified stays so.
        ``context``: bytes of input the request stands for beyond its body (a conversation the
        gateway stored), counted in its bound like the body."""
        if call.identity is None:
            await self.identify(request, call)
        if raw is None:
            raw = await read_body(request, self.gw.options.max_body_bytes)
        req = codec.decode(raw)
        call.row.stream = req.stream
        records = self.gw.records
        if records is not None:
            call.recording = records.start(call.identity, codec.dialect, raw, request.headers)

        async def work(route: Route, provider: ChatProvider, credential: Credential) -> Answer:
            return await self._answer(request, call, codec, req, route, provider, credential)

        # the whole body (tools, schemas, images are input too) and what it stands for
        bound = Bound(estimate_tokens(raw) + context // 3, req.max_tokens)
        answer = await unless_disconnected(request, self.attempts(call, req.model, work, bound=bound))
        if isinstance(answer, Whole):
            return self._whole(call, answer)
        if isinstance(answer, Translated):
            return self._translated(call, codec, req, answer)
        return self._forwarded(call, codec, answer)

    async def _answer(self, request: Request, call: Call, codec: ChatCodec[R], req: R, route: Route,
                      provider: ChatProvider, credential: Credential) -> Answer:
        """One attempt, up to the upstream's first answer: a failure here may be retried."""
        if route.model.category in MEDIA_CATEGORIES:  # an embedding, image, audio or video model
            serves(route.model, "chat")
        upstream_model = route.model.upstream_id
        passthrough = codec.passthrough
        if (passthrough is not None and is_passthrough(provider)
                and provider.speaks(passthrough.wire, upstream_model)):
            wire = passthrough.wire
            body = passthrough.body(req, upstream_model)
            call.dropped(provider.adapt(body, wire))
            data = _encoder.encode(body)
            if req.stream:
                upstream = await provider.forward_stream(data, wire=wire, credential=credential,
                                                         headers=request.headers)
                return await _first_read(upstream, passthrough.reader(req, provider.name, credential.secret),
                                         provider.name)
            out = await provider.forward(data, wire=wire, credential=credential, headers=request.headers)
            usage = passthrough.usage(provider.name, out, credential.secret)
            return Whole(passthrough.named(req, out), usage)
        canonical = req.canonical()
        call.dropped([*provider.unsupported(canonical, upstream_model=upstream_model), *canonical.lossy])
        if req.stream:
            events = provider.stream(canonical, upstream_model=upstream_model, credential=credential)
            return Translated(events, await first_batch(events))
        resp = await provider.complete(canonical, upstream_model=upstream_model, credential=credential)
        return Whole(codec.encode_response(req, resp), resp.usage)

    # 3-4. admit and attempt ----------------------------------------------------------------

    async def attempts(self, call: Call, model: str, work: Work[T], *, fallbacks: bool = True,
                       bound: Bound | None = None) -> T:
        """``work`` on the model's provider with a credential from its pool: on a retryable failure
        before any byte reached the client, again on another credential (up to the gateway's
        ``max_attempts``), then on each of the model's fallbacks. Every attempt is named in the
        log row. The lease of the attempt that succeeded is held until the call finishes.

        A key's call is admitted first: the model must be authorized to it; with a ``bound`` (a
        generation, not a token count), its limits are counted and its worst case held in its
        wallet until the call settles."""
        gw = self.gw
        topo = gw.topology
        if call.direct is not None:  # the caller's own credential: no pool, no retries, no fallbacks
            route = topo.catalog.resolve(model)
            if route.provider not in topo.direct_providers:
                raise AuthenticationFailed("Invalid API key.")
            call.serving(route, call.direct)
            if call.trace is not None:  # tracing (telemetry/tracing.py): the attempt's span, its traceparent upstream
                TRACE_HEADERS.set(call.trace.attempt(route.provider, route.model, call.direct))
            return await work(route, topo.providers[route.provider], call.direct)
        routes = await self._admit(call, topo, model, fallbacks, bound)
        errors: list[TollwayError] = []
        for index, route in enumerate(routes):
            if index and not await self._admit_fallback(call, route, errors):
                continue
            result = await self._on_pool(call, topo, route, work, errors)
            if not isinstance(result, _Failed):
                return result
        raise _final(call, errors)

    async def _admit(self, call: Call, topo: Topology, model: str, fallbacks: bool,
                     bound: Bound | None) -> list[Route]:
        if call.trace is not None:  # tracing (telemetry/tracing.py): the admission span, to admitted() or finish
            call.trace.admitting()
        routes = topo.candidates(model)
        if call.pin is not None or not fallbacks:  # a pin names a credential of this model's provider
            routes = routes[:1]
        key = call.identity.key if call.identity is not None else None
        billing = self.gw.billing
        if key is not None and billing is not None:
            if bound is None:
                routes = billing.check_access(key, model, routes)
            else:
                routes, call.ticket = await billing.admit(key, model, routes, bound)
        if call.trace is not None:  # tracing: admission done (a refusal raised above ends it in Call.finish)
            call.trace.admitted()
        return routes

    async def _admit_fallback(self, call: Call, route: Route, errors: list[TollwayError]) -> bool:
        """A fallback model's own limits (the first model's were counted at admission)."""
        if call.ticket is None or self.gw.billing is None:
            return True
        try:
            await self.gw.billing.admit_fallback(call.ticket, route.model)
        except (RateLimited, InvalidRequest) as err:
            call.attempt(route, None, err)
            errors.append(err)
            return False
        return True

    async def _on_pool(self, call: Call, topo: Topology, route: Route, work: Work[T],
                       errors: list[TollwayError]) -> T | _Failed:
        """``work`` on up to ``max_attempts`` credentials of the route's pool; ``_FAILED`` when
        this pool can do no more (its model's fallback is next). An error that another attempt
        cannot mend is raised."""
        provider, pool = topo.providers[route.provider], topo.pools[route.provider]
        tried: set[str] = set()
        for _ in range(self.gw.options.max_attempts):
            try:
                lease = await pool.acquire(pin=call.pin, exclude=tried)
            except (PoolExhausted, CredentialsDisabled) as err:
                call.attempt(route, None, err)
                errors.append(err)
                return _FAILED
            call.serving(route, lease.credential, lease, pool)
            if call.trace is not None:  # tracing (telemetry/tracing.py): the attempt's span, its traceparent upstream
                TRACE_HEADERS.set(call.trace.attempt(route.provider, route.model, lease.credential))
            started = time.perf_counter()
            try:
                result = await work(route, provider, lease.credential)
            except UpstreamError as err:
                if call.trace is not None:  # tracing: the attempt's span ends with its error
                    call.trace.attempt_failed(err)
                await pool.failed(lease, err, route.model.upstream_id)
                call.attempt(route, lease, err)
                call.release()
                errors.append(err)
                if not err.retryable or call.pin is not None:
                    raise _final(call, errors) from None
                tried.add(lease.credential.id)
                if len(tried) >= len(pool.credentials):
                    return _FAILED
                continue
            await pool.succeeded(lease)
            call.upstream_s = time.perf_counter() - started
            call.served = route.model
            if call.attempts:
                call.attempt(route, lease, None)
            return result
        return _FAILED

    # 5-7. answer, meter, finish ------------------------------------------------------------

    def _whole(self, call: Call, answer: Whole) -> Response:
        """A whole answer: its usage recorded (its size when the upstream reported none) and the
        call finished before the first byte goes out."""
        if answer.usage is not None:
            call.usage(answer.usage)
        else:
            call.sized(len(answer.body))
        if call.recording is not None:
            call.recording.body = answer.body
        call.finish(200)
        return JSONBytes(answer.body, headers=_upstream_header(call))

    def _translated(self, call: Call, codec: ChatCodec[R], req: R, answer: Translated) -> EventStreamResponse:
        writer = codec.stream_writer(req)
        events = answer.events
        recording = call.recording

        async def chunks() -> AsyncIterator[bytes]:
            batch: list[StreamEvent] | None = answer.first
            while batch is not None:
                out = []
                for event in batch:
                    if isinstance(event, UsageReport):
                        call.usage(event.usage)
                    frame = writer.feed(event)
                    if frame:
                        out.append(frame)
                # the events that reached the client: what a client that cuts the stream pays for
                # when the upstream reported no usage
                call.first_token(len(out))
                if out:
                    data = b"".join(out)
                    if recording is not None:
                        recording.frames.append(data)
                    yield data  # one write per upstream read
                batch = await anext(events, None)
            tail = writer.close()
            if recording is not None:
                recording.frames.append(tail)
            yield tail

        async def close() -> None:
            await events.aclose()  # type: ignore[attr-defined]

        return guarded_stream(chunks(), call, functools.partial(codec.error_frame, request_id=call.row.id), close,
                              headers=_upstream_header(call))

    def _forwarded(self, call: Call, codec: ChatCodec[Any], answer: Forwarded) -> EventStreamResponse:
        upstream, reader = answer.upstream, answer.reader
        recording = call.recording

        async def chunks() -> AsyncIterator[bytes]:
            frames: list[bytes] | None = answer.frames
            while frames is not None:
                if reader.usage is not None:
                    call.usage(reader.usage)
                if frames:
                    call.first_token(len(frames))
                    data = b"".join(frames)
                    if recording is not None:
                        recording.frames.append(data)
                    yield data
                if reader.error is not None:
                    raise reader.error
                if reader.ended:
                    upstream.ended = True
                    return
                batch = await anext(answer.reads, None)
                frames = reader.feed(batch) if batch is not None else None
            raise UpstreamError(f"{answer.provider} upstream closed the stream before it finished",
                                provider=answer.provider)

        async def close() -> None:
            upstream.end()

        return guarded_stream(chunks(), call, functools.partial(codec.error_frame, request_id=call.row.id), close,
                              headers=_upstream_header(call))

    # a same-dialect upstream's own token count ---------------------------------------------

    async def upstream_count(self, request: Request, call: Call, wire: str, body: dict[str, Any],
                             read: Callable[[str, bytes], T]) -> T | None:
        """Forward a token-count request to the model's provider when it speaks ``wire`` and
        counts tokens itself (Anthropic's count_tokens): its answer, as ``read(provider, bytes)``
        takes it (an ``UpstreamError`` there is an attempt's failure). None when the provider
        does not count (the caller counts). The model must exist (404 otherwise); no fallbacks."""
        model = body["model"]
        route, provider, _pool = self.gw.topology.resolve(model)
        call.row.model = route.model.id
        if not (isinstance(provider, PassThroughProvider) and wire in provider.wires
                and isinstance(provider, TokenCounter)):
            return None

        async def work(route: Route, provider: ChatProvider, credential: Credential) -> T:
            assert isinstance(provider, TokenCounter)
            data = _encoder.encode({**body, "model": route.model.upstream_id})
            return read(route.provider, await provider.count_tokens(data, credential=credential,
                                                                    headers=request.headers))

        return await unless_disconnected(request, self.attempts(call, model, work, fallbacks=False))

    # a request of a wire with no canonical form, forwarded ---------------------------------

    async def relay(self, request: Request, call: Call, wire: str, model: str, body: dict[str, Any],
                    read: Callable[[str, bytes, str | None], Whole], *, bound: Bound | None = None) -> Response | None:
        """Forward a request of ``wire`` that has no canonical form (OpenAI's moderations) to
        ``model``'s provider when it speaks that wire: ``body`` with its model set to the upstream
        id, on a credential of the model's pool (another on a retryable failure; no fallbacks),
        the answer read by ``read(provider, bytes, secret)`` (an ``UpstreamError`` there is an
        attempt's failure) and logged with its usage (``Whole``). None when the provider does not
        speak ``wire``: the caller says so in its dialect's words. With a ``bound`` the call is
        admitted like a generation (the key's RPM/TPM, the credit hold, settled to the usage);
        without one on authorization alone (nothing held, nothing charged)."""
        route, provider, _pool = self.gw.topology.resolve(model)
        call.row.model = route.model.id
        if not (isinstance(provider, PassThroughProvider) and wire in provider.wires):
            return None

        async def work(route: Route, provider: ChatProvider, credential: Credential) -> Whole:
            assert isinstance(provider, PassThroughProvider)
            data = _encoder.encode({**body, "model": route.model.upstream_id})
            out = await provider.forward(data, wire=wire, credential=credential, headers=request.headers)
            return read(route.provider, out, credential.secret)

        answer = await unless_disconnected(request, self.attempts(call, model, work, fallbacks=False, bound=bound))
        return self._whole(call, answer)


    # the non-chat surfaces (embeddings, images, speech, transcription, video) ----------------

    async def media(self, request: Request, call: Call, model: str, capability: str, work: Work[T], *,
                    bound: Bound | None) -> T:
        """One request of a non-chat surface (``capability``, core.media) on ``model``, as ``work``
        does it on each attempt: the chat's path (identity, admission with ``bound``, the model's
        pool, retries, fallbacks, the request log). A model the catalog lists for other surfaces
        only is a 400 naming what it serves; ``work`` refuses a provider without the surface. The
        route answers with ``whole`` or ``relay_stream``."""
        if call.identity is None:
            await self.identify(request, call)
        serves(self.gw.topology.catalog.resolve(model).model, capability)
        return await unless_disconnected(request, self.attempts(call, model, work, bound=bound))

    async def hold(self, request: Request, call: Call, model: str, capability: str, bound: Bound) -> ModelInfo:
        """Admit a task of a non-chat surface without calling any upstream yet: the caller
        identified, ``model`` checked for the surface, the key's authorization and limits counted
        and the credits of ``bound`` held (``call.ticket``, which the task takes over). The model
        as the catalog has it."""
        if call.identity is None:
            await self.identify(request, call)
        if call.direct is not None:
            raise InvalidRequest("A task must be paid with a key of this gateway, not an upstream's own token.")
        topo = self.gw.topology
        model_info = topo.catalog.resolve(model).model
        serves(model_info, capability)
        await self._admit(call, topo, model, True, bound)
        call.row.model = model_info.id
        return model_info

    def whole(self, call: Call, body: bytes, usage: Usage | None, media_type: str = "application/json") -> Response:
        """A media answer as one body (logged with ``usage``; the call finished before it goes out)."""
        if usage is not None:
            call.usage(usage)
        call.finish(200)
        return Response(body, media_type=media_type, headers=_upstream_header(call))

    def relay_stream(self, call: Call, upstream: UpstreamStream, media_type: str) -> EventStreamResponse:
        """An upstream's streamed body (audio, or an event stream) sent on as it comes; its usage
        is what the route recorded on the call before (speech: the characters asked for)."""

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in upstream.chunks():
                call.first_token()
                yield chunk
            upstream.ended = True

        async def close() -> None:
            upstream.end()

        def no_frame(err: TollwayError) -> bytes:  # bytes of audio cannot carry an error: the stream is cut
            return b""

        response = guarded_stream(chunks(), call, no_frame, close, headers=_upstream_header(call))
        response.headers[0] = (b"content-type", media_type.encode("latin-1"))
        return response


def serves(model: ModelInfo, capability: str) -> None:
    """Refuse ``model`` for a surface its catalog entry does not name (a chat model asked for an
    image); a model no catalog describes (``provider/<any id>``) is left to its upstream."""
    if model.capabilities and capability not in model.capabilities:
        surface = SURFACE_NAMES.get(capability, capability)
        raise InvalidRequest(f"Model '{model.id}' is a {model.category or 'chat'} model: it does not serve "
                             f"{surface} (it serves {', '.join(model.capabilities)}).",
                             code="model_not_supported", param="model")


MEDIA_CATEGORIES = frozenset(CATEGORY.values())
UPSTREAM_MODEL_HEADER = "x-tollway-upstream-model"


def _upstream_header(call: Call) -> dict[str, str] | None:
    """The model id the upstream was asked for (the answer names the one the client asked for)."""
    upstream = call.row.upstream_model
    return {UPSTREAM_MODEL_HEADER: upstream} if upstream and upstream.isascii() else None


class _Failed:
    """An attempt loop's marker: this pool can do no more."""


_FAILED = _Failed()


def _final(call: Call, errors: list[TollwayError]) -> TollwayError:
    """What the caller gets when no attempt succeeded: the one error, or all of them."""
    if not errors:
        return InternalError("No upstream could be tried for this request.")
    if len(errors) == 1:
        return errors[0]
    lines = []
    for attempt in call.attempts:
        where = f"{attempt['model']} via {attempt['provider']}"
        if attempt["credential"]:
            where += f"/{attempt['credential']}"
        lines.append(f"{where}: {attempt['status']} {attempt['error']}")
    return AllUpstreamsFailed(errors, lines)
