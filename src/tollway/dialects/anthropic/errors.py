"""Anthropic's error envelope: ``{"type": "error", "error": {"type", "message"}, "request_id"}``,
and its error types both ways: the type a tollway error is rendered as, and the HTTP status an
upstream's error type (in a 200 or mid-stream) stands for."""

from __future__ import annotations

from typing import Any

from tollway.core.errors import TollwayError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",  # the docs name request_too_large; the spec's ErrorResponse does not
    429: "rate_limit_error",
    499: "invalid_request_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# Anthropic's error types and the HTTP status each stands for
ERROR_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}


def anthropic_error_body(err: TollwayError, request_id: str | None = None) -> dict[str, Any]:
    status = err.http_status
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if getattr(err, "upstream_status", None) == 529:  # an UpstreamError, or every attempt failed, the last so
        kind = "overloaded_error"  # clients such as Claude Code retry on this type: keep it
    return {"type": "error", "error": {"type": kind, "message": err.message}, "request_id": request_id}
