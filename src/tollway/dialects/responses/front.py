"""The Responses API front door as the request pipeline sees it: ``ResponsesCodec``.

A codec serves one request (its route makes one per request): the stored state of a response
(its id, the conversation before it, the answer to keep) belongs to that request. The gateway
owns that state: ``previous_response_id`` is expanded into the items before the input (the
route loads them), and an upstream gets ``store: false`` and no ``previous_response_id``.

When the upstream has the Responses API too (OpenAI; a server configured with
``responses_path``), ``ResponsesPassThrough`` forwards the body with the model rewritten and reads
usage back; the ``Response`` objects it passes on name the model the client asked for and echo
the client's ``store`` and ``previous_response_id``. Any other upstream gets the canonical request
(``codec``), and the answer is encoded here (``stream.ResponseStream`` for streams).
Pure: ids and the clock are the route's (``new_id``, ``now``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from tollway.core.chat import ChatRequest, ChatResponse, Usage
from tollway.core.errors import TollwayError, UpstreamError
from tollway.core.json_input import body_loads
from tollway.core.names import DIALECT_RESPONSES
from tollway.core.redaction import redact
from tollway.dialects.passthrough import UpstreamEvent
from tollway.dialects.responses.codec import (
    check_request,
    decode_request,
    failure,
    input_items,
    outcome,
    output_items,
    response_object,
    tool_names,
    usage_of,
)
from tollway.dialects.responses.stream import ResponseStream, event_frame

Render = Callable[[TollwayError], dict[str, Any]]
_encoder = msgspec.json.Encoder()
_plain = msgspec.json.Decoder()
# the events whose ``response`` object the gateway edits (the model, the client's state fields)
_SNAPSHOTS = frozenset({"response.created", "response.in_progress", "response.queued", "response.completed",
                        "response.incomplete"})
_TERMINAL = frozenset({"response.completed", "response.incomplete"})
_ITEM_EVENTS = frozenset({"response.output_item.added", "response.output_item.done"})
# what the gateway keeps to itself: the upstream never stores, nor knows the previous response
_GATEWAY_FIELDS = ("previous_response_id", "background", "drop_params", "store")
_ENCRYPTED = "reasoning.encrypted_content"


class _EventView(msgspec.Struct):
    type: str = ""


_event_view = msgspec.json.Decoder(_EventView)


class ResponsesRequest:
    """A ``CreateResponse`` request, checked; its canonical form once asked for."""

    def __init__(self, raw: bytes, data: dict[str, Any], response_id: str, created_at: int,
                 now: Callable[[], int]) -> None:
        self.raw = raw
        self.data = data
        self.model: str = data["model"]
        self.stream = bool(data.get("stream"))
        self.max_tokens: int | None = data.get("max_output_tokens")
        self.store = data.get("store", True) is not False
        self.id = response_id
        self.created_at = created_at
        self.now = now
        self.history: list[dict[str, Any]] = []  # the items of the conversation before it
        self.drop = False  # drop what an upstream cannot run instead of refusing it (the route's header)
        self.raw_size: int | None = None  # the input's size as sent, when references were resolved into it
        self.final: dict[str, Any] | None = None  # the answer's Response object, once made
        self.encoded: bytes | None = None  # ... and its JSON, when a whole answer was encoded
        self._canonical: ChatRequest | None = None

    @property
    def ids(self) -> str:
        """The stem of the ids of the answer's items."""
        return self.id.removeprefix("resp_")

    def canonical(self) -> ChatRequest:
        if self._canonical is None:
            self._canonical = decode_request(self.data, self.history, drop=self.drop)
        return self._canonical

    def context_size(self) -> int:
        """Bytes of input beyond the body: the stored conversation before it (and items an
        ``item_reference`` brought in), which admission holds credits for too."""
        extra = len(_encoder.encode(self.history)) if self.history else 0
        if self.raw_size is not None:
            extra += max(0, len(_encoder.encode(self.data.get("input"))) - self.raw_size)
        return extra

    def inputs(self) -> list[dict[str, Any]]:
        """This request's input items (not the history before it)."""
        return input_items(self.data)

    def snapshot(self, *, status: str, output: list[dict[str, Any]], usage: Usage | None = None,
                 incomplete: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
                 completed: bool = False) -> dict[str, Any]:
        return response_object(self.data, response_id=self.id, created_at=self.created_at, model=self.model,
                               status=status, output=output, usage=usage, incomplete=incomplete, error=error,
                               completed_at=self.now() if completed else None)

    def echoed(self, obj: dict[str, Any]) -> dict[str, Any]:
        """An upstream's Response object as the client's: its model, its state fields."""
        obj["model"] = self.model
        obj["store"] = self.store
        obj["previous_response_id"] = self.data.get("previous_response_id")
        obj["background"] = bool(self.data.get("background"))
        obj["id"] = self.id  # the gateway's: the upstream stored nothing under its own
        return obj


