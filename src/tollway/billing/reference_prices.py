"""Reference prices of the built-in catalog: estimates for models the operator has not priced.

A model without an operator price is free to its callers (it touches no wallet), and its request
log showed a cost of 0. The figures here are each provider's published list price for the models
its ``SPEC`` lists, in US dollars per million input and output tokens, standard (on-demand, not
batch, not cached) tier, as published in late 2025. They give a call on such a model an
``estimated_cost_micro`` (micro-USD) in the request log and usage listings: an estimate of what
the upstream bills for it, never charged to anyone and never a reason to refuse a call.

Where a provider's price has tiers, the figure is the base tier: Gemini 2.5 Pro's prompts up to
200k tokens, Bedrock's on-demand price in us-east-1 (the global cross-region profiles of the Claude
4.5 models), DeepSeek's cache-miss input price. Cached input is priced as input (as Tollway bills
it, see README "Not yet"). A model is found by its catalog id, else by its upstream id, so a name
made up for the same upstream model (``openai/gpt-4o``, ``<provider>/<id>``) finds it too.
Update the table (and ``AS_OF``) when providers change their prices; operators who bill set
their own prices in the model registry, which always take precedence.
"""

from __future__ import annotations

from decimal import Decimal

from tollway.core.catalog import ModelInfo
from tollway.core.money import MICRO

AS_OF = "2025-11"
CURRENCY = "USD"

# catalog id (and, where it differs, upstream id) -> (input, output) in USD per million tokens
_LIST_PRICES: dict[tuple[str, ...], tuple[str, str]] = {
    # OpenAI (platform.openai.com/docs/pricing)
    ("gpt-4o-mini",): ("0.15", "0.60"),
    ("gpt-4o",): ("2.50", "10.00"),
    ("gpt-4.1",): ("2.00", "8.00"),
    ("gpt-4.1-mini",): ("0.40", "1.60"),
    ("gpt-4.1-nano",): ("0.10", "0.40"),
    ("o4-mini",): ("1.10", "4.40"),
    ("o3",): ("2.00", "8.00"),
    ("gpt-3.5-turbo-instruct",): ("1.50", "2.00"),  # legacy completions
    ("omni-moderation-latest",): ("0", "0"),  # moderations are free
    ("text-moderation-latest",): ("0", "0"),
    ("text-embedding-3-small",): ("0.02", "0"),
    ("text-embedding-3-large",): ("0.13", "0"),
    ("text-embedding-ada-002",): ("0.10", "0"),
    ("gpt-image-1",): ("5.00", "40.00"),  # text input, image output tokens
    ("gpt-image-1-mini",): ("2.00", "8.00"),
    ("gpt-4o-mini-tts",): ("0.60", "12.00"),  # text input, audio output tokens
    ("gpt-4o-transcribe",): ("2.50", "10.00"),  # audio input, text output tokens
    ("gpt-4o-mini-transcribe",): ("1.25", "5.00"),
    # priced per thing made or per unit, not per token (UNIT_PRICES below)
    ("dall-e-3",): ("0", "0"),
    ("dall-e-2",): ("0", "0"),
    ("tts-1",): ("0", "0"),
    ("tts-1-hd",): ("0", "0"),
    ("whisper-1",): ("0", "0"),
    ("sora-2",): ("0", "0"),
    ("sora-2-pro",): ("0", "0"),
    # Anthropic (claude.com/pricing)
    ("claude-sonnet-4-5",): ("3.00", "15.00"),
    ("claude-haiku-4-5",): ("1.00", "5.00"),
    ("claude-opus-4-6",): ("5.00", "25.00"),
    # Google Gemini API (ai.google.dev/gemini-api/docs/pricing), paid tier
    ("gemini-2.5-flash",): ("0.30", "2.50"),
    ("gemini-2.5-pro",): ("1.25", "10.00"),
    ("gemini-2.0-flash",): ("0.10", "0.40"),
    ("gemini-embedding-001",): ("0.15", "0"),
    ("text-embedding-004",): ("0", "0"),  # free of charge on the Gemini API
    ("gemini-2.5-flash-image",): ("0.30", "30.00"),  # text input, image output tokens (~$0.039 an image)
    ("gemini-2.5-flash-preview-tts",): ("0.50", "10.00"),  # text input, audio output tokens
    ("gemini-2.5-pro-preview-tts",): ("1.00", "20.00"),
    ("imagen-4.0-generate-001",): ("0", "0"),  # per image (UNIT_PRICES)
    ("veo-3.0-generate-001",): ("0", "0"),  # per second of video (UNIT_PRICES)
    ("veo-3.0-fast-generate-001",): ("0", "0"),
    ("veo-2.0-generate-001",): ("0", "0"),
    # Amazon Bedrock (aws.amazon.com/bedrock/pricing), on-demand
    ("bedrock/claude-sonnet-4-5", "global.anthropic.claude-sonnet-4-5-20250929-v1:0"): ("3.00", "15.00"),
    ("bedrock/claude-haiku-4-5", "global.anthropic.claude-haiku-4-5-20251001-v1:0"): ("1.00", "5.00"),
    ("bedrock/claude-3-5-haiku", "us.anthropic.claude-3-5-haiku-20241022-v1:0"): ("0.80", "4.00"),
    ("bedrock/nova-pro", "amazon.nova-pro-v1:0"): ("0.80", "3.20"),
    ("bedrock/nova-lite", "amazon.nova-lite-v1:0"): ("0.06", "0.24"),
    ("bedrock/nova-micro", "amazon.nova-micro-v1:0"): ("0.035", "0.14"),
    ("bedrock/titan-embed-text-v2", "amazon.titan-embed-text-v2:0"): ("0.02", "0"),
    ("bedrock/cohere-embed-english-v3", "cohere.embed-english-v3"): ("0.10", "0"),
    ("bedrock/cohere-embed-multilingual-v3", "cohere.embed-multilingual-v3"): ("0.10", "0"),
    ("bedrock/titan-image-generator-v2", "amazon.titan-image-generator-v2:0"): ("0", "0"),  # per image
    ("bedrock/nova-canvas", "amazon.nova-canvas-v1:0"): ("0", "0"),  # per image
    # DeepSeek (api-docs.deepseek.com/quick_start/pricing), V3.2: both endpoints, cache-miss input
    ("deepseek-chat",): ("0.28", "0.42"),
    ("deepseek-reasoner",): ("0.28", "0.42"),
}


