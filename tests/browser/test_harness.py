"""The browser harness itself: chromium starts, and the axe check finds what it should (so a
console page passing it means something)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser.conftest import CHROMIUM_ARGS, axe_violations

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def test_axe_finds_missing_labels_and_low_contrast(browser: Browser) -> None:
    page = browser.new_page()
    try:
        # a strict Content-Security-Policy, as the console serves: axe is injected past it
        page.set_content("""<!doctype html><html lang="en"><head><title>t</title>
            <meta http-equiv="Content-Security-Policy" content="script-src 'self'"></head>
            <body><main><h1>Form</h1><input id="nameless"><p style="color:#bbb;background:#fff">faint</p>
            <label for="named">Named</label><input id="named"></main></body></html>""")
        found = {v["id"]: v["nodes"] for v in axe_violations(page)}
        assert set(found) == {"label", "color-contrast"}, found
        assert [n.split(":")[0] for n in found["label"]] == ["#nameless"]
    finally:
        page.close()
    assert "--headless" in CHROMIUM_ARGS and browser.version.split(".")[0].isdigit()
