"""The error hierarchy's statuses and how the OpenAI and platform envelopes render it."""

from __future__ import annotations

import pytest

from tollway.core.errors import (
    AllUpstreamsFailed,
    AuthenticationFailed,
    InsufficientCredits,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    ProviderNotConfigured,
    QuotaExceeded,
    RateLimited,
    TollwayError,
    UpstreamError,
    UpstreamTimeout,
)
from tollway.dialects.openai.errors import openai_error_body, platform_error_body


@pytest.mark.parametrize(
    ("err", "status", "code", "openai_type"),
    [
        (InvalidRequest("bad", param="x"), 400, "invalid_request", "invalid_request_error"),
        (InvalidRequest("no model", code="model_required"), 400, "model_required", "invalid_request_error"),
        (AuthenticationFailed("who"), 401, "invalid_api_key", "authentication_error"),
        (PermissionDenied("off", code="api_disabled"), 403, "api_disabled", "permission_error"),
        (InsufficientCredits("poor"), 402, "insufficient_credits", "insufficient_quota"),
        (QuotaExceeded("month"), 429, "quota_exceeded", "insufficient_quota"),
        (RateLimited("slow", retry_after=2), 429, "rate_limited", "rate_limit_error"),
        (ModelNotFound("which"), 404, "model_not_available", "invalid_request_error"),
        (ProviderNotConfigured("env"), 503, "provider_not_configured", "api_error"),
        (UpstreamError("down", provider="p"), 502, "provider_error", "api_error"),
        (UpstreamError("5xx", provider="p", upstream_status=503), 502, "provider_error", "api_error"),
        (UpstreamError("auth", provider="p", upstream_status=401), 502, "provider_error", "api_error"),
        (UpstreamError("busy", provider="p", upstream_status=429), 429, "provider_error", "rate_limit_error"),
        (UpstreamError("bad param", provider="p", upstream_status=400), 400, "provider_error",
         "invalid_request_error"),
        (UpstreamTimeout("slow", provider="p", upstream_status=None), 504, "provider_timeout", "api_error"),
        (AllUpstreamsFailed([UpstreamError("a", provider="p"), UpstreamError("b", provider="p")], ["1", "2"]), 502,
         "provider_error", "api_error"),
        (AllUpstreamsFailed([UpstreamError("a", provider="p"), RateLimited("b", retry_after=3)], ["1", "2"]), 429,
         "rate_limited", "rate_limit_error"),
    ],
)
def test_status_code_and_envelopes(err: TollwayError, status: int, code: str, openai_type: str) -> None:
    assert err.http_status == status and err.code == code
    body = openai_error_body(err)
    assert body == {"error": {"message": err.message, "type": openai_type, "param": err.param, "code": code}}
    assert platform_error_body(err) == {"error": {"message": err.message, "type": code, "code": code}}


def test_upstream_errors_say_what_is_worth_retrying() -> None:
    assert UpstreamError("x", provider="p").retryable  # connection failed
    assert UpstreamError("x", provider="p", upstream_status=500).retryable
    assert UpstreamError("x", provider="p", upstream_status=429).retryable
    assert UpstreamError("x", provider="p", upstream_status=401).retryable  # another credential may work
    assert not UpstreamError("x", provider="p", upstream_status=400).retryable  # the request itself is bad
    assert not UpstreamError("x", provider="p", upstream_status=418).retryable  # an odd 4xx: not the credential's
    assert not InvalidRequest("x").retryable


def test_all_attempts_failed_keeps_the_last_error_and_names_each() -> None:
    err = AllUpstreamsFailed([UpstreamError("first broke", provider="p", upstream_status=500),
                              UpstreamError("second busy", provider="p", upstream_status=429, retry_after=7)],
                             ["m via p/a: 502 provider_error", "m via p/b: 429 provider_error"])
    assert err.http_status == 429 and err.retry_after == 7 and err.upstream_status == 429
    assert err.message.startswith("second busy") and "m via p/a: 502" in err.message and "p/b" in err.message
