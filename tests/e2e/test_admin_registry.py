"""Seed 004's model registry, groups and model authorization over HTTP on a real gateway: model
CRUD with the seed's exact bodies, validation, groups, the six authorization operations, and
admin authentication on every endpoint. One gateway process serves the whole module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.harness import GatewayProcess

ROUTES = [
    ("GET", "/admin/model/list"), ("POST", "/admin/model/save"), ("POST", "/admin/model/delete"),
    ("GET", "/admin/group/list"), ("POST", "/admin/group/save"), ("POST", "/admin/group/delete"),
    ("GET", "/admin/group/model/list"), ("POST", "/admin/group/model/authorize"),
    ("POST", "/admin/group/model/deauthorize"), ("GET", "/admin/api-key/model/list"),
    ("POST", "/admin/api-key/model/authorize"), ("POST", "/admin/api-key/model/deauthorize"),
]

# seed 004's bodies, verbatim
SEED_CREATE = """{
  "name": "xxxx",
  "group_id": 1,
  "multiple": false,
  "config": "{\\"modelId\\": \\"somevalue\\"}",
  "provider": "bedrock-converse",
  "price_in": 1,
  "price_out":3
}"""


def _config() -> dict[str, Any]:
    # the provider is never called here: only its name and its models matter
    return {
        "providers": [{"name": "fake", "kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1",
                       "credentials": [{"id": "fake-1", "api_key": "sk-unused-0123456789"}]}],
        "models": [{"id": "fake-chat", "provider": "fake", "upstream_id": "upstream-chat",
                    "display_name": "Fake chat"}],
        "aliases": {"my-alias": "fake-chat"},
    }


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(tmp_path_factory.mktemp("registry"), config=_config()).start()
    try:
        yield g
    finally:
        g.stop()


def _ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def _fails(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    for word in words:
        assert word in detail, detail


def _key(admin: httpx.Client, name: str, group_id: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "role": "user"}
    if group_id is not None:
        body["group_id"] = group_id
    result: dict[str, Any] = _ok(admin.post("/admin/api-key/apply", json=body))
    return result


def test_every_endpoint_needs_the_admin(gw: GatewayProcess, admin: httpx.Client) -> None:
    user = _key(admin, "not-an-admin")["api_key"]
    with httpx.Client(base_url=gw.url, timeout=10) as anon:
        for method, path in ROUTES:
            r = anon.request(method, path, json={} if method == "POST" else None)
            assert r.status_code == 401, (path, r.text)
            assert "detail" in r.json()
            r = anon.request(method, path, json={} if method == "POST" else None,
                             headers={"Authorization": f"Bearer {user}"})
            assert r.status_code == 403, (path, r.text)
            assert "admin" in r.json()["detail"]


def test_seed_bodies_create_update_list_delete(admin: httpx.Client) -> None:
    created = _ok(admin.post("/admin/model/save", content=SEED_CREATE, headers={"content-type": "application/json"}))
    assert created["name"] == "xxxx" and created["provider"] == "bedrock"  # bedrock-converse is bedrock
    assert created["config"] == {"modelId": "somevalue"} and created["upstream_id"] == "somevalue"
    assert created["price_in"] == 1 and created["price_out"] == 3
    assert created["price_in_micro"] == 1_000_000 and created["price_out_micro"] == 3_000_000
    assert created["group_id"] == 1 and created["multiple"] is False and created["enabled"] is True
    assert created["capabilities"] == ["chat"] and created["created_at"] > 0

    update = json.loads(SEED_CREATE) | {"id": created["id"], "price_out": "3.5",
                                        "config": "{\"modelId\": \"other\"}"}
    updated = _ok(admin.post("/admin/model/save", json=update))
    assert updated["id"] == created["id"] and updated["price_out_micro"] == 3_500_000
    assert updated["upstream_id"] == "other" and updated["created_at"] == created["created_at"]
    # an update changes only what it names
    partial = _ok(admin.post("/admin/model/save", json={"id": created["id"], "display_name": "Seed model",
                                                        "rpm": 60, "enabled": False}))
    assert partial["display_name"] == "Seed model" and partial["rpm"] == 60 and partial["enabled"] is False
    assert partial["price_out_micro"] == 3_500_000 and partial["upstream_id"] == "other"
    cleared = _ok(admin.post("/admin/model/save", json={"id": created["id"], "rpm": None}))
    assert cleared["rpm"] is None and cleared["display_name"] == "Seed model"
    # a listing's item can be sent back as is
    _ok(admin.post("/admin/model/save", json=cleared))

    listed = _ok(admin.get("/admin/model/list", params={"q": "seed model"}))
    assert listed["total"] == 1 and listed["items"][0]["id"] == created["id"]
    assert _ok(admin.get("/admin/model/list", params={"q": "nothing-like-it"})) == {"items": [], "total": 0}

    _fails(admin.post("/admin/model/save", json={"id": 987654, "display_name": "x"}), 404, "987654")
    assert _ok(admin.post("/admin/model/delete", json={"id": created["id"]})) == {"success": True,
                                                                                  "id": created["id"]}
    _fails(admin.post("/admin/model/delete", json={"id": created["id"]}), 404, str(created["id"]))
    _fails(admin.post("/admin/model/delete", json={}), 400, "id")


def test_model_fields_and_paging(admin: httpx.Client) -> None:
    full = _ok(admin.post("/admin/model/save", json={
        "name": "paging-full", "provider": "fake", "upstream_id": "up-1", "display_name": "Full",
        "description": "every field", "category": "chat", "capabilities": ["chat", "tools", "chat"],
        "modalities": ["text"], "aliases": ["pf"], "config": {"modelId": "ignored", "region": "us-east-1"},
        "price_in": 0.25, "price_out": "1.000001", "credit_cost": 0.5, "rpm": 10, "tpm": 1000,
        "max_output_tokens": 2048, "group_id": None, "multiple": True, "enabled": True,
    }))
    assert full["upstream_id"] == "up-1"  # given explicitly: config's modelId does not override it
    assert full["capabilities"] == ["chat", "tools"] and full["aliases"] == ["pf"]
    assert full["price_in_micro"] == 250_000 and full["price_out_micro"] == 1_000_001
    assert full["credit_cost_micro"] == 500_000 and full["config"]["region"] == "us-east-1"
    assert (full["rpm"], full["tpm"], full["max_output_tokens"], full["group_id"]) == (10, 1000, 2048, None)
    for i in range(3):
        _ok(admin.post("/admin/model/save", json={"name": f"paging-{i}", "provider": "echo"}))
    page = _ok(admin.get("/admin/model/list", params={"q": "paging-", "limit": 2, "offset": 1}))
    assert page["total"] == 4 and [m["name"] for m in page["items"]] == ["paging-0", "paging-1"]
    by_provider = _ok(admin.get("/admin/model/list", params={"q": "FAKE"}))
    assert "paging-full" in [m["name"] for m in by_provider["items"]]
    _fails(admin.get("/admin/model/list", params={"limit": 0}), 400, "limit")
    _fails(admin.get("/admin/model/list", params={"offset": "x"}), 400, "offset")


@pytest.mark.parametrize(("body", "words"), [
    ({"name": "v", "provider": "echo", "config": "{not json"}, ("config", "JSON")),
    ({"name": "v", "provider": "echo", "config": "[1, 2]"}, ("config", "object")),
    ({"name": "v", "provider": "echo", "config": 5}, ("config",)),
    ({"name": "v", "provider": "echo", "config": {"x": "y" * 17000}}, ("config", "16384")),
    ({"name": "v", "provider": "echo", "config": json.dumps({"x": "y" * 17000})}, ("config", "16384")),
    ({"name": "v", "provider": "no-such-provider"}, ("provider", "no-such-provider", "bedrock-converse")),
    ({"name": "v", "provider": 3}, ("provider",)),
    ({"name": "v"}, ("provider", "required")),
    ({"provider": "echo"}, ("name", "required")),
    ({"name": "has space", "provider": "echo"}, ("name",)),
    ({"name": "", "provider": "echo"}, ("name",)),
    ({"name": "v", "provider": "echo", "capabilities": "chat"}, ("capabilities", "list")),
    ({"name": "v", "provider": "echo", "aliases": [1]}, ("aliases",)),
    ({"name": "v", "provider": "echo", "rpm": -1}, ("rpm",)),
    ({"name": "v", "provider": "echo", "tpm": "60"}, ("tpm",)),
    ({"name": "v", "provider": "echo", "max_output_tokens": 1.5}, ("max_output_tokens",)),
    ({"name": "v", "provider": "echo", "multiple": "yes"}, ("multiple",)),
    ({"name": "v", "provider": "echo", "enabled": 1}, ("enabled",)),
    ({"name": "v", "provider": "echo", "price_in": "abc"}, ("price_in",)),
    ({"name": "v", "provider": "echo", "price_out": -1}, ("price_out", "negative")),
    ({"name": "v", "provider": "echo", "credit_cost": 0.0000001}, ("credit_cost", "decimals")),
    ({"name": "v", "provider": "echo", "group_id": "one"}, ("group_id",)),
    ({"name": "v", "provider": "echo", "description": ["x"]}, ("description",)),
    ({"name": "v", "provider": "echo", "category": ""}, ("category",)),
    ({"name": "v", "provider": "echo", "price_input": 1}, ("unknown", "price_input")),
    ({"id": "x", "name": "v", "provider": "echo"}, ("id",)),
])
def test_model_save_refuses_bad_fields(admin: httpx.Client, body: dict[str, Any], words: tuple[str, ...]) -> None:
    _fails(admin.post("/admin/model/save", json=body), 400, *words)


def test_model_duplicates_and_bad_bodies(admin: httpx.Client) -> None:
    first = _ok(admin.post("/admin/model/save", json={"name": "dup-a", "provider": "echo"}))
    second = _ok(admin.post("/admin/model/save", json={"name": "dup-b", "provider": "echo"}))
    _fails(admin.post("/admin/model/save", json={"name": "dup-a", "provider": "fake"}), 400, "dup-a", "exists")
    _fails(admin.post("/admin/model/save", json={"id": second["id"], "name": "dup-a"}), 400, "exists")
    assert _ok(admin.get("/admin/model/list", params={"q": "dup-"}))["items"] == [first, second]
    _fails(admin.post("/admin/model/save", content=b"{nope", headers={"content-type": "application/json"}),
           400, "JSON")
    _fails(admin.post("/admin/model/save", json=[1, 2]), 400, "object")


def test_groups_crud(admin: httpx.Client) -> None:
    group = _ok(admin.post("/admin/group/save", json={"name": "Gold tier", "description": "paying"}))
    assert group["multiplier"] == 1 and group["multiplier_ppm"] == 1_000_000 and group["description"] == "paying"
    changed = _ok(admin.post("/admin/group/save", json={"id": group["id"], "multiplier": "1.25"}))
    assert changed["multiplier_ppm"] == 1_250_000 and changed["name"] == "Gold tier"
    renamed = _ok(admin.post("/admin/group/save", json={"id": group["id"], "name": "Platinum tier"}))
    assert renamed["name"] == "Platinum tier" and renamed["multiplier_ppm"] == 1_250_000
    other = _ok(admin.post("/admin/group/save", json={"name": "Bronze tier", "multiplier": 1000}))
    assert other["multiplier"] == 1000

    for bad, words in [({"name": "x", "multiplier": 0}, ("multiplier",)),
                       ({"name": "x", "multiplier": 1000.5}, ("multiplier", "1000")),
                       ({"name": "x", "multiplier": "abc"}, ("multiplier",)),
                       ({"name": "x", "multiplier": -2}, ("multiplier",)),
                       ({"description": "no name"}, ("name", "required")),
                       ({"name": "  "}, ("name",)),
                       ({"name": "x", "colour": "red"}, ("unknown", "colour")),
                       ({"name": "Bronze tier"}, ("exists",)),
                       ({"id": group["id"], "name": "Bronze tier"}, ("exists",))]:
        _fails(admin.post("/admin/group/save", json=bad), 400, *words)
    _fails(admin.post("/admin/group/save", json={"id": 987654, "description": "x"}), 404, "987654")

    listed = _ok(admin.get("/admin/group/list", params={"q": "tier"}))
    assert listed["total"] == 2 and [g["name"] for g in listed["items"]] == ["Platinum tier", "Bronze tier"]
    page = _ok(admin.get("/admin/group/list", params={"q": "tier", "limit": 1, "offset": 1}))
    assert page == {"items": [other], "total": 2}

    # a group with an active key in it cannot go; once the key is revoked it can
    key = _key(admin, "member", group["id"])
    _fails(admin.post("/admin/group/delete", json={"id": group["id"]}), 400, "1 active key")
    _ok(admin.post("/admin/api-key/delete", json={"id": key["id"]}))
    assert _ok(admin.post("/admin/group/delete", json={"id": group["id"]})) == {"success": True, "id": group["id"]}
    _fails(admin.post("/admin/group/delete", json={"id": group["id"]}), 404, str(group["id"]))
    _fails(admin.post("/admin/group/delete", json={"id": True}), 400, "id")
    assert [g["name"] for g in _ok(admin.get("/admin/group/list", params={"q": "tier"}))["items"]] == ["Bronze tier"]


def test_group_model_authorization(admin: httpx.Client) -> None:
    group = _ok(admin.post("/admin/group/save", json={"name": "auth-group"}))
    gid = group["id"]
    registry = _ok(admin.post("/admin/model/save", json={"name": "auth-registry", "provider": "echo",
                                                         "display_name": "Registry model"}))
    assert _ok(admin.get("/admin/group/model/list", params={"group_id": gid})) == {
        "group_id": gid, "items": [], "total": 0}

    first = _ok(admin.post("/admin/group/model/authorize", json={"group_id": gid, "model": "fake-chat"}))
    assert first == {"success": True, "group_id": gid, "models": ["fake-chat"], "added": 1}
    again = _ok(admin.post("/admin/group/model/authorize", json={"group_id": gid, "model": "fake-chat"}))
    assert again["added"] == 0  # idempotent
    many = _ok(admin.post("/admin/group/model/authorize", json={
        "group_id": gid, "models": ["echo", "my-alias", "fake-chat"], "model_id": registry["id"]}))
    assert many["models"] == ["echo", "my-alias", "fake-chat", "auth-registry"] and many["added"] == 3

    listed = _ok(admin.get("/admin/group/model/list", params={"group_id": str(gid)}))
    assert listed["group_id"] == gid and listed["total"] == 4
    names = {i["model"]: i["display_name"] for i in listed["items"]}
    assert names == {"auth-registry": "Registry model", "echo": "Echo (test model)", "fake-chat": "Fake chat",
                     "my-alias": "my-alias"}
    assert all(i["authorized_at"] > 0 for i in listed["items"])

    removed = _ok(admin.post("/admin/group/model/deauthorize", json={"group_id": gid, "models": ["echo", "my-alias"]}))
    assert removed == {"success": True, "group_id": gid, "models": ["echo", "my-alias"], "removed": 2}
    assert _ok(admin.post("/admin/group/model/deauthorize", json={"group_id": gid, "model": "echo"}))["removed"] == 0
    # deleting a registry model removes its authorizations
    _ok(admin.post("/admin/model/delete", json={"id": registry["id"]}))
    listed = _ok(admin.get("/admin/group/model/list", params={"group_id": gid}))
    assert [i["model"] for i in listed["items"]] == ["fake-chat"]

    auth = "/admin/group/model/authorize"
    _fails(admin.post(auth, json={"group_id": gid, "model": "no-such-model"}), 400, "unknown model", "no-such-model")
    _fails(admin.post(auth, json={"group_id": gid, "models": ["echo", "nope-2"]}), 400, "nope-2")
    _fails(admin.post(auth, json={"group_id": gid, "model_id": registry["id"]}), 400, "model")
    _fails(admin.post(auth, json={"group_id": gid}), 400, "model")
    _fails(admin.post(auth, json={"group_id": gid, "models": "echo"}), 400, "models")
    _fails(admin.post(auth, json={"model": "echo"}), 400, "group_id")
    _fails(admin.post(auth, json={"group_id": 987654, "model": "echo"}), 404, "987654")
    _fails(admin.post("/admin/group/model/deauthorize", json={"group_id": gid, "model": "nope-3"}), 400, "nope-3")
    _fails(admin.post("/admin/group/model/deauthorize", json={"group_id": 987654, "model": "echo"}), 404)
    _fails(admin.get("/admin/group/model/list", params={"group_id": 987654}), 404)
    _fails(admin.get("/admin/group/model/list"), 400, "group_id")
    # a group deleted takes its authorizations along
    _ok(admin.post("/admin/group/delete", json={"id": gid}))
    _fails(admin.get("/admin/group/model/list", params={"group_id": gid}), 404)


def test_key_model_authorization(admin: httpx.Client) -> None:
    key = _key(admin, "auth-key")
    kid = key["id"]
    assert _ok(admin.get("/admin/api-key/model/list", params={"key_id": kid})) == {
        "key_id": kid, "items": [], "total": 0}
    first = _ok(admin.post("/admin/api-key/model/authorize", json={"key_id": kid, "model": "echo"}))
    assert first == {"success": True, "key_id": kid, "models": ["echo"], "added": 1}
    assert _ok(admin.post("/admin/api-key/model/authorize", json={"key_id": kid, "model": "echo"}))["added"] == 0
    # an alias and an open catalog's <provider>/<upstream id> resolve, so they are known too
    more = _ok(admin.post("/admin/api-key/model/authorize",
                          json={"key_id": kid, "models": ["fake-chat", "my-alias", "fake/any-upstream"]}))
    assert more["added"] == 3
    listed = _ok(admin.get("/admin/api-key/model/list", params={"key_id": kid}))
    assert [i["model"] for i in listed["items"]] == ["echo", "fake-chat", "fake/any-upstream", "my-alias"]
    assert listed["total"] == 4
    _ok(admin.post("/admin/api-key/model/deauthorize", json={"key_id": kid, "model": "fake/any-upstream"}))

    removed = _ok(admin.post("/admin/api-key/model/deauthorize", json={"key_id": kid, "model": "fake-chat"}))
    assert removed == {"success": True, "key_id": kid, "models": ["fake-chat"], "removed": 1}
    assert _ok(admin.post("/admin/api-key/model/deauthorize",
                          json={"key_id": kid, "model": "fake-chat"}))["removed"] == 0
    assert [i["model"] for i in _ok(admin.get("/admin/api-key/model/list", params={"key_id": kid}))["items"]] == [
        "echo", "my-alias"]

    _fails(admin.post("/admin/api-key/model/authorize", json={"key_id": kid, "model": "no-such"}), 400, "no-such")
    # a known provider that is not configured does not resolve
    _fails(admin.post("/admin/api-key/model/authorize", json={"key_id": kid, "model": "bedrock/x"}), 400, "bedrock/x")
    _fails(admin.post("/admin/api-key/model/authorize", json={"key_id": 987654, "model": "echo"}), 404, "987654")
    _fails(admin.post("/admin/api-key/model/deauthorize", json={"key_id": 987654, "model": "echo"}), 404)
    _fails(admin.get("/admin/api-key/model/list", params={"key_id": 987654}), 404)
    _fails(admin.get("/admin/api-key/model/list", params={"key_id": "abc"}), 400, "key_id")
    # a revoked key is not there any more
    _ok(admin.post("/admin/api-key/delete", json={"id": kid}))
    _fails(admin.get("/admin/api-key/model/list", params={"key_id": kid}), 404)
    _fails(admin.post("/admin/api-key/model/authorize", json={"key_id": kid, "model": "echo"}), 404)


def test_a_registry_write_routes_at_once(gw: GatewayProcess, admin: httpx.Client) -> None:
    """The handler reloads this process's catalog itself: no wait for the change poll."""
    user = _key(admin, "router")["api_key"]
    model = _ok(admin.post("/admin/model/save", json={"name": "instant-echo", "provider": "echo",
                                                      "upstream_id": "echo"}))
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {user}"}, timeout=10) as client:
        assert "instant-echo" in [m["id"] for m in _ok(client.get("/v1/models"))["data"]]
        reply = _ok(client.post("/v1/chat/completions", json={
            "model": "instant-echo", "messages": [{"role": "user", "content": "ping"}]}))
        assert reply["model"] == "instant-echo" and reply["choices"][0]["message"]["content"] == "ping"
        _ok(admin.post("/admin/model/save", json={"id": model["id"], "enabled": False}))
        assert "instant-echo" not in [m["id"] for m in _ok(client.get("/v1/models"))["data"]]
        assert client.post("/v1/chat/completions", json={
            "model": "instant-echo", "messages": [{"role": "user", "content": "ping"}]}).status_code == 404
    _ok(admin.post("/admin/model/delete", json={"id": model["id"]}))
