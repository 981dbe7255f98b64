"""From an HTML form to the JSON body of an API call. The console does not validate what the API
validates: it maps fields (an empty box is "not given", or null where the API clears with null)
and hands the API's own message back to the page when it refuses."""

from __future__ import annotations

import re
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request

_INT = re.compile(r"-?[0-9]{1,12}")
_SPLIT = re.compile(r"[\s,]+")


class Form:
    """The submitted fields (text only: file parts are ignored)."""

    def __init__(self, data: FormData) -> None:
        self.data = data

    @classmethod
    async def read(cls, request: Request) -> Form:
        return cls(await request.form())

    def text(self, name: str, default: str = "") -> str:
        value = self.data.get(name)
        return value.strip() if isinstance(value, str) else default

    def raw(self, name: str) -> str:
        """The field as typed (not stripped: a .env text, a password)."""
        value = self.data.get(name)
        return value if isinstance(value, str) else ""

    def given(self, name: str) -> str | None:
        """The field's text, or None when empty or absent."""
        return self.text(name) or None

    def number(self, name: str) -> int | str | None:
        """An integer when it looks like one (else the text, for the API to refuse by name); None if empty."""
        value = self.text(name)
        if not value:
            return None
        return int(value) if _INT.fullmatch(value) else value

    def amount(self, name: str) -> str | None:
        """Credits as a decimal string (the API parses money exactly); None if empty."""
        return self.given(name)

    def names(self, name: str) -> list[str]:
        """Names separated by commas, spaces or lines."""
        return [n for n in _SPLIT.split(self.text(name)) if n]

    def flag(self, name: str) -> bool:
        """A checkbox: present (any value but "false"/"0"/"off") is true."""
        value = self.data.get(name)
        return isinstance(value, str) and value.lower() not in ("", "false", "0", "off")

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(name)
        return value if value in choices else default


def compact(body: dict[str, Any]) -> dict[str, Any]:
    """The body without the fields left empty (None)."""
    return {k: v for k, v in body.items() if v is not None}
