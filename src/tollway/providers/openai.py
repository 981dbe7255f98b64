"""OpenAI: the code-registered catalog, callable once OPENAI_API_KEY is set."""

from __future__ import annotations

from tollway.core.catalog import EnvRequirement, ModelInfo, ProviderConfig, ProviderSpec
from tollway.core.media import CATEGORY, EMBEDDINGS, IMAGES, MODALITIES, SPEECH, TRANSCRIPTION, VIDEO
from tollway.core.names import (
    DIALECT_COMPLETIONS,
    PROVIDER_OPENAI,
    WIRE_EMBEDDINGS,
    WIRE_IMAGES,
    WIRE_SPEECH,
    WIRE_TRANSCRIPTIONS,
    WIRE_VIDEOS,
)
from tollway.providers.base import ProviderContext
from tollway.providers.openai_wire import OPENAI_WIRE_FEATURES, OpenAICompatProvider, Quirks


def _model(mid: str, name: str, caps: tuple[str, ...] = ("chat", "tools", "vision"), *,
           category: str = "chat") -> ModelInfo:
    return ModelInfo(id=mid, provider=PROVIDER_OPENAI, upstream_id=mid, display_name=name, capabilities=caps,
                     tags=("openai",), category=category)


def _media(mid: str, name: str, capability: str) -> ModelInfo:
    return ModelInfo(id=mid, provider=PROVIDER_OPENAI, upstream_id=mid, display_name=name, capabilities=(capability,),
                     modalities=MODALITIES[capability], tags=("openai",), category=CATEGORY[capability])


SPEC = ProviderSpec(
    name=PROVIDER_OPENAI,
    kind=PROVIDER_OPENAI,
    env_requirements=(
        EnvRequirement(key="OPENAI_API_KEY", description="OpenAI API key"),
        EnvRequirement(key="OPENAI_BASE_URL", description="OpenAI-compatible base URL", required=False),
    ),
    api_key_env="OPENAI_API_KEY",
    base_url_env="OPENAI_BASE_URL",
    default_base_url="https://api.openai.com/v1",
    models=(
        _model("gpt-4o-mini", "GPT-4o mini"),
        _model("gpt-4o", "GPT-4o"),
        _model("gpt-4.1", "GPT-4.1"),
        _model("gpt-4.1-mini", "GPT-4.1 mini"),
        _model("gpt-4.1-nano", "GPT-4.1 nano"),
        _model("o4-mini", "o4-mini", ("chat", "tools", "vision", "reasoning")),
        _model("o3", "o3", ("chat", "tools", "vision", "reasoning")),
        # legacy text completions only (/v1/completions)
        _model("gpt-3.5-turbo-instruct", "GPT-3.5 Turbo Instruct", ("completions",), category="completions"),
        # /v1/moderations only
        _model("omni-moderation-latest", "Omni moderation", ("moderation",), category="moderation"),
        _model("text-moderation-latest", "Text moderation", ("moderation",), category="moderation"),
        # the non-chat surfaces (core.media): /v1/embeddings, /v1/images/generations, /v1/audio/*, /v1/videos
        _media("text-embedding-3-small", "Text embedding 3 small", EMBEDDINGS),
        _media("text-embedding-3-large", "Text embedding 3 large", EMBEDDINGS),
        _media("text-embedding-ada-002", "Text embedding ada 002", EMBEDDINGS),
        _media("gpt-image-1", "GPT Image 1", IMAGES),
        _media("gpt-image-1-mini", "GPT Image 1 mini", IMAGES),
        _media("dall-e-3", "DALL·E 3", IMAGES),
        _media("dall-e-2", "DALL·E 2", IMAGES),
        _media("gpt-4o-mini-tts", "GPT-4o mini TTS", SPEECH),
        _media("tts-1", "TTS 1", SPEECH),
        _media("tts-1-hd", "TTS 1 HD", SPEECH),
        _media("gpt-4o-transcribe", "GPT-4o transcribe", TRANSCRIPTION),
        _media("gpt-4o-mini-transcribe", "GPT-4o mini transcribe", TRANSCRIPTION),
        _media("whisper-1", "Whisper", TRANSCRIPTION),
        _media("sora-2", "Sora 2", VIDEO),
        _media("sora-2-pro", "Sora 2 Pro", VIDEO),
    ),
    open_catalog=True,
    model_prefixes=("gpt-", "chatgpt-", "o1", "o3", "o4", "omni-moderation-", "text-moderation-", "text-embedding-",
                    "dall-e-", "tts-", "whisper-", "sora-"),
    features=OPENAI_WIRE_FEATURES,
)

# OpenAI accepts max_completion_tokens for every model and rejects max_tokens on o-series;
# its Responses API, legacy completions and moderations take their own requests as they are
QUIRKS = Quirks(renames={"max_tokens": "max_completion_tokens"}, responses_path="/responses",
                completions_path="/completions", moderations_path="/moderations",
                media_paths={WIRE_EMBEDDINGS: "/embeddings", WIRE_IMAGES: "/images/generations",
                             WIRE_SPEECH: "/audio/speech", WIRE_TRANSCRIPTIONS: "/audio/transcriptions",
                             WIRE_VIDEOS: "/videos"},
                # its legacy completions serve the instruct and base models only (and their
                # fine-tunes, "ft:davinci-002:..."): a chat model's completion is translated to chat
                wire_models={DIALECT_COMPLETIONS: ("instruct", "davinci", "babbage", "ft:davinci", "ft:babbage")})


def build(config: ProviderConfig, ctx: ProviderContext) -> OpenAICompatProvider:
    return OpenAICompatProvider(config, quirks=QUIRKS, timeouts=ctx.timeouts, media=ctx.media,
                                transport=ctx.transport)
