"""Alerts in process: the payload formats, Feishu's signature, rule validation and masks, the
debounce, the quota steps, the p99 (against a plain sort), credential findings from a real pool,
and delivery (retry, refusal, no URL in the log) against the fake receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.webhook_server import WebhookServer
from tollway.alerts.checks import CoolingWatch, credential_findings, debounced_period, p99, quota_findings
from tollway.alerts.config import listed, masked_url, validate
from tollway.alerts.engine import interval_of
from tollway.alerts.formats import Alert, feishu_sign, payload, refused
from tollway.alerts.sender import Webhooks
from tollway.auth.secret_box import SecretBox
from tollway.core.catalog import Credential
from tollway.core.errors import InvalidRequest
from tollway.routing.pools import CredentialPool
from tollway.store.alerts import AlertRule, Firing, KeyFigure, nearest_rank, top_needed

BOX = SecretBox(Fernet.generate_key())
ALERT = Alert(kind="error_rate", subject="model m", message="error rate 50%", value=0.5, threshold=0.2,
              at=1_767_225_600.0, gateway="gw-1")


def rule(body: dict[str, Any], rule_id: int = 1) -> AlertRule:
    fields = validate(BOX, body, None)
    return AlertRule(id=rule_id, created_at=0.0, updated_at=0.0, **{
        f: getattr(fields, f) for f in ("name", "kind", "enabled", "filters", "threshold", "minutes", "window",
                                        "min_requests", "webhook", "format", "secret", "debounce")})


# --- formats ---------------------------------------------------------------------------------

def test_the_generic_json_shape() -> None:
    assert payload(ALERT, "json") == {"alert": "error_rate", "subject": "model m", "message": "error rate 50%",
                                      "value": 0.5, "threshold": 0.2, "at": "2026-01-01T00:00:00Z",
                                      "gateway": "gw-1"}


def test_slack_and_feishu_text() -> None:
    text = "[Tollway gw-1] error_rate: model m: error rate 50%"
    assert payload(ALERT, "slack") == {"text": text}
    assert payload(ALERT, "feishu") == {"msg_type": "text", "content": {"text": text}}


def test_feishu_signature_as_documented() -> None:
    # Feishu: string_to_sign = timestamp + "\n" + secret; HmacSHA256 keyed with it over an empty
    # message; base64 of the digest
    stamp, secret = 1_599_360_473, "demo-secret"
    expected = base64.b64encode(hmac.new(f"{stamp}\n{secret}".encode(), digestmod=hashlib.sha256).digest()).decode()
    assert feishu_sign(stamp, secret) == expected
    body = payload(ALERT, "feishu", secret=secret)
    assert body["timestamp"] == str(int(ALERT.at)) and body["sign"] == feishu_sign(int(ALERT.at), secret)
    assert body["msg_type"] == "text"


def test_what_counts_as_refused() -> None:
    assert refused("json", 200, b"") is None and refused("slack", 200, b"ok") is None
    assert refused("json", 500, b"") == "HTTP 500"
    assert refused("feishu", 200, b'{"code":0,"msg":"success"}') is None
    assert refused("feishu", 200, b'{"code":19021,"msg":"sign match fail"}') == "feishu code 19021: sign match fail"


# --- validation and masks --------------------------------------------------------------------

def test_validation_by_kind() -> None:
    url = "https://open.feishu.cn/open-apis/bot/v2/hook/0123-secret-token"
    r = rule({"kind": "low_balance", "threshold": "2.5", "webhook": url, "format": "feishu", "secret": "s3cr3t-value",
              "filter": {"key_id": 4}})
    assert r.threshold == "2.5" and r.debounce == 60 and r.filters == {"key_id": 4}
    shown = listed(BOX, r)
    assert shown["webhook"] == "https://open.feishu.cn/…" and "token" not in str(shown)
    assert shown["secret"] == "s3cr…" and shown["threshold"] == 2.5 and shown["threshold_micro"] == 2_500_000
    assert rule({"kind": "credential", "webhook": url}).minutes == 10
    assert rule({"kind": "quota", "webhook": url}).threshold is None
    for body, param in [({"kind": "nope", "webhook": url}, "kind"),
                        ({"kind": "quota"}, "webhook"),
                        ({"kind": "quota", "webhook": "ftp://x/y"}, "webhook"),
                        ({"kind": "error_rate", "webhook": url}, "threshold"),
                        ({"kind": "error_rate", "threshold": 1.5, "webhook": url}, "threshold"),
                        ({"kind": "low_balance", "threshold": "1.0000001", "webhook": url}, "threshold"),
                        ({"kind": "quota", "webhook": url, "secret": "x"}, "secret"),  # json: no signing
                        ({"kind": "quota", "webhook": url, "debounce": -1}, "debounce"),
                        ({"kind": "quota", "webhook": url, "filter": {"user": 1}}, "filter"),
                        ({"kind": "quota", "webhook": url, "color": "red"}, "color")]:
        with pytest.raises(InvalidRequest) as err:
            validate(BOX, body, None)
        assert err.value.param == param, body


def test_an_update_keeps_what_is_not_given() -> None:
    before = rule({"kind": "latency_p99", "threshold": 800, "webhook": "https://u:p@hooks.example/x?token=t",
                   "format": "feishu", "secret": "abcdefgh"})
    assert masked_url(BOX.decrypt(before.webhook)) == "https://hooks.example/…"
    after = validate(BOX, {"threshold": 900, "webhook": "https://hooks.example/…", "secret": "abcd…"}, before)
    assert after.threshold == "900" and after.webhook == before.webhook and after.secret == before.secret
    assert after.window == 5 and after.format == "feishu"
    cleared = validate(BOX, {"secret": None, "format": "json"}, before)
    assert cleared.secret is None


def test_the_interval() -> None:
    assert interval_of(None) == 60 and interval_of("1") == 1 and interval_of("x") == 60 and interval_of("0") == 0.2


# --- debounce, quota steps, p99 --------------------------------------------------------------

def firing(fid: int, at: float) -> Firing:
    return Firing(id=fid, rule_id=1, subject="s", period="after:0", value=None, message="", status="sent",
                  error=None, fired_at=at)


def test_debounce() -> None:
    now = 10_000.0
    assert debounced_period(None, now, 60) == "after:0"
    assert debounced_period(firing(5, now - 3599), now, 60) is None  # within the hour
    assert debounced_period(firing(5, now - 3600), now, 60) == "after:5"  # the next one follows #5
    assert debounced_period(firing(5, now - 1), now, 0) == "after:5"  # debounce 0: every round


def test_quota_steps() -> None:
    month = "2026-12"
    k = KeyFigure(1, "team", "tw-1", 7_900_000, 10_000_000)
    assert quota_findings([k], month, set()) == []  # 79%
    at80 = quota_findings([KeyFigure(1, "team", "tw-1", 8_000_000, 10_000_000)], month, set())
    assert [(f.subject, f.period, f.superseded) for f in at80] == [("key 1", "2026-12/80", ())]
    assert quota_findings([KeyFigure(1, "team", "tw-1", 9_000_000, 10_000_000)], month,
                          {("key 1", "2026-12/80")}) == []  # 80% fired this month
    over = KeyFigure(1, "team", "tw-1", 10_000_000, 10_000_000)
    after80 = quota_findings([over], month, {("key 1", "2026-12/80")})
    assert [(f.period, f.superseded) for f in after80] == [("2026-12/100", ())]
    straight = quota_findings([over], month, set())  # past 100% before 80% fired: the 100% alone
    assert [(f.period, f.superseded) for f in straight] == [("2026-12/100", ("2026-12/80",))]
    assert quota_findings([over], month, {("key 1", "2026-12/100")}) == []
    assert len(quota_findings([over], "2027-01", {("key 1", "2026-12/100")})) == 1  # a new month


def naive_p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=700))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_p99_from_the_greatest_values_only(values: list[float]) -> None:
    greatest = sorted(values, reverse=True)[:top_needed(len(values))]
    assert p99(greatest, len(values)) == naive_p99(values)


def test_nearest_rank_without_float_error() -> None:
    assert nearest_rank(100, 0.99) == 99 and top_needed(100) == 2  # 0.99 * 100 is 99.00000000000001 in floats
    assert top_needed(1) == 1 and top_needed(0) == 0 and top_needed(101) == 2 and top_needed(1000) == 11
    assert p99([], 0) is None and p99([5.0], 1) == 5.0


# --- credentials -----------------------------------------------------------------------------

async def test_credential_findings_from_a_pool() -> None:
    pool = CredentialPool("up", (Credential(id="a", secret="x"), Credential(id="b", secret="y"),
                                 Credential(id="c", secret="z")))
    await pool.state.disable("up", "a", "upstream 401: invalid key")
    await pool.state.cool("up", "b", 20 * 60)  # a cooldown longer than the rule's 10 minutes
    await pool.state.cool("up", "c", 30)
    r = rule({"kind": "credential", "minutes": 10, "webhook": "http://127.0.0.1:1/x"})
    watch = CoolingWatch()
    now = time.time()
    found = await credential_findings({"up": pool}, r, watch, now)
    assert [(f.subject, f.message.split(":")[0]) for f in found] == [
        ("up/a", "credential disabled"), ("up/b", "credential cooling down for 20.0 min (more than 10 min)")]
    # c is seen cooling without a break for more than 10 minutes (cooled again and again)
    await pool.state.cool("up", "c", 30)
    later = await credential_findings({"up": pool}, r, watch, now + 11 * 60 - 60)
    assert "up/c" not in [f.subject for f in later]
    watch.since[("up", "c")] = now - 11 * 60
    assert "up/c" in [f.subject for f in await credential_findings({"up": pool}, r, watch, now)]
    assert await credential_findings({"up": pool}, rule({"kind": "credential", "webhook": "http://x/",
                                                         "filter": {"provider": "other"}}), watch, now) == []


# --- delivery --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hooks() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    yield server
    server.stop()


async def test_a_retry_after_a_5xx_and_no_url_in_the_log(hooks: WebhookServer,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    hooks.fail["/retry/tok-123"] = [503]
    hooks.fail["/down/tok-456"] = [500, 500]
    webhooks = Webhooks(retry_delay=0.01)
    try:
        ok = await webhooks.deliver(BOX, rule({"kind": "quota", "webhook": hooks.url("/retry/tok-123")}), ALERT)
        assert ok.ok and ok.status == 200 and len(hooks.bodies("/retry/tok-123")) == 2
        with caplog.at_level(logging.WARNING, logger="tollway.alerts"):
            down = await webhooks.deliver(BOX, rule({"kind": "quota", "webhook": hooks.url("/down/tok-456")}), ALERT)
        assert not down.ok and down.error == "HTTP 500" and len(hooks.bodies("/down/tok-456")) == 2
        assert "127.0.0.1" in caplog.text and "tok-456" not in caplog.text
        gone = await webhooks.deliver(BOX, rule({"kind": "quota", "webhook": "http://127.0.0.1:9/hook-tok"}), ALERT)
        assert not gone.ok and gone.error is not None and "connection failed" in gone.error
    finally:
        await webhooks.close()


async def test_a_bad_feishu_signature_is_a_failure_without_retry(hooks: WebhookServer) -> None:
    hooks.feishu["/feishu/unit"] = "the-right-secret"
    webhooks = Webhooks(retry_delay=0.01)
    try:
        good = rule({"kind": "quota", "webhook": hooks.url("/feishu/unit"), "format": "feishu",
                     "secret": "the-right-secret"})
        fresh = Alert(**{**{f: getattr(ALERT, f) for f in ALERT.__struct_fields__}, "at": time.time()})
        assert (await webhooks.deliver(BOX, good, fresh)).ok
        bad = rule({"kind": "quota", "webhook": hooks.url("/feishu/unit"), "format": "feishu", "secret": "wrong"})
        before = hooks.bad_signatures
        result = await webhooks.deliver(BOX, bad, fresh)
        assert not result.ok and result.error is not None and result.error.startswith("feishu code 19021")
        assert hooks.bad_signatures == before + 1  # refused once, not retried
    finally:
        await webhooks.close()
