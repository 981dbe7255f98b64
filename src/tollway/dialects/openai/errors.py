"""Error envelopes: OpenAI's ``{"error": {message, type, param, code}}`` and the platform's
(seed 003) ``{"error": {message, type, code}}`` whose ``type`` equals its ``code``."""

from __future__ import annotations

from typing import Any

from tollway.core.errors import TollwayError

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error_body(err: TollwayError) -> dict[str, Any]:
    status = err.http_status
    kind = _OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if err.code in ("quota_exceeded", "insufficient_quota"):
        kind = "insufficient_quota"
    return {"error": {"message": err.message, "type": kind, "param": err.param, "code": err.code}}


def platform_error_body(err: TollwayError) -> dict[str, Any]:
    return {"error": {"message": err.message, "type": err.code, "code": err.code}}