# name -> (what is counted, USD per one): an image (standard quality, 1024x1024), a character of
# speech input, a second of audio heard or of video made
_UNIT_LIST_PRICES: dict[str, tuple[str, str]] = {
    "dall-e-3": ("image", "0.04"),
    "dall-e-2": ("image", "0.02"),
    "tts-1": ("character", "0.000015"),
    "tts-1-hd": ("character", "0.00003"),
    "whisper-1": ("second", "0.0001"),
    "sora-2": ("second", "0.10"),
    "sora-2-pro": ("second", "0.30"),
    "imagen-4.0-generate-001": ("image", "0.04"),
    "veo-3.0-generate-001": ("second", "0.40"),
    "veo-3.0-fast-generate-001": ("second", "0.15"),
    "veo-2.0-generate-001": ("second", "0.35"),
    "amazon.titan-image-generator-v2:0": ("image", "0.01"),
    "amazon.nova-canvas-v1:0": ("image", "0.04"),
}


def _micro(usd: str) -> int:
    return int(Decimal(usd) * MICRO)  # every list price is a whole number of micro-dollars


# name -> (input, output) in micro-USD per million tokens
PRICES: dict[str, tuple[int, int]] = {
    name: (_micro(price_in), _micro(price_out))
    for names, (price_in, price_out) in _LIST_PRICES.items() for name in names
}


# name -> (unit, micro-USD per unit)
UNIT_PRICES: dict[str, tuple[str, int]] = {name: (unit, _micro(usd)) for name, (unit, usd) in _UNIT_LIST_PRICES.items()}


def reference_price(model: ModelInfo) -> tuple[int, int] | None:
    """(input, output) micro-USD per million tokens at list price, by catalog id, else upstream id."""
    return PRICES.get(model.id) or PRICES.get(model.upstream_id)


def estimate(model: ModelInfo, input_tokens: int, output_tokens: int, *, count: int = 1,
             units: int = 0) -> int | None:
    """Micro-USD a call on ``model`` would cost at its provider's list price, rounded up once; None
    for a model the operator has priced (its cost is what is charged) or one not listed here.
    ``count``: images made; ``units``: characters or seconds (a model priced per unit)."""
    if model.priced:
        return None
    price = reference_price(model)
    if price is None:
        return None
    total = max(0, input_tokens) * price[0] + max(0, output_tokens) * price[1]
    per_unit = UNIT_PRICES.get(model.id) or UNIT_PRICES.get(model.upstream_id)
    if per_unit is not None:
        unit, micro = per_unit
        total += (max(1, count) if unit == "image" else max(0, units)) * micro * 1_000_000
    return -(-total // 1_000_000)
