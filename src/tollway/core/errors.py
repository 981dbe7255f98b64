"""One error hierarchy for the whole gateway.

Every error carries an HTTP ``status``, a stable ``code`` (the platform dialect's
``error.code``), whether a retry on another credential may help (``retryable``) and who is
to blame (``blame``: client, upstream or gateway). Dialects render these in their own
envelopes; routing decides retries from ``retryable`` and ``blame`` alone.

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
 +-- AllUpstreamsFailed        502  provider_error (every attempt's error)
 +-- PayloadTooLarge           413  payload_too_large
 +-- ClientGone                499  client_closed_request
 +-- NotImplementedYet         501  not_implemented (a City action whose capability is not built yet)
 +-- MethodNotAllowed          405  method_not_allowed
 +-- ConfigError               500  config_error (settings or YAML that cannot work; raised at start)
 +-- InternalError             500  internal_error
"""

from __future__ import annotations

from typing import ClassVar, Literal

Blame = Literal["client", "upstream", "gateway"]


class TollwayError(Exception):
    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False
    blame: ClassVar[Blame] = "gateway"

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
    blame = "client"


class PayloadTooLarge(TollwayError):
    status = 413
    default_code = "payload_too_large"
    blame = "client"


class AuthenticationFailed(TollwayError):
    status = 401
    default_code = "invalid_api_key"
    blame = "client"


class PermissionDenied(TollwayError):
    status = 403
    default_code = "permission_denied"
    blame = "client"


class InsufficientCredits(TollwayError):
    status = 402
    default_code = "insufficient_credits"
    blame = "client"


class QuotaExceeded(TollwayError):
    status = 429
    default_code = "quota_exceeded"
    blame = "client"


class RateLimited(TollwayError):
    status = 429
    default_code = "rate_limited"
    blame = "client"

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class NotFound(TollwayError):
    status = 404
    default_code = "not_found"
    blame = "client"


class ModelNotFound(NotFound):
    default_code = "model_not_available"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, param="model")


class ProviderNotConfigured(TollwayError):
    status = 503
    default_code = "provider_not_configured"
    blame = "gateway"


class UpstreamError(TollwayError):
    """The upstream answered with an error, or broke the connection.

    ``upstream_status`` is what the provider sent (None when the connection failed);
    ``status`` is what the caller gets: the provider's 4xx client errors keep their status,
    everything else is a 502.
    """

    status = 502
    default_code = "provider_error"
    blame = "upstream"

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

    @property
    def http_status(self) -> int:
        s = self.upstream_status
        if s is None:
            return self.status
        if s == 429:
            return 429
        if s in (400, 404, 413, 422):
            return s
        return 502

    @property
    def is_retryable(self) -> bool:
        s = self.upstream_status
        return s is None or s == 429 or s >= 500 or s in (401, 403)


class UpstreamTimeout(UpstreamError):
    status = 504
    default_code = "provider_timeout"

    @property
    def http_status(self) -> int:
        return 504


class PoolExhausted(TollwayError):
    status = 429
    default_code = "pool_exhausted"
    blame = "gateway"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class CredentialsDisabled(TollwayError):
    """Every credential a call could use is disabled (its upstream answered 401/403)."""

    status = 503
    default_code = "credentials_disabled"
    blame = "gateway"


class AllUpstreamsFailed(TollwayError):
    status = 502
    default_code = "provider_error"
    blame = "upstream"

    def __init__(self, message: str, *, attempts: list[TollwayError]) -> None:
        super().__init__(message)
        self.attempts = attempts


class ClientGone(TollwayError):
    """The caller disconnected before the answer (nginx's 499); nobody reads the error body."""

    status = 499
    default_code = "client_closed_request"
    blame = "client"


class NotImplementedYet(TollwayError):
    """A capability that does not exist yet (the City media actions before the media pipeline)."""

    status = 501
    default_code = "not_implemented"
    blame = "gateway"


class MethodNotAllowed(TollwayError):
    status = 405
    default_code = "method_not_allowed"
    blame = "client"


class ConfigError(TollwayError):
    status = 500
    default_code = "config_error"
    blame = "gateway"


class InternalError(TollwayError):
    status = 500
    default_code = "internal_error"
    blame = "gateway"
