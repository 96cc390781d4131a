"""The pages behind links in emails (unsubscribe, export download) and the access package's report, in a
real browser: Swedish and English, on a phone and a desktop, under their strict CSP, with 0 axe-core
violations. Screenshots go to var/screenshots/ (`make screenshots`; not committed). The pages are rendered by the same
templates and texts the services use; tests/test_link_scanners.py drives them through the services."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from privacy_runtime.datamap import load_data_map
from privacy_runtime.pages.linkpages import LinkPages
from privacy_runtime.pages.rendering import STYLESHEET
from privacy_runtime.settings import DEFAULT_DATA_MAP
from services.consent.page_texts import UNSUBSCRIBE_MESSAGES
from services.dsar import package
from services.dsar.cases import Case
from services.dsar.package_texts import EXPORT_PAGE_MESSAGES
from tests.browser_kit import assert_accessible, assert_no_script, screenshot

ROOT = Path(__file__).resolve().parents[2]
LANGS = ("sv", "en")
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def _pages(service: str, messages: dict[str, dict[str, str]]) -> LinkPages:
    return LinkPages(ROOT / "services" / service / "templates", messages, contact_email="privacy@isopartner.se",
                     public_url="https://privacy.example", privacy_center_url="https://privacy.example/center")


UNSUBSCRIBE = _pages("consent", UNSUBSCRIBE_MESSAGES)
EXPORT = _pages("dsar", EXPORT_PAGE_MESSAGES)


def _report(lang: str) -> str:
    now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    case = Case(request_id="7d3c1e2a-0000-4000-8000-000000000001", subject="u-1", right="access",
                status="completed", received_at=now, due_at=now, identity_verified=True, requested_via="web_form")
    fragments = {
        "accounts": package.Fragment("done", {"records": [{"name": HOSTILE, "email": "a@example.org"}]}),
        "notifier": package.Fragment("done", {"directory": {"locale": lang}}),
        "consent": package.Fragment("done", {"consent_history": [
            {"purpose": "marketing_email", "granted": False, "channel": "email_footer", "policy_version": "2021-10-30",
             "effective_at": "2026-02-01T10:00:00+00:00"}]}),
        "logs": package.Fragment("not_found", None),
    }
    data_map = load_data_map(DEFAULT_DATA_MAP)
    built = package.render(case, package.build(case, fragments, data_map, now), data_map)
    archive = zipfile.ZipFile(io.BytesIO(built.content))
    return archive.read(archive.namelist()[0]).decode()


def _page(pages: LinkPages, template: str, lang: str, **values: Any) -> web.Response:
    return web.Response(text=pages.render(template, lang, **values), content_type="text/html", headers=pages.headers())


async def _unsubscribe(request: web.Request) -> web.Response:
    state, lang = request.match_info["state"], request.query.get("lang", "sv")
    heading = UNSUBSCRIBE.text(lang, "unsubscribe.title" if state == "ask" else "unsubscribe.done.title")
    return _page(UNSUBSCRIBE, "unsubscribe.html.j2", lang, state=state, purpose="marketing_email", heading=heading)


async def _export(request: web.Request) -> web.Response:
    state, lang = request.match_info["state"], request.query.get("lang", "sv")
    if state != "ok":
        return _page(EXPORT, "export.html.j2", lang, problem=state)
    return _page(EXPORT, "export.html.j2", lang, problem=None, right="access", request_id=HOSTILE, size="12 kB",
                 formats="JSON", expires="2026-12-14 11:00 CET", downloads_left=3)


async def _stylesheet(request: web.Request) -> web.Response:
    return web.Response(body=STYLESHEET.read_bytes(), content_type="text/css")


async def _report_page(request: web.Request) -> web.Response:
    return web.Response(text=_report(request.match_info["lang"]), content_type="text/html")


@pytest.fixture
async def site() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/v1/unsubscribe/static/pages.css", _stylesheet)
    app.router.add_get("/v1/exports/static/pages.css", _stylesheet)
    app.router.add_get("/v1/unsubscribe/{state}", _unsubscribe)
    app.router.add_get("/v1/exports/{state}", _export)
    app.router.add_get("/report/{lang}", _report_page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


PAGES = [
    ("unsubscribe-ask", "/v1/unsubscribe/ask"),
    ("unsubscribe-done", "/v1/unsubscribe/done"),
    ("unsubscribe-already", "/v1/unsubscribe/already"),
    ("unsubscribe-invalid", "/v1/unsubscribe/invalid"),
    ("export", "/v1/exports/ok"),
    ("export-used-up", "/v1/exports/used_up"),
]


def test_the_link_pages_escape_what_they_show_and_send_no_script() -> None:
    for lang in LANGS:
        page = EXPORT.render("export.html.j2", lang, problem=None, right="access", request_id=HOSTILE, size="1 kB",
                             formats="JSON", expires="x", downloads_left=1)
        assert_no_script(page)
        assert "&lt;script&gt;" in page and "<img" not in page
        ask = UNSUBSCRIBE.render("unsubscribe.html.j2", lang, state="ask", purpose="marketing_email", heading="h")
        assert_no_script(ask)
        assert {"sv": "marknadsföring via e-post", "en": "marketing by email"}[lang] in ask
        other = "en" if lang == "sv" else "sv"
        assert 'href="static/pages.css"' in ask and f'href="?lang={other}"' in ask, "relative: any path prefix works"


@pytest.mark.browser
async def test_link_pages_and_the_report_in_a_browser(site: str, phone_page: Any, desktop_page: Any) -> None:
    for page in (phone_page, desktop_page):
        for lang in LANGS:
            for name, path in PAGES:
                response = await page.goto(f"{site}{path}?lang={lang}")
                assert response is not None and response.ok
                # The stylesheet applied under the strict CSP: the button is the kit's blue.
                if name in ("unsubscribe-ask", "export"):
                    colour = await page.eval_on_selector("button", "b => getComputedStyle(b).backgroundColor")
                    assert colour == "rgb(11, 79, 138)", colour
                await screenshot(page, name, lang)
                await assert_accessible(page)
            await page.goto(f"{site}/report/{lang}")
            assert await page.locator("h1").inner_text() == {"sv": "Dina personuppgifter hos ISOPARTNER AB",
                                                             "en": "Your personal data at ISOPARTNER AB"}[lang]
            assert HOSTILE in await page.locator("table").first.inner_text(), "subject data shown as text"
            await screenshot(page, "access-report", lang)
            await assert_accessible(page)
