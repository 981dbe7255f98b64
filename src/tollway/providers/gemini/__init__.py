"""Google Gemini upstream: canonical chat <-> the Gemini API's v1beta REST ``generateContent``.

``POST {base}/v1beta/models/{model}:generateContent`` and ``...:streamGenerateContent?alt=sse``
(SSE ``data: {GenerateContentResponse}`` chunks, no ``[DONE]``: the body ends the stream). The
API key goes in the ``x-goog-api-key`` header, never in the URL, so it never reaches a log.

The request and response mapping (and what it drops) is in ``codec``, the stream decoding in
``stream``, Google's error bodies in ``errors``; all pure, their public names re-exported here.
This module fetches the request's media (``MediaFetcher.loaded``: Gemini takes images and
documents only inline; their bytes stay in the process's media budget until the upstream has the
body) and makes the calls; ``providers.streaming`` reads the stream. A body with large media is
made in steps with the event loop running between them (``inline.encode_with_media``: its
data: URLs decoded and its base64 coded piece by piece), and an error drops the frames' hold
on it at once.

- Whatever the upstream sends, a body or chunk that cannot be read (not JSON, an error object
  in a 200, a part or count of the wrong type) is an UpstreamError (502) naming what was wrong,
  never an internal error.
- ``unsupported(req, upstream_model=...)`` names what is dropped for the routed upstream model,
  which also decides the thinking budget the body carries.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from functools import partial
from urllib.parse import quote, urlsplit

import msgspec

from tollway.core.catalog import Credential, EnvRequirement, ModelInfo, ProviderConfig, ProviderSpec
from tollway.core.chat import ChatRequest, ChatResponse, StreamEvent, Usage
from tollway.core.errors import InvalidRequest, UpstreamError
from tollway.core.media import (
    CATEGORY,
    EMBEDDINGS,
    IMAGES,
    MODALITIES,
    SPEECH,
    TRANSCRIPTION,
    VIDEO,
    Embeddings,
    EmbedRequest,
    Image,
    ImageRequest,
    Images,
    Speech,
    SpeechRequest,
    Transcript,
    TranscriptionRequest,
    VideoJob,
    VideoRequest,
)
from tollway.core.names import PROVIDER_GEMINI
from tollway.providers.base import ProviderContext
from tollway.providers.gemini import media as gm
from tollway.providers.gemini.codec import (
    EFFORT_BUDGETS,
    GenerateContentResponse,
    ThinkingRange,
    clean_schema,
    decode_response,
    encode_request,
    finish_reason_of,
    fit_budget,
    media_urls,
    new_id,
    response_decoder,
    thinking_budget,
    thinking_range,
    unsupported,
    usage_of,
)
from tollway.providers.gemini.errors import (
    RETRY_INFO,
    duration_seconds,
    parse_gemini_error,
    parse_gemini_retry_after,
    upstream_fault,
)
from tollway.providers.gemini.stream import StreamDecoder
from tollway.providers.http import Timeouts, Transport, UpstreamClient, UpstreamStream, tcp_transport
from tollway.providers.inline import data_urls, drop_locals, encode_with_media
from tollway.providers.media import Media, MediaFetcher
from tollway.providers.parallel import bounded
from tollway.providers.streaming import decode_stream

__all__ = [
    "EFFORT_BUDGETS",
    "RETRY_INFO",
    "SPEC",
    "GeminiProvider",
    "GenerateContentResponse",
    "StreamDecoder",
    "ThinkingRange",
    "build",
    "clean_schema",
    "decode_response",
    "duration_seconds",
    "encode_request",
    "finish_reason_of",
    "fit_budget",
    "media_urls",
    "new_id",
    "parse_gemini_error",
    "parse_gemini_retry_after",
    "thinking_budget",
    "thinking_range",
    "unsupported",
    "upstream_fault",
    "usage_of",
]

_CAPS = ("chat", "tools", "vision", "reasoning")


def _model(model_id: str, display: str, caps: tuple[str, ...] = _CAPS) -> ModelInfo:
    return ModelInfo(id=model_id, provider=PROVIDER_GEMINI, upstream_id=model_id, display_name=display,
                     capabilities=caps, tags=("gemini",))


def _media(model_id: str, display: str, capability: str) -> ModelInfo:
    return ModelInfo(id=model_id, provider=PROVIDER_GEMINI, upstream_id=model_id, display_name=display,
                     capabilities=(capability,), category=CATEGORY[capability], modalities=MODALITIES[capability],
                     tags=("gemini",))


SPEC = ProviderSpec(
    name=PROVIDER_GEMINI,
    kind=PROVIDER_GEMINI,
    env_requirements=(
        EnvRequirement(key="GEMINI_API_KEY", description="Google Gemini API key"),
        EnvRequirement(key="GEMINI_BASE_URL", description="Gemini API base URL", required=False),
    ),
    api_key_env="GEMINI_API_KEY",
    base_url_env="GEMINI_BASE_URL",
    default_base_url="https://generativelanguage.googleapis.com",
    models=(
        # the chat models understand audio: they also transcribe
        _model("gemini-2.5-flash", "Gemini 2.5 Flash", (*_CAPS, TRANSCRIPTION)),
        _model("gemini-2.5-pro", "Gemini 2.5 Pro", (*_CAPS, TRANSCRIPTION)),
        _model("gemini-2.0-flash", "Gemini 2.0 Flash"),
        # the non-chat surfaces (core.media; the methods below)
        _media("gemini-embedding-001", "Gemini Embedding", EMBEDDINGS),
        _media("text-embedding-004", "Text Embedding 004 (Gemini)", EMBEDDINGS),
        _media("gemini-2.5-flash-image", "Gemini 2.5 Flash Image", IMAGES),
        _media("imagen-4.0-generate-001", "Imagen 4", IMAGES),
        _media("gemini-2.5-flash-preview-tts", "Gemini 2.5 Flash TTS", SPEECH),
        _media("gemini-2.5-pro-preview-tts", "Gemini 2.5 Pro TTS", SPEECH),
        _media("veo-3.0-generate-001", "Veo 3", VIDEO),
        _media("veo-3.0-fast-generate-001", "Veo 3 Fast", VIDEO),
        _media("veo-2.0-generate-001", "Veo 2", VIDEO),
    ),
    open_catalog=True,
    model_prefixes=("gemini-", "imagen-", "veo-"),
    features=frozenset({"chat", "stream", "tools", "reasoning", "usage", "errors", "images"}),
)

_encoder = msgspec.json.Encoder()




def _sum(usages: Iterable[Usage]) -> Usage:
    total = Usage()
    for u in usages:
        total = Usage(input_tokens=total.input_tokens + u.input_tokens,
                      output_tokens=total.output_tokens + u.output_tokens,
                      cached_tokens=total.cached_tokens + u.cached_tokens,
                      reasoning_tokens=total.reasoning_tokens + u.reasoning_tokens)
    return total


class GeminiProvider:
    def __init__(self, config: ProviderConfig, *, timeouts: Timeouts, media: MediaFetcher,
                 transport: Transport = tcp_transport) -> None:
        self.name = config.name
        base = (config.base_url or SPEC.default_base_url).rstrip("/")
        base = base.removesuffix("/v1beta")
        self.models_url = base + "/v1beta/models/"
        self.api_url = base + "/v1beta/"
        origin = urlsplit(base)
        self.origin = (origin.scheme, origin.netloc)  # where the API key may go (a video's download)
        self.media = media
        self.client = UpstreamClient(provider=config.name, timeouts=timeouts, parse_error=parse_gemini_error,
                                     parse_retry_after=parse_gemini_retry_after, transport=transport)

    def url(self, model: str, *, stream: bool) -> str:
        name = quote(model.removeprefix("models/"), safe="-._~")
        if stream:
            return f"{self.models_url}{name}:streamGenerateContent?alt=sse"
        return f"{self.models_url}{name}:generateContent"

    def headers(self, credential: Credential, *, stream: bool) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
        if credential.secret:
            h["x-goog-api-key"] = credential.secret
        return h

    def unsupported(self, req: ChatRequest, *, upstream_model: str) -> list[str]:
        return unsupported(req, upstream_model=upstream_model)

    async def body(self, req: ChatRequest, upstream_model: str, media: dict[str, Media]) -> bytes:
        """The request's JSON body, its media's base64 coded in steps (``encode_with_media``);
        ``media`` (what ``loaded`` gave for ``_media_of``) is emptied once the body holds them."""
        body = await encode_with_media(
            lambda m: encode_request(req, media=m, upstream_model=upstream_model), media, _encoder.encode)
        media.clear()
        return body

    def _loaded(self, req: ChatRequest) -> AbstractAsyncContextManager[dict[str, Media]]:
        """The request's media: URLs fetched, data: URLs decoded in steps (not in the codec at once)."""
        return self.media.loaded(media_urls(req) + data_urls(req))

    async def _post(self, req: ChatRequest, upstream_model: str, credential: Credential) -> bytes:
        async with self._loaded(req) as media:  # held until the upstream answered
            return await self.client.post(self.url(upstream_model, stream=False),
                                          self.headers(credential, stream=False),
                                          await self.body(req, upstream_model, media), secret=credential.secret)

    async def complete(self, req: ChatRequest, *, upstream_model: str, credential: Credential) -> ChatResponse:
        try:
            raw = await self._post(req, upstream_model, credential)
        except BaseException as exc:
            drop_locals(exc)  # the body and media in the frames below: not until the cycle collector runs
            raise
        try:
            return decode_response(response_decoder.decode(raw), model=upstream_model, created=int(time.time()))
        except Exception as exc:  # whatever reading the body raises, it is the upstream's fault: a 502
            raise upstream_fault(self.name, "sent an unreadable completion", exc, credential.secret) from None

    def stream(self, req: ChatRequest, *, upstream_model: str,
               credential: Credential) -> AsyncIterator[list[StreamEvent]]:
        return decode_stream(partial(self._open_stream, req, upstream_model, credential), UpstreamStream.batches,
                             provider=self.name)

    async def _open(self, req: ChatRequest, upstream_model: str, credential: Credential) -> UpstreamStream:
        async with self._loaded(req) as media:  # held until the upstream took the body
            return await self.client.open_stream(self.url(upstream_model, stream=True),
                                                 self.headers(credential, stream=True),
                                                 await self.body(req, upstream_model, media), secret=credential.secret)

    async def _open_stream(self, req: ChatRequest, upstream_model: str,
                           credential: Credential) -> tuple[UpstreamStream, StreamDecoder]:
        try:
            upstream = await self._open(req, upstream_model, credential)
        except BaseException as exc:
            drop_locals(exc)
            raise
        return upstream, StreamDecoder(model=upstream_model, created=int(time.time()), provider=self.name,
                                       secret=credential.secret)

    # the non-chat surfaces (core.media; bodies and answers in ``media``) ---------------------

    def method_url(self, model: str, method: str) -> str:
        return f"{self.models_url}{quote(model.removeprefix('models/'), safe='-._~')}:{method}"

    async def _call(self, model: str, method: str, body: bytes, credential: Credential) -> bytes:
        return await self.client.post(self.method_url(model, method), self.headers(credential, stream=False), body,
                                      secret=credential.secret)

    def _unreadable(self, what: str, exc: Exception, credential: Credential) -> UpstreamError:
        return upstream_fault(self.name, f"sent an unreadable {what}", exc, credential.secret)

    async def embed(self, req: EmbedRequest, *, upstream_model: str, credential: Credential) -> Embeddings:
        if req.tokens and not req.texts:
            raise InvalidRequest("Gemini embeds text only: send the input as strings, not token arrays",
                                 param="input")
        texts = list(req.texts)
        if not texts:
            raise InvalidRequest("no input to embed", param="input")
        batches = [texts[i:i + gm.MAX_EMBED_BATCH] for i in range(0, len(texts), gm.MAX_EMBED_BATCH)]
        raws = await bounded(partial(self._call, upstream_model, "batchEmbedContents",
                                      gm.embed_body(batch, upstream_model, req.dimensions), credential)
                              for batch in batches)
        vectors: list[list[float]] = []
        for raw, batch in zip(raws, batches, strict=True):
            try:
                vectors += gm.read_embeddings(raw, len(batch))
            except ValueError as exc:  # msgspec's errors included
                raise self._unreadable("embedding answer", exc, credential) from None
        # Gemini counts no tokens for embeddings: ceil(characters / 4), an estimate
        return Embeddings(vectors=vectors, usage=Usage(input_tokens=gm.estimate_tokens(texts)))

    async def make_images(self, req: ImageRequest, *, upstream_model: str, credential: Credential) -> Images:
        if not 1 <= req.n <= 10:
            raise InvalidRequest(f"n must be 1..10, not {req.n}", param="n")
        if gm.is_imagen(upstream_model):
            return await self._imagen(req, upstream_model, credential)
        body = gm.image_body(req)  # one image per call: n calls, a few at a time
        answers = await bounded(partial(self._one_image, body, upstream_model, credential) for _ in range(req.n))
        return Images(images=[image for image, _ in answers], usage=_sum(usage for _, usage in answers))

    async def _one_image(self, body: bytes, model: str, credential: Credential) -> tuple[Image, Usage]:
        raw = await self._call(model, "generateContent", body, credential)
        try:
            answer = gm.read_media_answer(raw)
            blobs = gm.blobs_of(answer, "image/")
        except ValueError as exc:
            raise self._unreadable("image answer", exc, credential) from None
        if not blobs:
            raise gm.missing(self.name, "image", answer)
        data, media_type = blobs[0]
        return Image(data=data, media_type=media_type), gm.usage_of_answer(answer)

    async def _imagen(self, req: ImageRequest, model: str, credential: Credential) -> Images:
        counts = [min(gm.MAX_IMAGEN_SAMPLES, req.n - i) for i in range(0, req.n, gm.MAX_IMAGEN_SAMPLES)]
        raws = await bounded(partial(self._call, model, "predict", gm.imagen_body(req, c), credential)
                              for c in counts)
        images: list[Image] = []
        filtered: list[str] = []
        for raw in raws:
            try:
                got, why = gm.read_imagen(raw)
            except ValueError as exc:
                raise self._unreadable("Imagen answer", exc, credential) from None
            images += got
            filtered += why
        if not images:
            err = UpstreamError(f"{self.name}: the model returned no image"
                                + (f" (filtered: {'; '.join(filtered)[:200]})" if filtered else ""), provider=self.name)
            err.retryable = False
            raise err
        return Images(images=images)

    async def speak(self, req: SpeechRequest, *, upstream_model: str, credential: Credential) -> Speech:
        raw = await self._call(upstream_model, "generateContent", gm.speech_body(req), credential)
        try:
            answer = gm.read_media_answer(raw)
            blobs = gm.blobs_of(answer, "audio/")
        except ValueError as exc:
            raise self._unreadable("speech answer", exc, credential) from None
        if not blobs:
            raise gm.missing(self.name, "audio", answer)
        pcm = b"".join(data for data, _ in blobs)
        data, media_type = gm.speech_of(pcm, blobs[0][1], req.response_format)
        return Speech(data=data, media_type=media_type, usage=gm.usage_of_answer(answer))

    async def transcribe(self, req: TranscriptionRequest, *, upstream_model: str,
                         credential: Credential) -> Transcript:
        body = gm.transcription_body(req, upstream_model)
        raw = await self._call(upstream_model, "generateContent", body, credential)
        try:
            answer = gm.read_media_answer(raw)
        except ValueError as exc:
            raise self._unreadable("transcription", exc, credential) from None
        if not answer.candidates:
            raise gm.missing(self.name, "transcript", answer)
        return Transcript(text=gm.text_of(answer).strip(), language=req.language, usage=gm.usage_of_answer(answer))

    async def start_video(self, req: VideoRequest, *, upstream_model: str, credential: Credential) -> VideoJob:
        raw = await self._call(upstream_model, "predictLongRunning", gm.video_body(req), credential)
        try:
            return gm.job_of(gm.read_operation(raw), started=True)
        except ValueError as exc:
            raise self._unreadable("video operation", exc, credential) from None

    async def _operation(self, job_id: str, credential: Credential) -> gm.Operation:
        if not gm.OPERATION.fullmatch(job_id):
            raise InvalidRequest(f"{job_id[:100]!r} is not a Veo operation name", param="video_id")
        raw = await self.client.fetch("GET", self.api_url + job_id, self.headers(credential, stream=False),
                                      secret=credential.secret)
        try:
            return gm.read_operation(raw)
        except ValueError as exc:
            raise self._unreadable("video operation", exc, credential) from None

    async def poll_video(self, job_id: str, *, upstream_model: str, credential: Credential) -> VideoJob:
        return gm.job_of(await self._operation(job_id, credential))

    async def video_content(self, job_id: str, *, upstream_model: str,
                            credential: Credential) -> tuple[bytes, str]:
        op = await self._operation(job_id, credential)
        job, uri = gm.job_of(op), gm.video_uri(op)
        if job.status != "completed" or uri is None:
            raise InvalidRequest(f"video {job_id!r} is {job.status}, not completed: it has no content yet"
                                 + (f" ({job.error})" if job.error else ""), param="video_id")
        where = urlsplit(uri)
        if (where.scheme, where.netloc) != self.origin:  # the API key goes to the API's host, nowhere else
            raise UpstreamError(f"{self.name} upstream gave a video URI off its own host ({where.netloc!r})",
                                provider=self.name)
        headers = {"x-goog-api-key": credential.secret} if credential.secret else {}
        data = await self.client.fetch("GET", uri, headers, secret=credential.secret)
        if not gm.is_mp4(data):  # e.g. a redirect's body: the client follows none
            raise UpstreamError(f"{self.name} upstream's video download is not an MP4 ({len(data)} bytes)",
                                provider=self.name)
        return data, "video/mp4"

    async def close(self) -> None:
        await self.client.close()


def build(config: ProviderConfig, ctx: ProviderContext) -> GeminiProvider:
    return GeminiProvider(config, timeouts=ctx.timeouts, media=ctx.media, transport=ctx.transport)
