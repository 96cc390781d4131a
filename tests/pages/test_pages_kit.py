"""The shared kit of the people-facing pages, on a tiny app: headers, sessions, CSRF, forms, errors,
languages; and in a real browser, its layout on a phone and a desktop with 0 axe-core violations."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from privacy_runtime.pages import app as pages
from privacy_runtime.pages.forms import FormError, parse_form
from privacy_runtime.pages.i18n import Catalogue, IncompleteCatalogue, both, choose_language, parse_accept_language
from privacy_runtime.pages.ratelimit import RateLimiter
from privacy_runtime.pages.rendering import switch_url
from privacy_runtime.pages.runtime import PageRuntime
from privacy_runtime.pages.security import CONTENT_SECURITY_POLICY, Session, SessionCodec
from privacy_runtime.settings import ServiceSettings
from tests.browser_kit import assert_accessible, assert_no_script, screenshot

KEY = base64.b64encode(b"p" * 32).decode()

PAGE = """{% extends "_base.html.j2" %}
{% block title %}{{ t("demo.title") }}{% endblock %}
{% block content %}
<h1>{{ t("demo.title") }}</h1>
<form method="post" action="/echo">
<input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<label for="name">{{ t("demo.name") }}</label>
<input id="name" name="name" type="text" autocomplete="name">
<button type="submit">{{ t("demo.send") }}</button>
</form>
{% if said is defined %}<p class="notice">{{ said }}</p>{% endif %}
{% endblock %}
"""
MESSAGES = {
    "demo.title": {"sv": "Exempelsida", "en": "Example page"},
    "demo.name": {"sv": "Ditt namn", "en": "Your name"},
    "demo.send": {"sv": "Skicka", "en": "Send"},
}


def demo_app(templates: Path) -> web.Application:
    (templates / "demo.html.j2").write_text(PAGE)
    settings = ServiceSettings(privacy_master_key=KEY)  # type: ignore[call-arg]
    app = pages.create_base_app(PageRuntime("demo", settings, None), templates=templates, messages=MESSAGES,
                                session_cookie="demo_session", idle_seconds=1800, public_url="http://x")

    async def show(request: web.Request) -> web.Response:
        return pages.render(request, "demo.html.j2")

    async def echo(request: web.Request) -> web.Response:
        return pages.render(request, "demo.html.j2", said=pages.form_of(request).get("name") or "")

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app.router.add_get("/", show)
    app.router.add_post("/echo", echo)
    app.router.add_get("/boom", boom)
    return app


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[str]:
    server = TestServer(demo_app(tmp_path), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def _token(client: httpx.AsyncClient) -> str:
    page = await client.get("/")
    marker = 'name="csrf_token" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start:page.text.index('"', start)]


# --- pure parts ------------------------------------------------------------------------------


def test_language_choice() -> None:
    assert choose_language(None, None, None) == "sv"
    assert choose_language(None, None, "en-GB,en;q=0.9") == "en"
    assert choose_language(None, None, "de-DE, en;q=0.5, sv;q=0.8") == "sv"
    assert choose_language(None, "en", "sv") == "en"
    assert choose_language("sv", "en", "en") == "sv"
    assert choose_language("xx", None, "fr") == "sv"
    assert parse_accept_language("en;q=0, sv;q=abc, de") == ["de"]


def test_the_switch_keeps_the_page_and_its_query() -> None:
    assert switch_url("/cases", {"q": "Åsa & co", "lang": "sv", "page": "2"}, "en") == \
        "/cases?q=%C3%85sa+%26+co&page=2&lang=en"
    assert switch_url("/", None, "sv") == "/?lang=sv"


def test_catalogue_tables_per_language() -> None:
    catalogue = Catalogue({"a": both("ett", "one"), "b": both("två", "two")})
    assert catalogue.table("sv") == {"a": "ett", "b": "två"} and catalogue.table("en") == {"a": "one", "b": "two"}


def test_catalogue_must_be_complete() -> None:
    with pytest.raises(IncompleteCatalogue):
        Catalogue({"a": {"sv": "x"}})
    assert Catalogue(MESSAGES).text("en", "demo.title") == "Example page"


def test_forms_are_bounded() -> None:
    form = parse_form(b"a=1&b=%C3%A5&a=2", "application/x-www-form-urlencoded; charset=utf-8")
    assert form.get("a") == "1" and form.getall("a") == ["1", "2"] and form.get("b") == "å"
    for body, ctype, status in [
        (b"a=1", "application/json", 415),
        (b"a=" + b"x" * 5000, "application/x-www-form-urlencoded", 413),
        (b"a=%FF", "application/x-www-form-urlencoded", 400),
        (b"a=%00", "application/x-www-form-urlencoded", 400),
        (b"&".join(b"f%d=1" % i for i in range(100)), "application/x-www-form-urlencoded", 400),
    ]:
        with pytest.raises(FormError) as caught:
            parse_form(body, ctype)
        assert caught.value.status == status, body[:20]


def test_sessions_are_signed_and_csrf_bound() -> None:
    codec = SessionCodec(b"k" * 32, "demo", 1800)
    session = Session(data={"who": "x"})
    loaded = codec.load(codec.dump(session))
    assert loaded is not None and loaded.sid == session.sid and loaded.get("who") == "x"
    assert codec.load(codec.dump(session)[:-2] + "xx") is None
    assert SessionCodec(b"j" * 32, "demo", 1800).load(codec.dump(session)) is None
    assert codec.csrf_ok(loaded, codec.csrf_token(loaded))
    assert not codec.csrf_ok(loaded, codec.csrf_token(Session()))
    assert not codec.csrf_ok(session, codec.csrf_token(session)), "a session never sent back has no valid token"


def test_rate_limiter() -> None:
    limiter = RateLimiter(limit=2, window_seconds=60)
    assert limiter.allow("a", 0) and limiter.allow("a", 1) and not limiter.allow("a", 2)
    assert limiter.allow("b", 2)
    assert limiter.allow("a", 61)


# --- the app -----------------------------------------------------------------------------------


async def test_headers_session_and_csrf(demo: str) -> None:
    async with httpx.AsyncClient(base_url=demo) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        cookie = page.headers["set-cookie"]
        assert "demo_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert "Secure" not in cookie  # plain http
        assert '<html lang="sv">' in page.text
        assert_no_script(page.text)
        token = await _token(client)
        ok = await client.post("/echo", data={"csrf_token": token, "name": "<script>alert(1)</script>"})
        assert ok.status_code == 200 and "&lt;script&gt;alert(1)&lt;/script&gt;" in ok.text
        assert "<script>alert" not in ok.text
        refused = await client.post("/echo", data={"name": "x"})
        assert refused.status_code == 403 and "csrf" not in refused.text.lower()
        wrong = await client.post("/echo", data={"name": "x", "csrf_token": token + "x"})
        assert wrong.status_code == 403
    async with httpx.AsyncClient(base_url=demo) as stranger:
        assert (await stranger.post("/echo", data={"csrf_token": token})).status_code == 403


async def test_bad_input_is_4xx_never_5xx(demo: str) -> None:
    async with httpx.AsyncClient(base_url=demo) as client:
        token = await _token(client)
        big = await client.post("/echo", content=b"csrf_token=" + token.encode() + b"&name=" + b"x" * 40_000,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413
        assert (await client.post("/echo", json={"csrf_token": token})).status_code == 415
        assert (await client.get("/nowhere")).status_code == 404
        not_allowed = await client.post("/", data={"csrf_token": token})
        assert not_allowed.status_code == 405
        refused = await client.post("/echo?x=1", data={"name": "no token"})
        assert refused.status_code == 403 and 'href="/?lang=en"' in refused.text  # the switch: a page to open
        assert (await client.get("/boom")).status_code == 500  # our own bug: logged, a page, no trace
        assert "RuntimeError" not in (await client.get("/boom")).text


async def test_language_switch_is_remembered(demo: str) -> None:
    async with httpx.AsyncClient(base_url=demo) as client:
        english = await client.get("/?lang=en")
        assert '<html lang="en">' in english.text and "Example page" in english.text
        assert '<html lang="en">' in (await client.get("/")).text
        assert '<html lang="en">' in (await client.get("/", headers={"Accept-Language": "sv"})).text
    async with httpx.AsyncClient(base_url=demo, headers={"Accept-Language": "en-US"}) as client:
        assert "Example page" in (await client.get("/")).text


@pytest.mark.browser
async def test_layout_in_a_browser(demo: str, phone_page: Any, desktop_page: Any) -> None:
    for page in (phone_page, desktop_page):
        for lang in ("sv", "en"):
            await page.goto(f"{demo}/?lang={lang}")
            await screenshot(page, "kit-demo", lang)
            await assert_accessible(page)
            await page.fill("#name", "Åsa <b>")
            await page.click("button[type=submit]")
            assert await page.locator(".notice").inner_text() == "Åsa <b>"
            await page.goto(f"{demo}/nowhere?lang={lang}")
            await screenshot(page, "kit-error", lang)
            await assert_accessible(page)
