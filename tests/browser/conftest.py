"""Real-browser tests of the web console (``/ui``): Debian's chromium driven by Playwright.

One ``tollway serve`` process per test module (``gateway``) in front of the fake OpenAI upstream,
one chromium per module (``browser``), a fresh context per test (``context``, ``page``: 1280x800,
its own cookies). ``shoot(page, name)`` saves full-page screenshots at 1280x800 and 390x844 to
``tests/browser/artifacts/`` (ignored by git); ``axe_violations(page)`` runs the vendored axe-core
(``vendor/axe.min.js``) on the page as it is and returns what it found.

The browser is ``/usr/bin/chromium`` (``apt-get install -y chromium``; another one with
``TOLLWAY_TEST_CHROMIUM``). Playwright's own browser download (``playwright install``) is never
used. Without chromium or the ``playwright`` package the tests skip with a message, unless
``TOLLWAY_REQUIRE_SERVICES=1`` (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e import conftest as e2e
from tests.e2e.harness import GatewayProcess, fake_config
from tests.fakes.openai_server import UPSTREAM_SECRET, FakeOpenAI

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

HERE = Path(__file__).parent
ARTIFACTS = HERE / "artifacts"
AXE = HERE / "vendor" / "axe.min.js"
CHROMIUM = os.environ.get("TOLLWAY_TEST_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("TOLLWAY_REQUIRE_SERVICES") == "1"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# what axe checks: WCAG 2.0-2.2 A and AA (contrast, labels, names, landmarks' basics)
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def _unavailable(message: str) -> None:
    if REQUIRED:
        pytest.fail(message + " [TOLLWAY_REQUIRE_SERVICES=1]")
    pytest.skip(message)


# the fake upstream and the check that it saw and sent only spec-conforming payloads: the e2e suite's
fake = e2e.fake
_no_spec_errors = e2e._no_spec_errors


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's sync API, per module: while it runs, its event loop is the thread's running
    loop, so it must be stopped before any asyncio test of another folder runs."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed ({exc}); pip install -e '.[test]' to run the browser tests")
        raise  # unreachable: skip or fail raised
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        _unavailable(f"no chromium at {CHROMIUM}; apt-get install -y chromium (or set TOLLWAY_TEST_CHROMIUM "
                     "to a Chromium binary) to run the browser tests")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()




@pytest.fixture(scope="module")
def gateway_env() -> dict[str, str]:
    """Extra environment of the module's gateway; a test module overrides this fixture."""
    return {}


@pytest.fixture(scope="module")
def gateway(fake: FakeOpenAI, gateway_env: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        tmp_path_factory.mktemp("browser-gw"),
        config=fake_config(fake.base_url, UPSTREAM_SECRET),
        env={"TOLLWAY_LOG_FLUSH_INTERVAL": "0.05", **gateway_env},
    ).start()
    yield gw
    gw.stop()


@pytest.fixture
def context(browser: Browser, gateway: GatewayProcess) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) whose relative URLs go to the gateway."""
    ctx = browser.new_context(base_url=gateway.url, viewport=DESKTOP)
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def shoot(page: Page, name: str, *, full_page: bool = True) -> list[Path]:
    """Screenshots of the page at 1280x800 and 390x844 (``artifacts/<name>-<w>x<h>.png``); the
    viewport is set back to 1280x800 afterwards."""
    ARTIFACTS.mkdir(exist_ok=True)
    paths = []
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        page.wait_for_timeout(50)  # one layout after the resize
        path = ARTIFACTS / f"{name}-{size['width']}x{size['height']}.png"
        page.screenshot(path=path, full_page=full_page)
        paths.append(path)
    page.set_viewport_size(DESKTOP)
    return paths


def axe_violations(page: Page, *, tags: list[str] | None = None) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, each ``{id, impact, help, nodes: [target...]}``.
    Injected through the DevTools protocol, so the page's Content-Security-Policy stays as served."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    found: list[dict[str, Any]] = page.evaluate(
        """async (tags) => {
            const options = {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']};
            const result = await axe.run(document, options);
            const why = (n) => (n.failureSummary || '').split('\\n').slice(1).join(' ');
            return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.target.join(' ') + ': ' + why(n))}));
        }""", tags or AXE_TAGS)
    return found


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(f"{v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"][:5])
                     for v in violations)
