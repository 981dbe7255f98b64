"""Structured logs: with ``TOLLWAY_LOG_FORMAT=json`` every log record is one JSON line, and every
finished request one more (logger ``tollway.access``, at INFO whatever the level of the rest):
request id, key prefix, path, dialect, model, provider, upstream model, status, latency, time to
first token, tokens, cost, error code. Never a secret, a full key or a prompt: the line is made
from the request-log row, which holds none. Human-readable (uvicorn's format) is the default,
without the per-request line; ``--log-level`` sets the level of the rest.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import msgspec

from tollway.core.request_log import RequestLog

ACCESS: Final = logging.getLogger("tollway.access")
_encoder = msgspec.json.Encoder()
_FIELDS: Final = ("id", "key_prefix", "path", "dialect", "model", "provider", "upstream_model", "status", "stream",
                  "latency_ms", "ttft_ms", "prompt_tokens", "completion_tokens", "cost_micro", "error_code")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                               "logger": record.name}
        request = getattr(record, "request", None)
        if isinstance(request, dict):
            out["event"] = "request"
            out.update(request)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return _encoder.encode(out).decode()


def access_line(row: RequestLog) -> dict[str, Any]:
    line = {name: getattr(row, name) for name in _FIELDS}
    line["request_id"] = line.pop("id")
    line["latency_ms"] = round(row.latency_ms, 2)
    if row.ttft_ms is not None:
        line["ttft_ms"] = round(row.ttft_ms, 2)
    return line


def log_request(row: RequestLog) -> None:
    """The request's JSON line, when the access logger is on (``TOLLWAY_LOG_FORMAT=json``)."""
    if ACCESS.isEnabledFor(logging.INFO):
        ACCESS.info("request", extra={"request": access_line(row)})


def configure(log_format: str) -> None:
    """Route every log record through the JSON formatter (root, tollway and uvicorn's loggers),
    and turn the per-request line on. Called in each worker as the app starts."""
    if log_format != "json":
        ACCESS.setLevel(logging.WARNING)  # off: nothing at INFO
        ACCESS.propagate = False
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("", "uvicorn", "uvicorn.error", "tollway"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
    ACCESS.handlers = [handler]
    ACCESS.setLevel(logging.INFO)
    ACCESS.propagate = False

