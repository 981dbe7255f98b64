"""Credentials never leave in an error: ``redact`` masks every part of one in a text."""

from __future__ import annotations

# one secret, or all the parts of a credential that must never leave (Bedrock's session token)
Secret = str | tuple[str | None, ...] | None


def secret_parts(secret: Secret) -> list[str]:
    """The parts worth masking (a part shorter than four characters would mask noise)."""
    parts = secret if isinstance(secret, tuple) else (secret,)
    return [p for p in parts if p and len(p) >= 4]


def redact(text: str, secret: Secret) -> str:
    for part in secret_parts(secret):
        if part in text:
            text = text.replace(part, "***")
    return text
