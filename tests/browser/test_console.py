"""The web console in a real browser (chromium through Playwright) against a real gateway.

An operator signs in, creates a key, copies its secret and chats with it in the playground (the
answer streams in word by word, then its tokens and cost); the request shows in the request log
and the usage charts; revoking the key makes the playground refuse it. A key holder signs in,
sees its own usage, records and playground, and is refused the operator pages. State-changing
requests without the CSRF token are refused; a session ends after its TTL. Every page is
screenshotted at 1280x800 and 390x844 (``tests/browser/artifacts/``), the main pages are checked
with axe-core (WCAG 2.x A/AA), and the sign-in form is reachable with the keyboard.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.browser.conftest import DESKTOP, PHONE, axe_violations, describe, shoot
from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tests.fakes.openai_server import Behavior, FakeOpenAI

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet"
PRICE_IN, PRICE_OUT = 1000, 2000  # credits per million tokens: small, but not zero


@pytest.fixture(scope="module")
def gateway_env() -> dict[str, str]:
    return {"TOLLWAY_RECORD_CHATS": "on"}


@pytest.fixture(scope="module")
def priced(gateway: GatewayProcess, fake: FakeOpenAI) -> GatewayProcess:
    """``fake-chat`` priced (so an answer costs something) and streaming one word every 60 ms."""
    fake.script("upstream-chat", Behavior(text=WORDS, chunk_delay=0.06, prompt_tokens=11, completion_tokens=10))
    with gateway.admin() as admin:
        r = admin.post("/admin/model/save", json={"name": "fake-chat", "provider": "fake", "price_in": PRICE_IN,
                                                  "price_out": PRICE_OUT})
        assert r.status_code == 200, r.text
    return gateway


def new_key(gw: GatewayProcess, name: str, balance: float = 1000) -> tuple[int, str]:
    with gw.admin() as admin:
        r = admin.post("/admin/api-key/apply", json={"name": name, "role": "user", "balance": balance})
        assert r.status_code == 200, r.text
        return int(r.json()["id"]), str(r.json()["api_key"])


def revoke(gw: GatewayProcess, key_id: int) -> None:
    with gw.admin() as admin:
        assert admin.post("/admin/api-key/delete", json={"id": key_id}).status_code == 200


def sign_in(page: Page, secret: str) -> None:
    page.goto("/ui/signin")
    page.fill("#credential", secret)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(re.compile(r"/ui/(me)?$"))


def assert_accessible(page: Page) -> None:
    found = axe_violations(page)
    assert found == [], f"axe-core on {page.url}:\n{describe(found)}"


def chat(page: Page, text: str) -> Any:
    """Send ``text`` from the playground; the locator of the answer's turn."""
    before = page.locator("#pg-transcript .turn").count()
    page.fill("#pg-message", text)
    page.click("#pg-send")
    answer = page.locator("#pg-transcript .turn").nth(before + 1)
    answer.wait_for()
    return answer


def wait_done(page: Page) -> None:
    page.wait_for_function("() => !document.querySelector('#pg-send').disabled")


def test_signin_by_keyboard(page: Page) -> None:
    """Tab reaches the credential field and the submit button; Enter there signs in."""
    page.goto("/ui/signin")
    shoot(page, "signin")
    assert_accessible(page)
    assert page.evaluate("document.activeElement.id") == "credential"  # autofocus
    page.reload()  # a keyboard user arriving: from the top of the page (the address bar)
    page.evaluate("document.activeElement.blur()")
    page.mouse.click(640, 5)  # the top bar: where sequential navigation starts
    focused = []
    for _ in range(10):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
        if focused[-1] == "Sign in":
            break
    assert "credential" in focused and focused[-1] == "Sign in", focused
    assert focused.index("credential") < focused.index("Sign in")
    page.focus("#credential")
    page.keyboard.type(ADMIN_KEY)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/ui/$"))
    assert page.get_by_role("button", name="Sign out").is_visible()


