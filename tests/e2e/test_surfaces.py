"""The platform /api/v1 alias, model listing, probes, CORS, request ids and the admin key API."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tests.fakes.openai_server import Behavior, FakeOpenAI


def post(gw: GatewayProcess, path: str, key: str | None, body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gw.url + path, headers=headers, json=body, timeout=10)


@pytest.mark.parametrize(
    ("key", "body", "status", "code"),
    [
        ("bad", {"model": "echo", "messages": [{"role": "user", "content": "x"}]}, 401, "invalid_api_key"),
        (None, {"model": "echo", "messages": [{"role": "user", "content": "x"}]}, 401, "invalid_api_key"),
        ("user", {"messages": [{"role": "user", "content": "x"}]}, 400, "model_required"),
        ("user", {"model": "echo"}, 400, "messages_required"),
        ("user", {"model": "echo", "messages": []}, 400, "messages_required"),
        ("user", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404, "model_not_available"),
        ("user", {"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}]}, 503,
         "provider_not_configured"),
        ("user", {"model": "fake-chat-500", "messages": [{"role": "user", "content": "x"}]}, 502, "provider_error"),
    ],
)
def test_platform_error_codes(gateway: GatewayProcess, user_key: str, fake: FakeOpenAI, key: str | None,
                              body: object, status: int, code: str) -> None:
    fake.script("fail500", Behavior(status=500))
    if isinstance(body, dict) and body.get("model") == "fake-chat-500":
        body = {**body, "model": "fake/fail500"}
    r = post(gateway, "/api/v1/chat/completions", user_key if key == "user" else key, body)
    assert r.status_code == status
    assert r.json() == {"error": {"message": r.json()["error"]["message"], "type": code, "code": code}}
    assert r.json()["error"]["message"]


def test_invalid_json_is_400(gateway: GatewayProcess, user_key: str) -> None:
    r = httpx.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {user_key}"},
                   content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_openai_sdk_works_on_the_platform_alias(gateway: GatewayProcess, user_key: str) -> None:
    c = openai.OpenAI(api_key=user_key, base_url=gateway.url + "/api/v1", max_retries=0)
    assert c.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi there"}]) \
        .choices[0].message.content == "hi there"
    text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model="echo", stream=True, messages=[{"role": "user", "content": "streamed here"}]) if ch.choices)
    assert text == "streamed here"


def test_models_lists_only_callable_models(gateway: GatewayProcess, user_key: str) -> None:
    models = openai.OpenAI(api_key=user_key, base_url=gateway.url + "/v1").models.list()
    ids = {m.id for m in models.data}
    assert {"echo", "fake-chat", "gpt-4o-mini", "gpt-4o", "gpt-4.1", "o4-mini"} <= ids
    assert "deepseek-chat" not in ids and "deepseek-reasoner" not in ids  # DEEPSEEK_API_KEY not set
    echo = next(m for m in models.data if m.id == "echo")
    assert (echo.model_extra or {})["meta"]["test"] is True
    platform = httpx.get(gateway.url + "/api/v1/models", headers={"Authorization": f"Bearer {user_key}"}).json()
    entry = next(m for m in platform["data"] if m["id"] == "fake-chat")
    assert entry["display_name"] == "Fake chat" and entry["category"] == "chat" and "credit_cost" in entry


def test_probes_request_id_and_cors(gateway: GatewayProcess) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.json() == {"status": "ready"}
    ids = []
    for _ in range(3):
        ids.append(httpx.get(gateway.url + "/healthz").headers["x-request-id"])
        time.sleep(0.002)
    assert len(set(ids)) == 3 and all(i.startswith("req_") and len(i) == 28 for i in ids)
    assert ids == sorted(ids)  # time first: the log's and the ledger's indexes grow at their end
    pre = httpx.options(gateway.url + "/v1/chat/completions", headers={
        "Origin": "http://example.test", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert "Authorization" in pre.headers["access-control-allow-headers"]
    assert httpx.get(gateway.url + "/healthz").headers["access-control-allow-origin"] == "*"


# --- admin key API ------------------------------------------------------------------------


def _chat_status(gw: GatewayProcess, key: str) -> int:
    return post(gw, "/v1/chat/completions", key, {"model": "echo", "messages": [{"role": "user", "content": "x"}]}) \
        .status_code


def test_admin_api_key_lifecycle(gateway: GatewayProcess) -> None:
    with gateway.admin() as admin:
        created = admin.post("/admin/api-key/apply", json={"name": "jack", "group_id": 1, "role": "user",
                                                           "email": "j@example.com", "month_quota": 1.0}).json()
        secret = created["api_key"]
        assert secret.startswith("tw-") and created["prefix"] == secret[:10]
        assert _chat_status(gateway, secret) == 200
        listed = admin.get("/admin/api-key/list", params={"name": "jack", "limit": 10}).json()
        assert listed["total"] >= 1 and {i["name"] for i in listed["items"]} == {"jack"}  # the filter filters
        assert {i["role"] for i in admin.get("/admin/api-key/list", params={"role": "admin", "limit": 1000})
                .json()["items"]} <= {"admin"}
        assert all(i["group_id"] == 1 for i in admin.get("/admin/api-key/list", params={"group_id": 1}).json()["items"])
        item = next(i for i in listed["items"] if i["id"] == created["id"])
        assert "key_hash" not in item and secret not in str(listed)  # shown once, never listed
        assert item["group_id"] == 1 and item["email"] == "j@example.com"
        assert admin.post("/admin/api-key/delete", json={"id": created["id"]}).json()["success"] is True
        assert _chat_status(gateway, secret) == 401
        assert admin.post("/admin/api-key/delete", json={"id": created["id"]}).status_code == 404


def test_admin_ds2api_keys(gateway: GatewayProcess) -> None:
    with gateway.admin() as admin:
        r = admin.post("/admin/keys", json={"key": "my-chosen-key-123"})
        assert r.json()["success"] is True and r.json()["total_keys"] >= 1
        assert _chat_status(gateway, "my-chosen-key-123") == 200
        assert admin.post("/admin/keys", json={"key": "my-chosen-key-123"}).status_code == 400  # duplicate
        d = admin.delete("/admin/keys/my-chosen-key-123")
        assert d.status_code == 200 and d.json()["success"] is True
        assert _chat_status(gateway, "my-chosen-key-123") == 401
        assert admin.delete("/admin/keys/my-chosen-key-123").json() == {"detail": "key not found"}


def test_admin_needs_the_admin_secret(gateway: GatewayProcess, user_key: str) -> None:
    r = httpx.get(gateway.url + "/admin/api-key/list", headers={"Authorization": f"Bearer {user_key}"})
    assert r.status_code == 403 and "detail" in r.json()
    r = httpx.get(gateway.url + "/admin/api-key/list", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "detail" in r.json()
    r = httpx.get(gateway.url + "/admin/api-key/list", headers={"x-api-key": ADMIN_KEY})
    assert r.status_code == 200


def test_admin_role_key_can_administer(gateway: GatewayProcess) -> None:
    with gateway.admin() as admin:
        secret = admin.post("/admin/api-key/apply", json={"name": "rob", "role": "admin"}).json()["api_key"]
    r = httpx.get(gateway.url + "/admin/api-key/list", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200


def test_x_api_key_header_is_accepted(gateway: GatewayProcess, user_key: str) -> None:
    r = httpx.post(gateway.url + "/v1/chat/completions", headers={"x-api-key": user_key},
                   json={"model": "echo", "messages": [{"role": "user", "content": "ok"}]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "ok"


def test_admin_secret_is_accepted_as_a_bearer_on_chat(gateway: GatewayProcess) -> None:
    assert _chat_status(gateway, ADMIN_KEY) == 200


def test_unknown_paths_answer_in_the_surface_shape(gateway: GatewayProcess, user_key: str) -> None:
    r = httpx.get(gateway.url + "/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(gateway.url + "/api/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    r = httpx.get(gateway.url + "/admin/nope")
    assert r.status_code == 404 and "detail" in r.json()
    r = httpx.get(gateway.url + "/v1/chat/completions")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_the_admin_secret_cannot_become_a_user_key(gateway: GatewayProcess) -> None:
    with gateway.admin() as admin:
        r = admin.post("/admin/keys", json={"key": ADMIN_KEY})
        assert r.status_code == 400 and "admin secret" in r.json()["detail"]
        assert admin.get("/admin/api-key/list").status_code == 200


def test_an_all_digit_imported_key_is_deleted_by_its_value_not_as_an_id(gateway: GatewayProcess) -> None:
    with gateway.admin() as admin:
        victim = admin.post("/admin/api-key/apply", json={"name": "victim"}).json()
        assert admin.post("/admin/keys", json={"key": "00000001"}).status_code == 200
        assert admin.delete("/admin/keys/00000001").status_code == 200
        assert _chat_status(gateway, "00000001") == 401
        assert _chat_status(gateway, victim["api_key"]) == 200  # untouched
        listed = str(admin.get("/admin/api-key/list", params={"limit": 1000}).json())
        assert "00000001" not in listed


def test_an_ambiguous_prefix_is_refused(gateway: GatewayProcess) -> None:
    with gateway.admin() as admin:
        for k in ("same-prefix-key-one", "same-prefix-key-two"):
            assert admin.post("/admin/keys", json={"key": k}).status_code == 200
        r = admin.delete("/admin/keys/same")  # both show the prefix "same"
        assert r.status_code == 400 and "share the prefix" in r.json()["detail"]
        assert _chat_status(gateway, "same-prefix-key-one") == 200


@pytest.mark.parametrize(("method", "path", "body"), [
    ("post", "/admin/api-key/delete", {"id": 3.9}),
    ("post", "/admin/api-key/delete", {"id": True}),
    ("post", "/admin/api-key/delete", {"id": "abc"}),
    ("post", "/admin/api-key/delete", {"id": 99999999999999999999}),
    ("post", "/admin/api-key/apply", {"name": {"a": 1}}),
    ("post", "/admin/api-key/apply", {"name": "x" * 300}),
    ("post", "/admin/api-key/apply", {"name": "a\u0000b"}),
    ("post", "/admin/api-key/apply", {"group_id": 2**63}),
    ("post", "/admin/api-key/apply", {"group_id": True}),
    ("post", "/admin/api-key/apply", {"role": "root"}),
    ("post", "/admin/api-key/apply", [1, 2]),
    ("post", "/admin/keys", {"key": "short"}),
    ("post", "/admin/keys", {"key": "has space inside"}),
    ("get", "/admin/api-key/list?offset=99999999999999999999", None),
    ("get", "/admin/api-key/list?limit=-1", None),
    ("get", "/admin/api-key/list?group_id=x", None),
])
def test_bad_admin_input_is_400(gateway: GatewayProcess, method: str, path: str, body: object) -> None:
    with gateway.admin() as admin:
        r = admin.request(method.upper(), path, json=body) if body is not None else admin.request(method.upper(),
                                                                                                   path)
        assert r.status_code == 400, r.text
        assert set(r.json()) == {"detail"}
