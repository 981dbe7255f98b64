"""The Anthropic Messages front door (``/v1/messages``, ``/anthropic/v1/...``)."""
