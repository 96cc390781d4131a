"""Browser-test kit (a pytest plugin, loaded by tests/conftest.py): a real headless Chromium driven by
Playwright, phone and desktop pages, screenshots and axe-core checks.

Chromium is Debian's (`/usr/bin/chromium`, installed by `make tools` via deploy/tools/install.sh;
`CHROMIUM_PATH` overrides): Playwright's own browser download is never used.

    async def test_start_page(phone_page, desktop_page):
        for page in (phone_page, desktop_page):
            await page.goto(url)
            await screenshot(page, "start", "sv")   # var/screenshots/start-sv-360.png (SCREENSHOTS=1)
            await assert_accessible(page)          # 0 axe-core violations
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
PHONE = {"width": 360, "height": 780}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make tools` installs Debian's chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        # --no-sandbox: tests run as root on CI, where Chromium's sandbox refuses to start.
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield launched
        finally:
            await launched.close()


async def new_page(browser: Any, viewport: dict[str, int], locale: str = "sv-SE") -> Any:
    """A page in a fresh context (own cookies) of the given size and Accept-Language."""
    context = await browser.new_context(viewport=viewport, locale=locale, java_script_enabled=True)
    context.set_default_timeout(30_000)
    return await context.new_page()


@pytest.fixture
async def phone_page(browser: Any) -> AsyncIterator[Any]:
    page = await new_page(browser, PHONE)
    try:
        yield page
    finally:
        await page.context.close()


@pytest.fixture
async def desktop_page(browser: Any) -> AsyncIterator[Any]:
    page = await new_page(browser, DESKTOP)
    try:
        yield page
    finally:
        await page.context.close()


#: Screenshots are for people to look at (`make screenshots`), not for any assertion: a full-page PNG
#: of every page in two languages and two widths is about a third of the browser tests' CPU, so the
#: suite takes them only when SCREENSHOTS=1.
TAKE_SCREENSHOTS = os.environ.get("SCREENSHOTS", "") not in ("", "0")


async def screenshot(page: Any, name: str, lang: str) -> Path:
    """Save the whole page as var/screenshots/<name>-<lang>-<width>.png (not committed; SCREENSHOTS=1)."""
    width = page.viewport_size["width"] if page.viewport_size else 0
    path = SCREENSHOTS / f"{name}-{lang}-{width}.png"
    if TAKE_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(path), full_page=True)
    return path


async def assert_accessible(page: Any) -> None:
    """Run axe-core (WCAG 2.x A/AA and best practices) on the page; fail listing every violation."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(page)
    if results.violations_count:
        details = [f"{v['id']} ({v.get('impact')}): {v['help']} at "
                   + ", ".join(str(n.get("target")) for n in v.get("nodes", [])[:5])
                   for v in results.response["violations"]]
        raise AssertionError(f"{page.url}: {results.violations_count} axe-core violation(s):\n" + "\n".join(details))


def assert_no_script(html: str) -> None:
    """The pages work without JavaScript and send none: no script element, no inline handler."""
    lowered = html.lower()
    assert "<script" not in lowered, "a page sent a script element"
    assert " style=" not in lowered, "a page has an inline style (the CSP forbids it)"