def decode(raw: bytes, *, response_id: str, created_at: int, now: Callable[[], int]) -> ResponsesRequest:
    data = body_loads(raw, _plain)
    check_request(data)
    return ResponsesRequest(raw, data, response_id, created_at, now)


def forwarded_history(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items as an upstream that keeps nothing (``store: false``) takes them: without the ids of
    items it never stored, and without reasoning it cannot read back (no ``encrypted_content``:
    a client that believed the response stored sends its reasoning back by id alone)."""
    out = []
    for item in items:
        if item.get("type") == "reasoning":
            if item.get("encrypted_content"):
                out.append({k: v for k, v in item.items() if k != "status"})
            continue
        out.append({k: v for k, v in item.items() if k not in ("id", "status")})
    return out


def _reported(provider: str, data: dict[str, Any], secret: str | None, where: str) -> UpstreamError:
    response = data.get("response")
    err = data.get("error") or (response.get("error") if isinstance(response, dict) else None) or {}
    message = err.get("message") if isinstance(err, dict) else err
    return UpstreamError(f"{provider} upstream reported an error {where}: {redact(str(message or 'error'), secret)}",
                         provider=provider)


class ResponsesPassReader:
    """An upstream's Responses event stream, forwarded event by event. The events that carry
    the Response object are edited (``ResponsesRequest.echoed``); the others go as they came.
    ``response.completed``/``response.incomplete`` end it (with the usage); ``error`` and
    ``response.failed`` are the upstream's failure, told in this dialect by ``fail``."""

    def __init__(self, req: ResponsesRequest, provider: str, secret: str | None) -> None:
        self.req = req
        self.provider = provider
        self.secret = secret
        self.usage: Usage | None = None
        self.ended = False
        self.error: UpstreamError | None = None
        self.seq = -1
        self.latest: dict[str, Any] | None = None  # the last Response object seen
        self.item_events: list[bytes] = []  # the upstream's output_item.added / .done events

    def feed(self, batch: Sequence[UpstreamEvent]) -> list[bytes]:
        frames = []
        for event in batch:
            data = event.data
            kind = event.event or self._kind(data)  # OpenAI names each event: its JSON is read only when needed
            if kind in ("error", "response.failed"):  # told by ``fail``, in this stream's sequence
                self.error = _reported(self.provider, self._json(data), self.secret, "mid-stream")
                break
            self.seq += 1  # the upstream numbers its events from 0, one by one
            if kind in _ITEM_EVENTS:  # the items so far: what a failure's response holds (read only then)
                self.item_events.append(data)
            if kind not in _SNAPSHOTS:
                frames.append(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")
                continue
            obj = self._json(data)
            if not isinstance(obj.get("response"), dict):
                raise UpstreamError(f"{self.provider} upstream sent a {kind} event without a response",
                                    provider=self.provider)
            self.latest = self.req.echoed(obj["response"])
            frames.append(event_frame(obj))
            if kind in _TERMINAL:
                self.usage = usage_of(self.latest.get("usage"))
                self.req.final = self.latest
                self.ended = True
                break
        return frames

    def _items(self) -> list[dict[str, Any]]:
        """The output items streamed so far, each as last told (added, then done)."""
        items: list[dict[str, Any]] = []
        for data in self.item_events:
            event = self._json(data)
            index, item = event.get("output_index"), event.get("item")
            if isinstance(index, int) and 0 <= index <= len(items) and isinstance(item, dict):
                items[index:index + 1] = [item]
        return items

    def _json(self, data: bytes) -> dict[str, Any]:
        try:
            obj = _plain.decode(data)
        except msgspec.DecodeError:
            obj = None
        if not isinstance(obj, dict):
            raise UpstreamError(f"{self.provider} upstream sent a malformed stream event", provider=self.provider)
        return obj

    def _kind(self, data: bytes) -> str:
        try:
            return _event_view.decode(data).type
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamError(f"{self.provider} upstream sent a malformed stream event",
                                provider=self.provider) from None

    def fail(self, code: str | None, message: str, param: str | None, status: int) -> bytes:
        self.seq += 1
        out = event_frame({"type": "error", "code": code, "message": message, "param": param,
                           "sequence_number": self.seq})
        if self.latest is None:
            return out
        try:
            output = self._items()
        except UpstreamError:
            output = []
        failed = dict(self.latest, status="failed", output=output, error=failure(code or "", message, status))
        self.req.final = failed
        self.seq += 1
        return out + event_frame({"type": "response.failed", "response": failed, "sequence_number": self.seq})


class ResponsesPassThrough:
    wire = DIALECT_RESPONSES

    def __init__(self, codec: ResponsesCodec) -> None:
        self.codec = codec
        self._parsed: tuple[bytes, dict[str, Any]] | None = None

    def body(self, req: ResponsesRequest, upstream_model: str) -> dict[str, Any]:
        """The upstream stores nothing: it gets the whole conversation, without what it could only
        have read from its own store (``forwarded_history``), and, when the gateway stores the
        answer, is asked for its reasoning's ``encrypted_content`` (the next turn sends it back)."""
        body = {k: v for k, v in req.data.items() if k not in _GATEWAY_FIELDS}
        body["model"] = upstream_model
        body["store"] = False
        if req.history or isinstance(req.data.get("input"), list):
            body["input"] = forwarded_history(req.history + req.inputs())
        if req.store:
            include = [i for i in req.data.get("include") or () if i != _ENCRYPTED]
            body["include"] = [*include, _ENCRYPTED]
        return body

    def _parse(self, provider: str, raw: bytes, secret: str | None) -> dict[str, Any]:
        if self._parsed is not None and self._parsed[0] is raw:
            return self._parsed[1]
        try:
            obj = _plain.decode(raw)
        except msgspec.DecodeError:
            raise UpstreamError(f"{provider} upstream sent an unreadable response", provider=provider) from None
        if not isinstance(obj, dict) or obj.get("object") != "response" or not isinstance(obj.get("output"), list):
            if isinstance(obj, dict) and obj.get("error"):
                raise _reported(provider, obj, secret, "instead of a response")
            raise UpstreamError(f"{provider} upstream sent a 200 that is not a response", provider=provider)
        self._parsed = (raw, obj)
        return obj

    def usage(self, provider: str, raw: bytes, secret: str | None) -> Usage | None:
        return usage_of(self._parse(provider, raw, secret).get("usage"))

    def named(self, req: ResponsesRequest, raw: bytes) -> bytes:
        obj = self._parse("upstream", raw, None)
        req.final = req.echoed(obj)
        req.encoded = _encoder.encode(req.final)
        return req.encoded

    def reader(self, req: ResponsesRequest, provider: str, secret: str | None) -> ResponsesPassReader:
        reader = ResponsesPassReader(req, provider, secret)
        self.codec.stream_state = reader  # its failure is told in the upstream's sequence
        return reader


class ResponsesCodec:
    """``/v1/responses`` for one request (``new_id`` names its response, ``now`` is the clock)."""

    dialect = DIALECT_RESPONSES

    def __init__(self, render: Render, *, new_id: Callable[[], str], now: Callable[[], int]) -> None:
        self.render = render
        self.new_id = new_id
        self.now = now
        self.passthrough = ResponsesPassThrough(self)
        self.req: ResponsesRequest | None = None
        self.stream_state: ResponseStream | ResponsesPassReader | None = None

    def decode(self, raw: bytes) -> ResponsesRequest:
        if self.req is None or self.req.raw is not raw:  # the route may have decoded it already
            self.req = decode(raw, response_id=self.new_id(), created_at=self.now(), now=self.now)
        return self.req

    def encode_response(self, req: ResponsesRequest, resp: ChatResponse) -> bytes:
        status, incomplete = outcome(resp.finish_reason)
        output = output_items(resp, req.ids, "completed", tool_names(req.data))
        req.final = req.snapshot(status=status, output=output, usage=resp.usage, incomplete=incomplete, completed=True)
        req.encoded = _encoder.encode(req.final)
        return req.encoded

    def stream_writer(self, req: ResponsesRequest) -> ResponseStream:
        self.stream_state = ResponseStream(req.snapshot, req.ids, tool_names(req.data))
        return self.stream_state

    def final(self) -> dict[str, Any] | None:
        """The answer's Response object (completed, incomplete or failed), once it was made."""
        if isinstance(self.stream_state, ResponseStream) and self.stream_state.final is not None:
            return self.stream_state.final
        return self.req.final if self.req is not None else None

    def error_body(self, err: TollwayError) -> dict[str, Any]:
        return self.render(err)

    def error_frame(self, err: TollwayError, request_id: str | None = None) -> bytes:
        if self.stream_state is not None:
            return self.stream_state.fail(err.code, err.message, err.param, err.http_status)
        return event_frame({"type": "error", "code": err.code, "message": err.message, "param": err.param,
                            "sequence_number": 0})
