"""Any other OpenAI-compatible server (vLLM, Groq, LM Studio ...), configured in YAML.

YAML ``options`` may set ``chat_path``, ``auth_header``, ``auth_prefix``, ``renames`` and
``drops`` to describe the server's quirks (``wire_models``: which models an endpoint serves),
and ``responses_path`` / ``completions_path`` where the server has OpenAI's Responses API /
legacy completions (vLLM: ``/responses``, ``/completions``); without them those requests are
translated to chat. ``moderations_path``
where it has OpenAI's moderations (without it, its models cannot moderate). ``media_paths`` maps
OpenAI's non-chat wires the server has to their paths (``{embeddings: /embeddings, images:
/images/generations, speech: /audio/speech, transcriptions: /audio/transcriptions, videos:
/videos}``: vLLM and LocalAI have some; a wire not named is refused for its models). A path is appended
to ``base_url``, one starting with ``../`` replaces its last segment, and an absolute URL is
taken as it is (``openai_wire.endpoint``).
"""

from __future__ import annotations

import msgspec

from tollway.core.catalog import ProviderConfig, ProviderSpec
from tollway.core.names import PROVIDER_OPENAI_COMPATIBLE
from tollway.providers.base import ProviderContext
from tollway.providers.openai_wire import OPENAI_WIRE_FEATURES, OpenAICompatProvider, Quirks

SPEC = ProviderSpec(name=PROVIDER_OPENAI_COMPATIBLE, kind=PROVIDER_OPENAI_COMPATIBLE, open_catalog=True,
                    features=OPENAI_WIRE_FEATURES, discover_models=True)


def build(config: ProviderConfig, ctx: ProviderContext) -> OpenAICompatProvider:
    keys = ("chat_path", "responses_path", "completions_path", "moderations_path", "media_paths", "auth_header",
            "auth_prefix",
            "renames", "drops", "extra_headers", "wire_models")
    quirks = msgspec.convert({k: v for k, v in config.options.items() if k in keys}, Quirks)
    return OpenAICompatProvider(config, quirks=quirks, timeouts=ctx.timeouts, media=ctx.media,
                                transport=ctx.transport)
