"""The OpenAI chat-completions dialect (also the platform ``/api/v1`` alias)."""
