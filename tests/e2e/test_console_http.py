"""The web console (``/ui``) over HTTP on a real ``tollway serve``: sign-in with every kind of
identity, the session cookie's flags, CSRF refusals, expiry, sign-out, what a key holder may
see, paging, the secret shown once, masked env values, and that every action is the admin API's
(its effects and its refusals). The real-browser suite is ``tests/browser/``. One gateway serves
the module."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie

import httpx
import pytest

from tests.e2e.harness import ADMIN_KEY, GatewayProcess

pytestmark = pytest.mark.e2e

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
_SECRET = re.compile(r'<code id="new-secret">([^<]+)</code>')
_FLASH = re.compile(r'class="flash flash-(\w+)"[^>]*>([^<]+)<')


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(tmp_path_factory.mktemp("console"), env={"TOLLWAY_RECORD_CHATS": "true"}).start()
    try:
        yield g
    finally:
        g.stop()


def browser(gw: GatewayProcess) -> httpx.Client:
    """A client that keeps cookies and does not follow redirects (the tests look at them)."""
    return httpx.Client(base_url=gw.url, follow_redirects=False, timeout=30)


def token(html: str) -> str:
    found = _TOKEN.search(html)
    assert found, "no csrf_token on the page"
    return found.group(1)


def flash(client: httpx.Client, response: httpx.Response) -> tuple[str, str]:
    """The message of the page a 303 leads to."""
    assert response.status_code == 303, response.text[:500]
    page = client.get(response.headers["location"])
    found = _FLASH.search(page.text)
    assert found, page.text[:2000]
    return found.group(1), found.group(2)


def sign_in(client: httpx.Client, credential: str, *, next_url: str | None = None) -> httpx.Response:
    page = client.get("/ui/signin")
    assert page.status_code == 200
    data = {"csrf_token": token(page.text), "credential": credential}
    if next_url:
        data["next"] = next_url
    return client.post("/ui/signin", data=data)


def session_cookie(response: httpx.Response) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        if header.startswith("tollway_console="):
            cookie.load(header)
    assert "tollway_console" in cookie, response.headers.get_list("set-cookie")
    return cookie


@contextlib.contextmanager
def operator(gw: GatewayProcess) -> Iterator[tuple[httpx.Client, str]]:
    """A client signed in with the admin key, and its CSRF token."""
    with browser(gw) as client:
        assert sign_in(client, ADMIN_KEY).status_code == 303
        yield client, token(client.get("/ui/keys").text)


def new_key(admin: httpx.Client, **fields: object) -> tuple[int, str]:
    r = admin.post("/admin/api-key/apply", json={"name": "console-test", **fields})
    r.raise_for_status()
    return int(r.json()["id"]), str(r.json()["api_key"])


# sign-in -------------------------------------------------------------------------------------------


def test_admin_key_signs_in_with_a_strict_cookie_that_holds_no_secret(gw: GatewayProcess) -> None:
    with browser(gw) as client:
        first = client.get("/ui/")
        assert first.status_code == 303 and first.headers["location"] == "/ui/signin?next=%2Fui%2F"
        r = sign_in(client, ADMIN_KEY)
        assert r.status_code == 303 and r.headers["location"] == "/ui/"
        cookie = session_cookie(r)["tollway_console"]
        assert cookie["httponly"] is True
        assert cookie["samesite"].lower() == "strict"
        assert cookie["path"] == "/ui"
        assert not cookie["secure"]  # plain http here
        assert 0 < int(cookie["max-age"]) <= 8 * 3600
        assert ADMIN_KEY not in cookie.value and ADMIN_KEY.encode().hex() not in cookie.value
        page = client.get("/ui/")
        assert page.status_code == 200
        assert "Overview" in page.text and "operator" in page.text
        # no key of its own ("My key" section), but the playground (a pasted key) is in its menu, once
        assert 'href="/ui/me"' not in page.text and page.text.count('href="/ui/playground"') == 1
        assert page.headers["cache-control"] == "no-store"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"


def test_cookie_is_secure_behind_tls(gw: GatewayProcess) -> None:
    with browser(gw) as client:
        page = client.get("/ui/signin")  # over plain http: its nonce cookie comes back to this client
        r = client.post("/ui/signin", data={"csrf_token": token(page.text), "credential": ADMIN_KEY},
                        headers={"x-forwarded-proto": "https"})
        assert session_cookie(r)["tollway_console"]["secure"] is True


def test_a_wrong_key_is_refused_without_a_session(gw: GatewayProcess) -> None:
    with browser(gw) as client:
        r = sign_in(client, "tw-not-a-key-at-all-0123456789")
        assert r.status_code == 401
        assert "not valid" in r.text
        assert not any(h.startswith("tollway_console=") for h in r.headers.get_list("set-cookie"))
        assert client.get("/ui/keys").status_code == 303


def test_admin_role_key_is_an_operator(gw: GatewayProcess, admin: httpx.Client) -> None:
    _, secret = new_key(admin, role="admin")
    with browser(gw) as client:
        assert sign_in(client, secret).headers["location"] == "/ui/"
        page = client.get("/ui/keys")
        assert page.status_code == 200
        assert 'href="/ui/pools"' in page.text and 'href="/ui/me"' in page.text  # operator and its own key
        assert page.text.count('href="/ui/playground"') == 1  # under "My key" only


def test_user_key_sees_its_pages_only(gw: GatewayProcess, admin: httpx.Client) -> None:
    _, secret = new_key(admin)
    with browser(gw) as client:
        r = sign_in(client, secret)
        assert r.status_code == 303 and r.headers["location"] == "/ui/me"
        assert client.get("/ui/").headers["location"] == "/ui/me"
        for path in ("/ui/keys", "/ui/models", "/ui/env", "/ui/pools", "/ui/logs", "/ui/records", "/ui/tasks",
                     "/ui/bots", "/ui/groups", "/ui/studios"):
            refused = client.get(path)
            assert refused.status_code == 403, path
            assert "This page is for operators" in refused.text
            assert 'href="/ui/keys"' not in refused.text  # the menu follows the identity
            assert 'href="/ui/me"' in refused.text
        # nor can it act as one: the form's token is valid, the identity is not
        refused = client.post("/ui/keys/create", data={"csrf_token": token(client.get("/ui/keys").text),
                                                       "name": "sneaky"})
        assert refused.status_code == 403
        assert admin.get("/admin/api-key/list", params={"q": "sneaky"}).json()["total"] == 0


def test_next_is_kept_but_never_leaves_the_console(gw: GatewayProcess) -> None:
    with browser(gw) as client:
        assert sign_in(client, ADMIN_KEY, next_url="/ui/pools").headers["location"] == "/ui/pools"
    with browser(gw) as client:
        assert sign_in(client, ADMIN_KEY, next_url="https://evil.example/").headers["location"] == "/ui/"
    with browser(gw) as client:
        assert sign_in(client, ADMIN_KEY, next_url="//evil.example/ui/").headers["location"] == "/ui/"


def test_city_user_token_signs_in_as_a_key_holder(gw: GatewayProcess, admin: httpx.Client) -> None:
    studio = admin.post("/v1/studios/create", json={"name": "console studio"}).json()
    issued = admin.post("/v1/studios/tokens/apply", json={"studio_id": studio["id"]}).json()
    with browser(gw) as client:
        r = sign_in(client, issued["user_token"])
        assert r.status_code == 303 and r.headers["location"] == "/ui/me"
        assert client.get("/ui/keys").status_code == 403
        # pausing the studio ends the session at once
        admin.post("/v1/studios/pause", json={"studio_id": studio["id"]}).raise_for_status()
        assert client.get("/ui/keys").headers["location"].startswith("/ui/signin")
        admin.post("/v1/studios/activate", json={"studio_id": studio["id"]}).raise_for_status()


def test_city_account_signs_in_with_email_and_password(gw: GatewayProcess, admin: httpx.Client) -> None:
    created = admin.post("/v1/accounts/users/create", json={"email": "ada@example.com", "password": "correct horse"})
    assert created.status_code == 200, created.text
    with browser(gw) as client:
        page = client.get("/ui/signin")
        wrong = client.post("/ui/signin/password", data={"csrf_token": token(page.text), "email": "ada@example.com",
                                                         "password": "wrong horse"})
        assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
        assert client.get("/ui/keys").status_code == 303
        r = client.post("/ui/signin/password", data={"csrf_token": token(page.text), "email": "ada@example.com",
                                                     "password": "correct horse"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/me"
        session_cookie(r)
        assert client.get("/ui/keys").status_code == 403  # a City user is a key holder


def test_provider_buttons_appear_only_where_configured(gw: GatewayProcess, admin: httpx.Client) -> None:
    with browser(gw) as client:
        assert "Sign in with Github" not in client.get("/ui/signin").text
    for key, value in (("TOLLWAY_OAUTH_GITHUB_CLIENT_ID", "console-client"),
                       ("TOLLWAY_OAUTH_GITHUB_CLIENT_SECRET", "console-secret-value")):
        admin.post("/v1/env/upsert", json={"key": key, "value": value}).raise_for_status()
    try:
        with browser(gw) as client:
            page = client.get("/ui/signin")
            assert "Sign in with Github" in page.text and "Sign in with Google" not in page.text
            started = client.post("/ui/signin/oauth", data={"csrf_token": token(page.text), "provider": "github"})
            assert started.status_code == 200
            assert "https://github.com/login/oauth/authorize?" in started.text  # City's oauth/start
            waiting = client.post("/ui/signin/oauth/poll", data={"csrf_token": token(page.text)},
                                  headers={"hx-request": "true"})
            assert waiting.status_code == 204  # pending: htmx keeps polling
    finally:
        for key in ("TOLLWAY_OAUTH_GITHUB_CLIENT_ID", "TOLLWAY_OAUTH_GITHUB_CLIENT_SECRET"):
            admin.post("/v1/env/remove", json={"key": key})


# CSRF, expiry, sign-out ---------------------------------------------------------------------------


def test_posts_without_the_csrf_token_are_refused(gw: GatewayProcess, admin: httpx.Client) -> None:
    before = admin.get("/admin/api-key/list", params={"q": "csrf-probe"}).json()["total"]
    with operator(gw) as (client, csrf):
        assert client.post("/ui/keys/create", data={"name": "csrf-probe"}).status_code == 403
        bad = client.post("/ui/keys/create", data={"name": "csrf-probe", "csrf_token": "0" * 48})
        assert bad.status_code == 403 and "CSRF" in bad.text
        with operator(gw) as (_, other_csrf):  # another session's token is no good here
            pass
        assert client.post("/ui/keys/create", data={"name": "csrf-probe", "csrf_token": other_csrf}).status_code == 403
        foreign = client.post("/ui/keys/create", data={"name": "csrf-probe", "csrf_token": csrf},
                              headers={"origin": "https://evil.example"})
        assert foreign.status_code == 403
        assert admin.get("/admin/api-key/list", params={"q": "csrf-probe"}).json()["total"] == before
        # the header works as well as the field (htmx sends it)
        ok = client.post("/ui/groups/save", data={"name": "csrf-header-group"}, headers={"x-csrf-token": csrf})
        assert ok.status_code == 303
        assert client.post("/ui/signout").status_code == 403  # sign-out too
    with browser(gw) as fresh:
        fresh.get("/ui/signin")
        assert fresh.post("/ui/signin", data={"credential": ADMIN_KEY}).status_code == 403  # sign-in too


def test_sessions_expire_on_the_server(gw: GatewayProcess, admin: httpx.Client) -> None:
    admin.post("/v1/env/upsert", json={"key": "TOLLWAY_CONSOLE_SESSION_TTL", "value": "1"}).raise_for_status()
    try:
        with browser(gw) as client:
            r = sign_in(client, ADMIN_KEY)
            assert int(session_cookie(r)["tollway_console"]["max-age"]) == 1
            kept = r.cookies.get("tollway_console")
            assert client.get("/ui/keys").status_code == 200
            time.sleep(1.5)
            client.cookies.set("tollway_console", kept or "", path="/ui")  # a browser that ignored Max-Age
            expired = client.get("/ui/keys")
            assert expired.status_code == 303 and expired.headers["location"].startswith("/ui/signin")
            htmx = client.post("/ui/groups/save", data={"name": "late"}, headers={"hx-request": "true"})
            assert htmx.status_code == 401 and htmx.headers["hx-redirect"].startswith("/ui/signin")
    finally:
        admin.post("/v1/env/remove", json={"key": "TOLLWAY_CONSOLE_SESSION_TTL"})


def test_sign_out_ends_the_session_everywhere(gw: GatewayProcess) -> None:
    with operator(gw) as (client, csrf):
        stolen = client.cookies.get("tollway_console")
        out = client.post("/ui/signout", data={"csrf_token": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/ui/signin"
        assert any(h.startswith("tollway_console=") and "Max-Age=0" in h for h in out.headers.get_list("set-cookie"))
        assert client.get("/ui/keys").status_code == 303
    with browser(gw) as replay:  # the cookie copied before sign-out opens nothing now
        replay.cookies.set("tollway_console", stolen or "", path="/ui")
        assert replay.get("/ui/keys").status_code == 303


def test_a_revoked_key_ends_its_session(gw: GatewayProcess, admin: httpx.Client) -> None:
    key_id, secret = new_key(admin)
    with browser(gw) as client:
        sign_in(client, secret)
        assert client.get("/ui/keys").status_code == 403  # signed in, not an operator
        admin.post("/admin/api-key/delete", json={"id": key_id}).raise_for_status()
        assert client.get("/ui/keys").headers["location"].startswith("/ui/signin")


# operator pages -------------------------------------------------------------------------------------


def test_the_secret_is_shown_once(gw: GatewayProcess, admin: httpx.Client) -> None:
    with operator(gw) as (client, csrf):
        r = client.post("/ui/keys/create", data={"csrf_token": csrf, "name": "shown-once", "role": "user",
                                                  "balance": "3"})
        assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
        secret = _SECRET.search(r.text)
        assert secret, r.text
        assert 'data-copy="new-secret"' in r.text
        key_id = int(re.search(r'href="/ui/keys/(\d+)"', r.text).group(1))  # type: ignore[union-attr]
        # the key works, and nothing shows its secret again
        assert httpx.get(gw.url + "/user/me", headers={"Authorization": f"Bearer {secret.group(1)}"}).status_code == 200
        for path in ("/ui/keys", f"/ui/keys/{key_id}", "/ui/"):
            assert secret.group(1) not in client.get(path).text
        assert admin.get("/admin/api-key/detail", params={"id": key_id}).json()["balance"] == 3


def test_key_lists_are_paged_on_the_server(gw: GatewayProcess, admin: httpx.Client) -> None:
    for i in range(23):
        new_key(admin, name=f"paged-{i:02d}")
    with operator(gw) as (client, _):
        first = client.get("/ui/keys", params={"q": "paged-", "per": 10})
        assert "1–10 of 23" in first.text
        assert len(re.findall(r'<td><a href="/ui/keys/\d+">#', first.text)) == 10
        assert "paged-00" in first.text and "paged-10" not in first.text
        third = client.get("/ui/keys", params={"q": "paged-", "per": 10, "page": 3})
        assert "21–23 of 23" in third.text and "paged-22" in third.text and "paged-09" not in third.text
        assert 'rel="prev"' in third.text and 'rel="next"' not in third.text
        assert "page=2" in third.text and "q=paged-" in third.text  # the filter stays in the links


def test_actions_are_the_admin_api(gw: GatewayProcess, admin: httpx.Client) -> None:
    key_id, secret = new_key(admin, name="acted-on")
    with operator(gw) as (client, csrf):
        # a recharge through the console is the admin API's: one ledger row, the same balance
        r = client.post(f"/ui/keys/{key_id}/recharge", data={"csrf_token": csrf, "amount": "2.5", "note": "console"})
        assert flash(client, r) == ("ok", "Balance recharged.")
        payments = admin.get("/admin/payment/list", params={"key_id": key_id}).json()["items"]
        assert [(p["amount"], p["note"]) for p in payments] == [(2.5, "console")]
        # the API's refusal, word for word
        api = admin.post("/admin/api-key/update", json={"id": key_id, "rpm": "fast"}).json()["detail"]
        r = client.post(f"/ui/keys/{key_id}/update", data={"csrf_token": csrf, "name": "acted-on", "rpm": "fast"})
        assert flash(client, r) == ("error", f"Refused (HTTP 400): {api}")
        r = client.post(f"/ui/keys/{key_id}/update", data={"csrf_token": csrf, "name": "renamed", "rpm": "60",
                                                           "role": "user", "enabled": "true"})
        assert flash(client, r)[0] == "ok"
        assert admin.get("/admin/api-key/detail", params={"id": key_id}).json()["rpm"] == 60
        r = client.post(f"/ui/keys/{key_id}/revoke", data={"csrf_token": csrf})
        assert flash(client, r)[0] == "ok"
        assert httpx.get(gw.url + "/user/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_env_values_stay_masked(gw: GatewayProcess) -> None:
    with operator(gw) as (client, csrf):
        value = "sk-console-very-secret-value-42"
        r = client.post("/ui/env/upsert", data={"csrf_token": csrf, "key": "CONSOLE_TEST_TOKEN", "value": value})
        assert flash(client, r)[0] == "ok"
        page = client.get("/ui/env")
        assert "CONSOLE_TEST_TOKEN" in page.text and value not in page.text
        assert "sk-c…42" in page.text
        imported = client.post("/ui/env/import", data={"csrf_token": csrf, "text": (
            f"CONSOLE_A=1\n# a comment\nnot an assignment\nCONSOLE_TEST_TOKEN={value}\n")})
        assert imported.status_code == 200 and value not in imported.text
        rows = re.findall(r"<tr><td>([^<]*)</td><td><code>([^<]*)</code></td><td><span[^>]*>(\w+)</span>",
                          imported.text)
        assert rows == [("1", "CONSOLE_A", "added"), ("3", "", "skipped"), ("4", "CONSOLE_TEST_TOKEN", "unchanged")]
        for key in ("CONSOLE_A", "CONSOLE_TEST_TOKEN"):
            client.post("/ui/env/remove", data={"csrf_token": csrf, "key": key})


def test_every_operator_page_renders(gw: GatewayProcess, admin: httpx.Client) -> None:
    _, secret = new_key(admin, name="traffic")
    user = httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    with user:
        assert user.post("/v1/chat/completions", json={"model": "echo", "messages": [
            {"role": "user", "content": "hello console"}]}).status_code == 200
        missing = user.post("/v1/chat/completions", json={"model": "no-such-model", "messages": [
            {"role": "user", "content": "x"}]})
        assert missing.status_code == 404
    with operator(gw) as (client, _):
        time.sleep(1.5)  # the request log is written in batches
        for path in ("/ui/", "/ui/?period=30d", "/ui/keys", "/ui/keys/payments", "/ui/models", "/ui/groups",
                     "/ui/studios", "/ui/env", "/ui/pools", "/ui/logs", "/ui/records", "/ui/tasks", "/ui/bots"):
            page = client.get(path)
            assert page.status_code == 200, (path, page.text[:2000])
            assert "Traceback" not in page.text
        logs = client.get("/ui/logs", params={"status": "404"})
        assert "no-such-model" in logs.text and "hello" not in logs.text
        assert client.get("/ui/logs", params={"status": "nonsense"}).status_code == 400
        assert "echo" in client.get("/ui/logs", params={"model": "echo"}).text
        overview = client.get("/ui/")
        assert re.search(r'id="total-requests">[1-9]', overview.text)
        detail = client.get(f"/ui/logs/{missing.headers['x-request-id']}")  # one request, with its error
        assert detail.status_code == 200 and "no-such-model" in detail.text and "Dropped params" in detail.text
        assert client.get("/ui/logs/req_000000000000000000000000").status_code == 404
        catalog = client.get("/ui/models").text
        assert "Fallbacks" in catalog and "<code>echo</code>" in catalog
        assert client.get("/ui/no-such-page").status_code == 404
    assert "Traceback" not in gw.output()


def test_static_files_are_vendored_and_cached(gw: GatewayProcess) -> None:
    with browser(gw) as client:
        page = client.get("/ui/signin").text
        assert "https://" not in "".join(re.findall(r'(?:src|href)="([^"]+)"', page))  # no CDN
        src = re.search(r'src="(/ui/static/htmx\.min\.js\?v=\w+)"', page)
        assert src
        js = client.get(src.group(1))
        assert js.status_code == 200 and "immutable" in js.headers["cache-control"]
        assert js.headers["content-type"].startswith("text/javascript")
        again = client.get(src.group(1), headers={"if-none-match": js.headers["etag"]})
        assert again.status_code == 304
        for note in ("htmx.LICENSE.txt", "uPlot.LICENSE.txt"):
            assert client.get(f"/ui/static/{note}").status_code == 200
        assert client.get("/ui/static/..%2Fsession.py").status_code == 404
