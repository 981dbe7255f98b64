"""One error hierarchy for the whole gateway.

Every error carries an HTTP ``status``, a stable ``code`` (the platform dialect's
``error.code``) and whether another attempt (another credential, a fallback model) may help
(``retryable``). Dialects render these in their own envelopes; the request pipeline decides
retries from ``retryable`` alone. What an upstream's HTTP status means is data:
``UPSTREAM_STATUS`` (the status the caller gets, and whether to retry).

TollwayError
 +-- InvalidRequest            400  invalid_request / model_required / messages_required
 +-- AuthenticationFailed      401  invalid_api_key
 +-- PermissionDenied          403  api_disabled / permission_denied
 +-- InsufficientCredits       402  insufficient_credits
 +-- QuotaExceeded             429  quota_exceeded
 +-- RateLimited               429  rate_limited (retry_after)
 +-- NotFound                  404  not_found
 |    +-- ModelNotFound        404  model_not_available
 +-- ProviderNotConfigured     503  provider_not_configured
 +-- UpstreamError             502  provider_error (provider, upstream status)
 |    +-- UpstreamTimeout      504  provider_timeout
 +-- PoolExhausted             429  pool_exhausted
 +-- CredentialsDisabled       503  credentials_disabled (every usable credential got 401/403 upstream)
 +-- AllUpstreamsFailed        the last attempt's status and code, with every attempt's error
 +-- PayloadTooLarge           413  payload_too_large
 +-- ClientGone                499  client_closed_request
 +-- ServerShuttingDown        503  server_shutdown (the shutdown grace cut the response)
 +-- NotImplementedYet         501  not_implemented (a City action whose capability is not built yet)
 +-- MethodNotAllowed          405  method_not_allowed
 +-- ConfigError               500  config_error (settings or YAML that cannot work; raised at start)
 +-- InternalError             500  internal_error
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class TollwayError(Exception):
    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"
    retryable: bool = False  # a class's default; an UpstreamError's comes from its status

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param

    @property
    def http_status(self) -> int:
        return self.status


class InvalidRequest(TollwayError):
    status = 400
    default_code = "invalid_request"


def require(cond: bool, message: str, param: str | None = None) -> None:
    """A decoder's check: ``InvalidRequest(message, param=param)`` (a 400) unless ``cond``."""
    if not cond:
        raise InvalidRequest(message, param=param)


class PayloadTooLarge(TollwayError):
    status = 413
    default_code = "payload_too_large"


class AuthenticationFailed(TollwayError):
    status = 401
    default_code = "invalid_api_key"


class PermissionDenied(TollwayError):
    status = 403
    default_code = "permission_denied"


class InsufficientCredits(TollwayError):
    status = 402
    default_code = "insufficient_credits"


class QuotaExceeded(TollwayError):
    status = 429
    default_code = "quota_exceeded"


class RateLimited(TollwayError):
    status = 429
    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class NotFound(TollwayError):
    status = 404
    default_code = "not_found"


class ModelNotFound(NotFound):
    default_code = "model_not_available"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, param="model")


class ProviderNotConfigured(TollwayError):
    status = 503
    default_code = "provider_not_configured"


# an upstream's HTTP status -> (the status the caller gets, whether another credential may help);
# a status not listed: 502, retried when it is a 5xx; no status (the connection failed): 502, retried
UPSTREAM_STATUS: dict[int, tuple[int, bool]] = {
    400: (400, False), 404: (404, False), 413: (413, False), 422: (422, False),  # the request itself
    401: (502, True),  # this credential was not accepted: another may work
    403: (403, True),  # refused for this request (a model this key may not use, content): another key may serve it
    429: (429, True),
}


def upstream_policy(status: int | None) -> tuple[int, bool]:
    if status is None:
        return 502, True
    return UPSTREAM_STATUS.get(status, (502, status >= 500))


class UpstreamError(TollwayError):
    """The upstream answered with an error, or broke the connection.

    ``upstream_status`` is what the provider sent (None when the connection failed);
    ``status`` is what the caller gets: the provider's 4xx client errors keep their status,
    everything else is a 502.
    """

    status = 502
    default_code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        upstream_status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.provider = provider
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self._status, self.retryable = upstream_policy(upstream_status)

    @property
    def http_status(self) -> int:
        return self._status


class UpstreamTimeout(UpstreamError):
    status = 504
    default_code = "provider_timeout"

    @property
    def http_status(self) -> int:
        return 504


class PoolExhausted(TollwayError):
    status = 429
    default_code = "pool_exhausted"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class CredentialsDisabled(TollwayError):
    """Every credential a call could use is disabled (its upstream answered 401/403)."""

    status = 503
    default_code = "credentials_disabled"


class AllUpstreamsFailed(TollwayError):
    """Every attempt of a call failed: the caller gets the last attempt's status, code and
    Retry-After, and a message that names every attempt (``attempts``: one line each)."""

    status = 502
    default_code = "provider_error"

    def __init__(self, errors: Sequence[TollwayError], attempts: Sequence[str]) -> None:
        last = errors[-1]
        listing = "; ".join(attempts)
        super().__init__(f"{last.message} (all {len(errors)} attempts failed: {listing})", code=last.code,
                         param=last.param)
        self.errors = list(errors)
        self.attempts = list(attempts)
        self.retry_after: float | None = getattr(last, "retry_after", None)
        self.upstream_status: int | None = getattr(last, "upstream_status", None)

    @property
    def http_status(self) -> int:
        return self.errors[-1].http_status


class ClientGone(TollwayError):
    """The caller disconnected before the answer (nginx's 499); nobody reads the error body."""

    status = 499
    default_code = "client_closed_request"


class ServerShuttingDown(TollwayError):
    """The server's shutdown grace ran out before this response was complete."""

    status = 503
    default_code = "server_shutdown"
    retryable = True


class NotImplementedYet(TollwayError):
    """A capability that does not exist yet (the City media actions before the media pipeline)."""

    status = 501
    default_code = "not_implemented"


class MethodNotAllowed(TollwayError):
    status = 405
    default_code = "method_not_allowed"


class ConfigError(TollwayError):
    status = 500
    default_code = "config_error"


class InternalError(TollwayError):
    status = 500
    default_code = "internal_error"
