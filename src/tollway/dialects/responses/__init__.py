"""OpenAI's Responses API front door (``/v1/responses``)."""
