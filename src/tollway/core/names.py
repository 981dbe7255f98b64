"""Provider kinds and dialect names, defined once."""

from typing import Final

# dialects (front doors and the wire format an upstream speaks)
DIALECT_OPENAI: Final = "openai"
DIALECT_PLATFORM: Final = "platform"  # OpenAI wire, seed-003 error body
DIALECT_RESPONSES: Final = "responses"  # OpenAI's Responses API (/v1/responses)
DIALECT_COMPLETIONS: Final = "completions"  # OpenAI's legacy text completions (/v1/completions)
DIALECT_MODERATIONS: Final = "moderations"  # OpenAI's moderations (/v1/moderations): an upstream wire only
DIALECT_ANTHROPIC: Final = "anthropic"
DIALECT_CITY: Final = "city"
# OpenAI's non-chat wires an OpenAI-compatible upstream may have (Quirks.media_paths)
WIRE_EMBEDDINGS: Final = "embeddings"  # POST /embeddings
WIRE_IMAGES: Final = "images"  # POST /images/generations
WIRE_SPEECH: Final = "speech"  # POST /audio/speech
WIRE_TRANSCRIPTIONS: Final = "transcriptions"  # POST /audio/transcriptions (multipart)
WIRE_VIDEOS: Final = "videos"  # POST /videos, GET /videos/{id}, GET /videos/{id}/content
DIALECT_GEMINI: Final = "gemini"  # upstream wires only: no front door speaks them
DIALECT_BEDROCK: Final = "bedrock"

# provider keys
PROVIDER_ECHO: Final = "echo"
PROVIDER_OPENAI: Final = "openai"
PROVIDER_DEEPSEEK: Final = "deepseek"
PROVIDER_OLLAMA: Final = "ollama"
PROVIDER_OPENAI_COMPATIBLE: Final = "openai_compatible"
PROVIDER_ANTHROPIC: Final = "anthropic"
PROVIDER_GEMINI: Final = "gemini"
PROVIDER_BEDROCK: Final = "bedrock"

# key roles
ROLE_USER: Final = "user"
ROLE_ADMIN: Final = "admin"