def test_operator_creates_a_key_and_chats_with_it(priced: GatewayProcess, fake: FakeOpenAI,
                                                  context: BrowserContext, page: Page) -> None:
    gw = priced
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, ADMIN_KEY)
    requests_before = int(page.inner_text("#total-requests").replace(",", ""))
    charted_before = charted(page, "chart-requests")

    # create a key with a balance, and copy its secret
    page.goto("/ui/keys")
    if not page.is_visible("#key-name"):
        page.locator("summary", has_text="Create key").click()  # opens the <details>
    page.fill("#key-name", "browser-key")
    page.fill("#key-balance", "1000")
    page.get_by_role("button", name="Create key").click()
    secret = page.inner_text("#new-secret").strip()
    assert secret.startswith("tw-")
    page.click('[data-copy="new-secret"]')
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shoot(page, "key-created")
    # a [hidden] button stays hidden (console.css styles buttons inline-block); the facts keep their distance
    assert page.evaluate("() => { const b = document.createElement('button'); b.hidden = true;"
                         " document.querySelector('main').append(b); const d = getComputedStyle(b).display;"
                         " b.remove(); return d; }") == "none"
    gap = page.evaluate("() => document.querySelector('dl.facts').getBoundingClientRect().top"
                        " - document.querySelector('.secret').getBoundingClientRect().bottom")
    assert gap >= 8, gap

    # the playground, from the operator menu: the admin has no key of its own, so it asks for one
    page.locator("nav.sidenav").get_by_role("link", name="Playground").click()
    page.wait_for_url("**/ui/playground")
    page.wait_for_function("() => document.getElementById('playground').getAttribute('data-ready') === '1'")
    assert page.locator("#pg-no-key").is_visible()
    page.click("#pg-message")
    page.fill("#pg-message", "hello?")
    page.click("#pg-send")
    assert "Give a key" in page.inner_text("#pg-status")
    page.focus("#pg-key")
    page.keyboard.press("Control+V")  # what was copied
    assert page.input_value("#pg-key") == secret
    page.get_by_role("button", name="Use this key").click()
    page.wait_for_selector("#pg-model")
    assert "browser-key" in page.inner_text("#pg-who")
    assert "fake-chat" in page.locator("#pg-model option").all_inner_texts()
    page.select_option("#pg-model", "fake-chat")
    shoot(page, "playground-admin")

    # the answer streams in: partly there while the send button is still disabled
    answer = chat(page, "Say the alphabet")
    page.wait_for_function("() => { const a = document.querySelector('#pg-transcript .turn:last-child');"
                           " return a.textContent.split(' ').length >= 3"
                           " || !document.querySelector('#pg-send').disabled; }")
    assert "turn-assistant" in (answer.get_attribute("class") or ""), answer.inner_text()
    partial = answer.locator(".said").inner_text()
    assert page.locator("#pg-send").is_disabled() and partial != WORDS, partial
    wait_done(page)
    assert answer.locator(".said").inner_text() == WORDS
    page.wait_for_function("() => /credits/.test(document.querySelector('.turn-assistant .turn-meta').textContent)")
    meta = answer.locator(".turn-meta").inner_text()
    cost = (11 * PRICE_IN + 10 * PRICE_OUT) / 1_000_000  # 0.031 credits, exactly as billed
    assert f"11 prompt + 10 completion tokens · {cost:g} credits" in meta, meta
    request_id = answer.locator(".turn-meta code").inner_text()
    shoot(page, "playground")

    # a second turn carries the first (the fake saw the history)
    chat(page, "And again")
    wait_done(page)
    sent = fake.seen("upstream-chat")[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"] and sent[1]["content"] == WORDS

    # the request in the log, and in the overview's numbers
    page.goto("/ui/logs")
    row = page.locator("#log-table tr", has_text=request_id)
    assert row.count() == 1 and "fake-chat" in row.inner_text() and f"{cost:g}" in row.inner_text()
    shoot(page, "logs")
    page.set_viewport_size(PHONE)  # a phone: time, model, status and cost of a request on screen
    for cell in (".c-time", ".c-model", ".c-status", ".c-cost"):
        box = row.locator(cell).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (cell, box)
    page.set_viewport_size(DESKTOP)
    page.goto("/ui/")
    page.wait_for_selector("#chart-requests canvas")
    assert int(page.inner_text("#total-requests").replace(",", "")) == requests_before + 2
    assert charted(page, "chart-requests") == charted_before + 2  # the chart's data: the two answers more
    shoot(page, "overview")

    # revoke the key in the console: the playground refuses it
    key_id = key_id_of(gw, "browser-key")
    page.goto(f"/ui/keys/{key_id}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke key").click()
    page.locator(".flash", has_text="revoked").wait_for()
    page.goto("/ui/playground")
    page.fill("#pg-key", secret)
    page.get_by_role("button", name="Use this key").click()
    page.wait_for_selector("#pg-refused")
    assert re.search(r"Invalid API key|disabled", page.inner_text("#pg-refused"))  # revoked or disabled
    page.evaluate("document.querySelector('#pg-models').insertAdjacentHTML('beforeend', "
                  "'<select id=\"pg-model\"><option>fake-chat</option></select>')")  # as if chosen before
    refused = chat(page, "Still there?")
    wait_done(page)
    assert "turn-error" in (refused.get_attribute("class") or "")
    assert re.search(r"\((401|403)\)", refused.inner_text()), refused.inner_text()
    assert re.search(r"Invalid API key|disabled", refused.inner_text())
    shoot(page, "playground-refused")


def charted(page: Page, chart: str) -> float:
    """The sum of a chart's first series (as the page hands it to the chart library)."""
    return float(page.evaluate(f"JSON.parse(document.querySelector('script[data-chart-for=\"{chart}\"]')"
                               ".textContent).series[0].values.reduce((a, b) => a + b, 0)"))


def key_id_of(gw: GatewayProcess, name: str) -> int:
    with gw.admin() as admin:
        items = admin.get("/admin/api-key/list", params={"name": name}).json()["items"]
    return int(items[0]["id"])


HOLDERS = itertools.count(1)


@pytest.fixture
def holder(priced: GatewayProcess) -> Iterator[tuple[int, str]]:
    """A key of its own (a balance, no whitelist) for one test."""
    key_id, secret = new_key(priced, f"team-app-{next(HOLDERS)}")
    yield key_id, secret


def test_key_holder_pages(priced: GatewayProcess, page: Page, holder: tuple[int, str]) -> None:
    key_id, secret = holder
    sign_in(page, secret)
    assert page.url.endswith("/ui/me")
    assert page.inner_text("#my-requests") == "0"
    assert "fake-chat" in page.inner_text("#me-models")
    assert_accessible(page)
    shoot(page, "me-empty")

    page.locator("nav.sidenav").get_by_role("link", name="Playground").click()  # htmx-boosted: no page load
    page.wait_for_url("**/ui/playground")
    page.wait_for_function("() => document.getElementById('playground').getAttribute('data-ready') === '1'")
    page.select_option("#pg-model", "fake-chat")
    answer = chat(page, "Hello from the key holder")
    wait_done(page)
    assert answer.locator(".said").inner_text() == WORDS
    page.wait_for_function("() => /credits/.test(document.querySelector('.turn-assistant .turn-meta').textContent)")
    assert_accessible(page)

    # my usage now counts it, in the chart's numbers and the tables
    page.goto("/ui/me")
    assert page.inner_text("#my-requests") == "1"
    page.wait_for_selector("#me-chart-requests canvas")
    assert charted(page, "me-chart-requests") == 1 and charted(page, "me-chart-tokens") == 21
    assert "fake-chat" in page.inner_text("#me-models-usage") and "fake-chat" in page.inner_text("#me-recent")
    assert page.inner_text("#my-balance") == f"{1000 - 0.031:,g}"
    shoot(page, "me")
    page.goto("/ui/me?period=30d")
    assert "Day (UTC)" in (page.text_content("#me-buckets") or "")

    # my records: the playground conversation is a session with its exchange
    page.goto("/ui/me/records")
    wait_for_session(page)
    assert_accessible(page)
    shoot(page, "me-records")
    page.locator("#me-sessions a").first.click()
    page.wait_for_selector("#me-threads")
    assert WORDS[:20] in page.inner_text("#me-threads")
    assert_accessible(page)
    shoot(page, "me-session")
    page.locator("#me-threads a").first.click()
    page.wait_for_selector("#thread-transcript")
    assert "Hello from the key holder" in page.inner_text("#thread-transcript")
    assert_accessible(page)
    shoot(page, "me-thread")

    # operator pages are not for a key holder
    for path in ("/ui/keys", "/ui/logs", "/ui/env"):
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        assert "operators" in page.inner_text("main")
    shoot(page, "holder-refused")
    nav = page.inner_text("nav.sidenav")
    assert "My usage" in nav and "Keys" not in nav

    # the key is revoked while its holder is in the playground: the next message is refused
    page.goto("/ui/playground")
    page.select_option("#pg-model", "fake-chat")
    revoke(priced, key_id)
    refused = chat(page, "Are you still there?")
    wait_done(page)
    assert "turn-error" in (refused.get_attribute("class") or "")
    assert "session has ended" in refused.inner_text()
    assert refused.locator("a", has_text="Sign in").get_attribute("href", timeout=1000).startswith("/ui/signin")


def wait_for_session(page: Page) -> None:
    """Reload /ui/me/records until a session is listed (records are written behind the answer)."""
    deadline = time.time() + 10
    while page.locator("#me-sessions a").count() == 0:
        assert time.time() < deadline, "the chat was not recorded"
        page.wait_for_timeout(200)
        page.reload()


def test_requests_without_csrf_token_are_refused(priced: GatewayProcess, page: Page,
                                                 holder: tuple[int, str]) -> None:
    _, secret = holder
    sign_in(page, secret)
    body = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
    # the page's cookie, no token: refused before anything is sent upstream
    for path in ("/ui/playground/chat", "/ui/signout", "/ui/me/records/1/delete"):
        r = page.request.post(path, data=body, headers={"content-type": "application/json"})
        assert r.status == 403 and "CSRF" in r.text(), (path, r.status)
    # the token from another origin
    token = page.input_value("input[name=csrf_token]") if page.locator("input[name=csrf_token]").count() else \
        page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    r = page.request.post("/ui/playground/chat", data=body, headers={
        "content-type": "application/json", "x-csrf-token": token, "origin": "http://evil.example"})
    assert r.status == 403
    # with it, from here: the answer streams
    r = page.request.post("/ui/playground/chat", data=body, headers={
        "content-type": "application/json", "x-csrf-token": token})
    assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "event: tollway.usage" in r.text() and "[DONE]" in r.text()
    # no cookie at all: the console's 401 (and no stream)
    r = httpx.post(priced.url + "/ui/playground/chat", json=body, headers={"x-csrf-token": token})
    assert r.status_code in (401, 403)


def test_session_ends_after_its_ttl(priced: GatewayProcess, browser: Browser, holder: tuple[int, str]) -> None:
    _, secret = holder
    with priced.admin() as admin:
        r = admin.post("/v1/env/upsert", json={"key": "TOLLWAY_CONSOLE_SESSION_TTL", "value": "2"})
        assert r.status_code == 200, r.text
    try:
        time.sleep(1.2)  # the env reaches the process within a second
        context = browser.new_context(base_url=priced.url, viewport={"width": 1280, "height": 800})
        page = context.new_page()
        sign_in(page, secret)
        page.goto("/ui/me/records")
        assert page.url.endswith("/ui/me/records")
        time.sleep(2.2)
        page.goto("/ui/me/records")
        assert "/ui/signin" in page.url and "next=" in page.url
        context.close()
    finally:
        with priced.admin() as admin:
            admin.post("/v1/env/remove", json={"key": "TOLLWAY_CONSOLE_SESSION_TTL"})


OPERATOR_PAGES = ("/ui/", "/ui/keys", "/ui/models", "/ui/groups", "/ui/studios", "/ui/env", "/ui/pools",
                  "/ui/logs", "/ui/records", "/ui/tasks", "/ui/bots", "/ui/me", "/ui/playground")
HOLDER_PAGES = ("/ui/playground", "/ui/me", "/ui/me/records")  # a chat first: the others then show it
MAIN_PAGES = {"/ui/", "/ui/keys", "/ui/logs", "/ui/me", "/ui/me/records", "/ui/playground"}
# TOLLWAY_DOCS_SCREENSHOTS=docs/console: also the README's pictures (1280x800, the viewport only;
# then `pngquant --force --ext .png --quality 60-85 docs/console/*.png` to keep each under 120 KB)
DOCS = os.environ.get("TOLLWAY_DOCS_SCREENSHOTS")
DOC_PAGES = {("admin", "/ui/"): "overview", ("admin", "/ui/keys"): "keys", ("admin", "/ui/logs"): "requests",
             ("holder", "/ui/me"): "my-usage", ("holder", "/ui/me/records"): "my-records",
             ("holder", "/ui/playground"): "playground"}


def test_every_page_screenshots_and_axe(priced: GatewayProcess, browser: Browser, holder: tuple[int, str]) -> None:
    """Screenshots of every page at both sizes, for a person to look at; axe on the main ones."""
    _, secret = holder
    problems = []
    for who, credential, pages in (("holder", secret, HOLDER_PAGES), ("admin", ADMIN_KEY, OPERATOR_PAGES)):
        context = browser.new_context(base_url=priced.url, viewport={"width": 1280, "height": 800})
        page = context.new_page()
        sign_in(page, credential)
        for path in pages:
            response = page.goto(path)
            assert response is not None and response.status == 200, (who, path)
            if who == "holder" and path == "/ui/playground":  # with a conversation on it
                page.select_option("#pg-model", "fake-chat")
                chat(page, "What does the playground show?")
                wait_done(page)
                page.wait_for_function("() => /credits/.test(document.querySelector('.turn-meta').textContent)")
                page.evaluate("document.activeElement.blur()")
            if who == "holder" and path == "/ui/me/records":
                wait_for_session(page)
            if page.locator("[data-chart]").count():
                page.wait_for_selector("[data-chart] canvas, [data-chart].empty")
            name = f"{who}-" + (path.removeprefix("/ui/").replace("/", "-") or "overview")
            shoot(page, name)
            if path in MAIN_PAGES:
                found = axe_violations(page)
                if found:
                    problems.append(f"{who} {path}:\n{describe(found)}")
            if DOCS and (who, path) in DOC_PAGES:
                Path(DOCS).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=Path(DOCS) / f"{DOC_PAGES[who, path]}.png")
        context.close()
    assert problems == [], "\n".join(problems)


def test_playground_without_javascript(priced: GatewayProcess, browser: Browser, holder: tuple[int, str]) -> None:
    """The playground's form works as a plain form: the page comes back with the whole answer."""
    _, secret = holder
    context = browser.new_context(base_url=priced.url, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, secret)
        page.goto("/ui/playground")
        page.select_option("#pg-model", "fake-chat")
        page.fill("#pg-message", "No script here")
        page.click("#pg-send")
        page.wait_for_url("**/ui/playground/chat")
        assert page.inner_text("#pg-transcript .turn-assistant .said") == WORDS
        assert "11 prompt + 10 completion tokens · 0.031 credits" in page.inner_text("#pg-transcript .turn-meta")
        page.select_option("#pg-model", "echo")
        page.fill("#pg-message", "")
        page.click("#pg-send")  # the browser's own check: a message is required
        assert page.url.endswith("/ui/playground/chat") and page.locator("#pg-message:invalid").count() == 1
    finally:
        context.close()
