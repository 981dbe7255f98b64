"""AWS Bedrock: the Converse and ConverseStream APIs, signed with SigV4.

Configuration: the region comes from ``ProviderConfig.options["region"]`` (the env config
fills it from AWS_REGION), or per credential from ``Credential.extra["region"]``. A credential
is the secret access key in ``secret`` plus ``extra["access_key_id"]`` and, for temporary
credentials, ``extra["session_token"]``; ``env_credentials`` and ``env_options`` build them
from AWS_* variables. The endpoint is ``base_url`` (BEDROCK_BASE_URL) or
``https://bedrock-runtime.{region}.amazonaws.com``.

Signing is botocore's SigV4 (service ``bedrock``); the event stream of ConverseStream is
decoded by botocore's ``EventStreamBuffer``. The model id is quoted as one path segment and
the URL is signed in the exact form aiohttp sends it (yarl turns ``%3A`` back into ``:``).

The request and response mapping (and what has no place in Converse) is in ``codec``; the
ConverseStream decoding in ``stream``. Their public names are re-exported here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any, Final
from urllib.parse import quote

import msgspec

from tollway.core.catalog import Credential, EnvRequirement, ModelInfo, ProviderConfig, ProviderSpec
from tollway.core.chat import ChatRequest, ChatResponse, StreamEvent, Usage
from tollway.core.errors import ConfigError, InvalidRequest, ProviderNotConfigured, UpstreamError
from tollway.core.media import CATEGORY, EMBEDDINGS, IMAGES, MODALITIES, Embeddings, EmbedRequest, ImageRequest, Images
from tollway.core.names import PROVIDER_BEDROCK
from tollway.providers.base import ProviderContext
from tollway.providers.bedrock import media as bm
from tollway.providers.bedrock.codec import (
    decode_response,
    document_name,
    dropped_fields,
    encode_request,
    media_urls,
    parse_bedrock_error,
)
from tollway.providers.bedrock.stream import StreamDecoder
from tollway.providers.http import UpstreamClient, UpstreamStream
from tollway.providers.inline import drop_locals, encode_with_media, off_loop
from tollway.providers.parallel import bounded
from tollway.providers.streaming import decode_stream

__all__ = [
    "SPEC",
    "BedrockProvider",
    "StreamDecoder",
    "build",
    "decode_response",
    "document_name",
    "dropped_fields",
    "encode_request",
    "env_credentials",
    "env_options",
    "media_urls",
    "parse_bedrock_error",
]

SIGNING_SERVICE: Final = "bedrock"
JSON: Final = "application/json"
EVENT_STREAM: Final = "application/vnd.amazon.eventstream"


def _model(mid: str, upstream: str, name: str, caps: tuple[str, ...]) -> ModelInfo:
    return ModelInfo(id=mid, provider=PROVIDER_BEDROCK, upstream_id=upstream, display_name=name, capabilities=caps,
                     tags=("bedrock",))


def _media(mid: str, upstream: str, name: str, capability: str) -> ModelInfo:
    return ModelInfo(id=mid, provider=PROVIDER_BEDROCK, upstream_id=upstream, display_name=name,
                     capabilities=(capability,), category=CATEGORY[capability], modalities=MODALITIES[capability],
                     tags=("bedrock",))


SPEC = ProviderSpec(
    name=PROVIDER_BEDROCK,
    kind=PROVIDER_BEDROCK,
    env_requirements=(
        EnvRequirement(key="AWS_ACCESS_KEY_ID", description="AWS access key id"),
        EnvRequirement(key="AWS_SECRET_ACCESS_KEY", description="AWS secret access key"),
        EnvRequirement(key="AWS_REGION", description="AWS region of the Bedrock runtime (us-east-1 ...)"),
        EnvRequirement(key="AWS_SESSION_TOKEN", description="AWS session token (temporary credentials)",
                       required=False),
        EnvRequirement(key="BEDROCK_BASE_URL", description="Bedrock runtime endpoint override", required=False),
    ),
    api_key_env="AWS_SECRET_ACCESS_KEY",
    base_url_env="BEDROCK_BASE_URL",
    default_base_url="",  # https://bedrock-runtime.{region}.amazonaws.com
    models=(
        # Claude 4.5 models take on-demand calls only through an inference profile
        _model("bedrock/claude-sonnet-4-5", "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
               "Claude Sonnet 4.5 (Bedrock)", ("chat", "tools", "vision", "reasoning")),
        _model("bedrock/claude-haiku-4-5", "global.anthropic.claude-haiku-4-5-20251001-v1:0",
               "Claude Haiku 4.5 (Bedrock)", ("chat", "tools", "vision", "reasoning")),
        _model("bedrock/claude-3-5-haiku", "us.anthropic.claude-3-5-haiku-20241022-v1:0",
               "Claude 3.5 Haiku (Bedrock)", ("chat", "tools")),
        _model("bedrock/nova-pro", "amazon.nova-pro-v1:0", "Amazon Nova Pro", ("chat", "tools", "vision")),
        _model("bedrock/nova-lite", "amazon.nova-lite-v1:0", "Amazon Nova Lite", ("chat", "tools", "vision")),
        _model("bedrock/nova-micro", "amazon.nova-micro-v1:0", "Amazon Nova Micro", ("chat", "tools")),
        # the non-chat surfaces (core.media), through InvokeModel
        _media("bedrock/titan-embed-text-v2", "amazon.titan-embed-text-v2:0", "Titan Text Embeddings V2",
               EMBEDDINGS),
        _media("bedrock/cohere-embed-english-v3", "cohere.embed-english-v3", "Cohere Embed English v3", EMBEDDINGS),
        _media("bedrock/cohere-embed-multilingual-v3", "cohere.embed-multilingual-v3",
               "Cohere Embed Multilingual v3", EMBEDDINGS),
        _media("bedrock/titan-image-generator-v2", "amazon.titan-image-generator-v2:0", "Titan Image Generator v2",
               IMAGES),
        _media("bedrock/nova-canvas", "amazon.nova-canvas-v1:0", "Amazon Nova Canvas", IMAGES),
    ),
    open_catalog=True,
    features=frozenset({"chat", "stream", "tools", "reasoning", "usage", "errors", "images"}),
)


def env_credentials(env: Mapping[str, str]) -> tuple[Credential, ...]:
    """The credential AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) make, if set."""
    key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        return ()
    extra = {"access_key_id": key_id}
    if env.get("AWS_SESSION_TOKEN"):
        extra["session_token"] = env["AWS_SESSION_TOKEN"]
    return (Credential(id=f"{PROVIDER_BEDROCK}:env", secret=secret, extra=extra),)


def env_options(env: Mapping[str, str]) -> dict[str, Any]:
    """ProviderConfig.options from the environment: the region."""
    return {"region": env["AWS_REGION"]} if env.get("AWS_REGION") else {}







# --- the adapter -------------------------------------------------------------------------


class BedrockProvider:
    def __init__(self, config: ProviderConfig, ctx: ProviderContext) -> None:
        self.name = config.name
        self.region: str | None = config.options.get("region") or None
        self.base_url = config.base_url.rstrip("/")
        self.media = ctx.media
        for c in config.credentials:
            if not (c.extra.get("region") or self.region):
                raise ConfigError(f"provider {config.name!r}: no region (options.region, or region on "
                                  f"credential {c.id!r})")
            if not c.extra.get("access_key_id") or not c.secret:
                raise ConfigError(f"provider {config.name!r}: credential {c.id!r} needs a secret access key and "
                                  "extra.access_key_id")
        self.client = UpstreamClient(provider=config.name, timeouts=ctx.timeouts, parse_error=parse_bedrock_error,
                                     transport=ctx.transport)

    def unsupported(self, req: ChatRequest, *, upstream_model: str) -> list[str]:
        return dropped_fields(req, upstream_model=upstream_model)

    # signing ------------------------------------------------------------------------------

    def _signed(self, credential: Credential, upstream_model: str, operation: str, body: bytes,
                accept: str) -> tuple[str, dict[str, str]]:
        """The URL as sent on the wire and the SigV4-signed headers for one call."""
        key_id, secret = credential.extra.get("access_key_id"), credential.secret
        region = credential.extra.get("region") or self.region
        if not key_id or not secret or not region:
            raise ProviderNotConfigured(f"{self.name} credential {credential.id!r} lacks an access key id, "
                                        "a secret access key or a region")
        # botocore and yarl are imported by the first Bedrock call: a gateway without Bedrock never loads them
        from yarl import URL

        endpoint = self.base_url or f"https://bedrock-runtime.{region}.amazonaws.com"
        url = str(URL(f"{endpoint}/model/{quote(upstream_model, safe='')}/{operation}"))
        from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
        from botocore.credentials import Credentials  # type: ignore[import-untyped]

        request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": JSON, "Accept": accept})
        creds = Credentials(key_id, secret, credential.extra.get("session_token") or None)
        SigV4Auth(creds, SIGNING_SERVICE, region).add_auth(request)
        return url, {str(k): str(v) for k, v in request.headers.items()}

    async def _call(self, req: ChatRequest, upstream_model: str, credential: Credential, *,
                    stream: bool) -> bytes | UpstreamStream:
        """The Converse (or ConverseStream) call: the request's media fetched or decoded (their
        bytes held in the process's budget until the upstream has the body), the body encoded with
        their base64 coded in steps (``encode_with_media``), signed (a large body's payload hash in
        a worker thread), then sent."""
        async with self.media.loaded(media_urls(req)) as media:
            body = await encode_with_media(
                lambda m: encode_request(req, upstream_model=upstream_model, media=m), media, msgspec.json.encode)
            media.clear()
            operation, accept = ("converse-stream", EVENT_STREAM) if stream else ("converse", JSON)
            url, headers = await off_loop(len(body), partial(self._signed, credential, upstream_model, operation,
                                                             body, accept))
            if stream:
                return await self.client.open_stream(url, headers, body, secret=_secrets(credential))
            return await self.client.post(url, headers, body, secret=_secrets(credential))

    # calls --------------------------------------------------------------------------------

    async def complete(self, req: ChatRequest, *, upstream_model: str, credential: Credential) -> ChatResponse:
        try:
            raw = await self._call(req, upstream_model, credential, stream=False)
        except BaseException as exc:
            drop_locals(exc)  # the body and media in the frames below: not until the cycle collector runs
            raise
        assert isinstance(raw, bytes)
        try:
            return decode_response(raw, model=upstream_model, response_id=f"bedrock-{uuid.uuid4().hex}",
                                   created=int(time.time()))
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamError(f"{self.name} upstream sent an unreadable Converse response",
                                provider=self.name) from None

    def stream(self, req: ChatRequest, *, upstream_model: str,
               credential: Credential) -> AsyncIterator[list[StreamEvent]]:
        return decode_stream(partial(self._open_stream, req, upstream_model, credential), UpstreamStream.chunks,
                             provider=self.name)

    async def _open_stream(self, req: ChatRequest, upstream_model: str,
                           credential: Credential) -> tuple[UpstreamStream, StreamDecoder]:
        try:
            upstream = await self._call(req, upstream_model, credential, stream=True)
        except BaseException as exc:
            drop_locals(exc)
            raise
        assert isinstance(upstream, UpstreamStream)
        # an in-stream exception may echo the signed request: the decoder redacts every secret
        decoder = StreamDecoder(provider=self.name, model=upstream_model, created=int(time.time()),
                                response_id=upstream.headers.get("x-amzn-requestid") or f"bedrock-{uuid.uuid4().hex}",
                                secrets=_secrets(credential))
        return upstream, decoder

    # the non-chat surfaces: InvokeModel (bodies and answers in ``media``) -------------------

    async def _invoke(self, upstream_model: str, body: bytes, credential: Credential) -> bytes:
        url, headers = await off_loop(len(body), partial(self._signed, credential, upstream_model, "invoke", body,
                                                         JSON))
        return await self.client.post(url, headers, body, secret=_secrets(credential))

    def _unreadable(self, what: str) -> UpstreamError:
        return UpstreamError(f"{self.name} upstream sent an unreadable {what}", provider=self.name)

    async def embed(self, req: EmbedRequest, *, upstream_model: str, credential: Credential) -> Embeddings:
        if req.tokens and not req.texts:
            raise InvalidRequest("Bedrock embeds text only: send the input as strings, not token arrays",
                                 param="input")
        texts = list(req.texts)
        if not texts:
            raise InvalidRequest("no input to embed", param="input")
        if bm.embed_family(upstream_model) == "titan":
            bodies = [bm.titan_embed_body(t, req.dimensions) for t in texts]
            raws = await bounded(partial(self._invoke, upstream_model, b, credential) for b in bodies)
            try:
                answers = [bm.read_titan_embedding(raw) for raw in raws]
            except ValueError:  # msgspec's errors included
                raise self._unreadable("Titan embedding") from None
            return Embeddings(vectors=[v for v, _ in answers], usage=Usage(input_tokens=sum(n for _, n in answers)))
        batches = [texts[i:i + bm.COHERE_BATCH] for i in range(0, len(texts), bm.COHERE_BATCH)]
        raws = await bounded(partial(self._invoke, upstream_model, bm.cohere_embed_body(b, req.dimensions),
                                      credential) for b in batches)
        vectors: list[list[float]] = []
        for raw, batch in zip(raws, batches, strict=True):
            try:
                vectors += bm.read_cohere_embeddings(raw, len(batch))
            except ValueError:
                raise self._unreadable("Cohere embedding") from None
        # Cohere counts no tokens: ceil(characters / 4), an estimate
        return Embeddings(vectors=vectors, usage=Usage(input_tokens=bm.estimate_tokens(texts)))

    async def make_images(self, req: ImageRequest, *, upstream_model: str, credential: Credential) -> Images:
        if not 1 <= req.n <= 10:
            raise InvalidRequest(f"n must be 1..10, not {req.n}", param="n")
        family = bm.image_family(upstream_model)
        step = bm.MAX_IMAGES_PER_CALL
        bodies = [bm.image_body(req, family, min(step, req.n - i)) for i in range(0, req.n, step)]
        raws = await bounded(partial(self._invoke, upstream_model, b, credential) for b in bodies)
        images = []
        for raw in raws:
            try:
                got, error = bm.read_images(raw)
            except ValueError:
                raise self._unreadable("image answer") from None
            if error or not got:  # the model refused (content filters): another credential gets the same
                err = UpstreamError(f"{self.name}: the model returned no image ({(error or 'no reason')[:200]})",
                                    provider=self.name)
                err.retryable = False
                raise err
            images += got
        return Images(images=images)

    async def close(self) -> None:
        await self.client.close()


def _secrets(credential: Credential) -> tuple[str | None, ...]:
    """Every part of a credential the client must redact, before it parses or cuts an error."""
    return (credential.secret, credential.extra.get("session_token"))


def build(config: ProviderConfig, ctx: ProviderContext) -> BedrockProvider:
    return BedrockProvider(config, ctx)
