"""Tollway: a self-hosted, multi-tenant LLM API gateway."""

__version__ = "0.1.0"
