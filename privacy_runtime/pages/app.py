"""The aiohttp base of every people-facing web app (privacy center, office).

`create_base_app(...)` gives an `aiohttp.web.Application` with:

- the runtime's lifespan (pool, producer, outbox relay start and stop with the app);
- security headers and a strict Content-Security-Policy on every answer;
- a signed session cookie (HttpOnly, SameSite=Lax, Secure over https, idle timeout), re-sent on
  every page so the timeout is an idle one;
- the page language (`?lang=` switch, remembered in a cookie; Accept-Language; Swedish); the switch
  links to the same page with its query, so filters and searches survive it;
- every POST read as a bounded form and checked for the CSRF token bound to the session (403 if
  not), so handlers find the form in `request[FORM]`;
- error pages for every 4xx in the page's language, a logged 500 page for our own faults;
- `/static/pages.css`, `/metrics`, `/healthz`, `/readyz`.

Handlers answer with `render(request, "page.html.j2", **values)` and `see_other(path)`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from privacy_runtime import metrics
from privacy_runtime.pages.forms import MAX_FORM_BYTES, Form, FormError, parse_form
from privacy_runtime.pages.i18n import LANGUAGES, Catalogue, choose_language
from privacy_runtime.pages.rendering import STYLESHEET, environment, kit_catalogue, page_context, render_page
from privacy_runtime.pages.runtime import PageRuntime
from privacy_runtime.pages.security import CSRF_FIELD, Session, SessionCodec, security_headers

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KIT: web.AppKey[PagesKit] = web.AppKey("pages_kit")
#: Per request: the session (or None), the language, the submitted form.
SESSION: web.RequestKey[Session] = web.RequestKey("pages_session", Session)
LANG: web.RequestKey[str] = web.RequestKey("pages_lang", str)
FORM: web.RequestKey[Form] = web.RequestKey("pages_form", Form)
COOKIE_SET: web.RequestKey[bool] = web.RequestKey("pages_cookie_set", bool)
LANG_SET: web.RequestKey[bool] = web.RequestKey("pages_lang_set", bool)
LANG_COOKIE = "lang"
#: Paths that are not pages: no session, no language, no CSRF (machines call them).
MACHINE_PATHS = ("/metrics", "/healthz", "/readyz", "/static/")


@dataclass
class PagesKit:
    runtime: PageRuntime
    env: jinja2.Environment
    catalogue: Catalogue
    sessions: SessionCodec
    session_cookie: str
    https: bool
    contact_email: str
    language: str | None = None


def create_base_app(
    runtime: PageRuntime,
    *,
    templates: Path | None,
    messages: dict[str, dict[str, str]] | None = None,
    session_cookie: str,
    idle_seconds: int,
    public_url: str,
    max_form_bytes: int = MAX_FORM_BYTES,
    language: str | None = None,
) -> web.Application:
    """`language`: every page in this one language, no switch (an internal tool in one language)."""
    settings = runtime.settings
    kit = PagesKit(
        runtime=runtime,
        env=environment(templates),
        catalogue=kit_catalogue(messages),
        sessions=SessionCodec(settings.master_key(), runtime.name, idle_seconds, settings.previous_master_key()),
        session_cookie=session_cookie,
        https=public_url.lower().startswith("https://"),
        contact_email=settings.privacy_contact_email,
        language=language,
    )
    app = web.Application(
        client_max_size=max_form_bytes,
        middlewares=[_errors, _headers, _session_and_language, _csrf],
    )
    app[KIT] = kit
    app.router.add_get("/static/pages.css", _stylesheet, name="stylesheet")
    app.router.add_get("/metrics", _metrics, name="metrics")
    app.router.add_get("/healthz", _healthz, name="healthz")
    app.router.add_get("/readyz", _readyz, name="readyz")

    async def lifespan(_: web.Application) -> AsyncIterator[None]:
        await runtime.start()
        yield
        await runtime.stop()

    app.cleanup_ctx.append(lifespan)
    return app


def kit_of(request: web.Request) -> PagesKit:
    return request.app[KIT]


# --- what handlers use ---------------------------------------------------------------------------


def session_of(request: web.Request) -> Session:
    """The request's session, created when there is none (a page with a form needs one)."""
    session: Session | None = request.get(SESSION)
    if session is None:
        session = Session()
        request[SESSION] = session
    return session


def lang_of(request: web.Request) -> str:
    return str(request.get(LANG, "sv"))


def form_of(request: web.Request) -> Form:
    form: Form | None = request.get(FORM)
    return form if form is not None else Form()


def context_of(request: web.Request, switch_to: str | None = None) -> dict[str, Any]:
    """`switch_to`: the page the language switch leads to, when this one answers a form (a POST path
    cannot be opened by a link); by default the page itself with its query."""
    kit = kit_of(request)
    session = session_of(request)
    if switch_to is not None:
        path, query = switch_to, None
    else:
        path, query = request.path, request.query
    context = page_context(kit.catalogue, lang_of(request), path=path, query=query,
                           csrf_token=kit.sessions.csrf_token(session), contact_email=kit.contact_email)
    if kit.language:
        context["languages"] = []  # one language: no switch
    return context


def text(request: web.Request, key: str, **values: object) -> str:
    return kit_of(request).catalogue.text(lang_of(request), key, **values)


def render(request: web.Request, template: str, *, status: int = 200, switch_to: str | None = None,
           **values: Any) -> web.Response:
    kit = kit_of(request)
    body = render_page(kit.env, template, {**context_of(request, switch_to), **values})
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def see_other(location: str) -> web.HTTPSeeOther:
    """After a POST: the browser GETs the answer page (a reload never submits twice)."""
    if not location.startswith("/") or location.startswith("//"):
        location = "/"  # only ever to ourselves
    return web.HTTPSeeOther(location)


class PageError(Exception):
    """A 4xx page with a message from the catalogue (`key`), or the status's own message."""

    def __init__(self, status: int, key: str | None = None, **values: object):
        super().__init__(key or str(status))
        self.status = status
        self.key = key
        self.values = values


# --- middlewares -------------------------------------------------------------------------------


def _error_page(request: web.Request, status: int, message: str | None = None) -> web.Response:
    kit = kit_of(request)
    lang = lang_of(request)
    if message is None:
        key = f"kit.error.{status}"
        message = kit.catalogue.text(lang, key if kit.catalogue.has(key) else "kit.error.400")
    try:
        # An error answering a form: the switch leads to the start page (the form's path takes no GET).
        switch_to = None if request.method in ("GET", "HEAD") else "/"
        return render(request, "error.html.j2", status=status, switch_to=switch_to, message=message)
    except Exception:  # the error page itself must never fail
        log.exception("error page failed")
        return web.Response(text=message, status=status, content_type="text/plain")


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    route = request.match_info.route.name or "unmatched"
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        if status < 400:
            raise
        if request.path.startswith(MACHINE_PATHS):
            raise
        page = _error_page(request, status)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                page.headers[name] = exc.headers[name]
        _finish(request, page)
        return page
    except PageError as exc:
        status = exc.status
        message = text(request, exc.key, **exc.values) if exc.key else None
        page = _error_page(request, exc.status, message)
        _finish(request, page)
        return page
    except FormError as exc:
        status = exc.status
        page = _error_page(request, exc.status)
        _finish(request, page)
        return page
    except Exception:
        log.exception("unhandled error on %s %s", request.method, route)
        page = _error_page(request, 500)
        _finish(request, page)
        return page
    finally:
        metrics.HTTP_REQUESTS.labels(route=route, status=str(status)).inc()
        metrics.HTTP_REQUEST_SECONDS.labels(route=route).observe(time.perf_counter() - started)


def _https(request: web.Request) -> bool:
    return kit_of(request).https or request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        # Redirects and machine errors pass through here as exceptions: they get the headers too.
        exc.headers.update(security_headers(https=_https(request)))
        _finish(request, exc)
        raise
    for name, value in security_headers(https=_https(request)).items():
        response.headers.setdefault(name, value)
    _finish(request, response)
    return response


def _finish(request: web.Request, response: web.StreamResponse) -> None:
    """Send the session cookie (sliding idle timeout) and the language choice with the answer."""
    if response.prepared:
        return
    kit = kit_of(request)
    for name, value in security_headers(https=_https(request)).items():
        response.headers.setdefault(name, value)
    session: Session | None = request.get(SESSION)
    if session is not None and not request.get(COOKIE_SET):
        request[COOKIE_SET] = True
        response.set_cookie(kit.session_cookie, kit.sessions.dump(session), httponly=True, samesite="Lax",
                            secure=_https(request), path="/", max_age=kit.sessions.idle_seconds)
    if request.query.get("lang") in LANGUAGES and not request.get(LANG_SET):
        request[LANG_SET] = True
        response.set_cookie(LANG_COOKIE, str(request.query["lang"]), samesite="Lax", secure=_https(request),
                            path="/", max_age=365 * 86400, httponly=True)


@web.middleware
async def _session_and_language(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(MACHINE_PATHS):
        return await handler(request)
    kit = kit_of(request)
    session = kit.sessions.load(request.cookies.get(kit.session_cookie))
    if session is not None:
        request[SESSION] = session
    request[LANG] = kit.language or choose_language(request.query.get("lang"), request.cookies.get(LANG_COOKIE),
                                                    request.headers.get("Accept-Language"))
    return await handler(request)


@web.middleware
async def _csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in ("GET", "HEAD", "OPTIONS") or request.path.startswith(MACHINE_PATHS):
        return await handler(request)
    if request.match_info.http_exception is not None:
        raise request.match_info.http_exception  # unknown path or method: 404/405 before reading
    if request.content_length is not None and request.content_length > request.app._client_max_size:
        raise FormError(413, "form too large")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise FormError(413, "form too large") from None
    form = parse_form(body, request.headers.get("Content-Type"))
    session: Session | None = request.get(SESSION)
    if not kit_of(request).sessions.csrf_ok(session, form.get(CSRF_FIELD)):
        raise PageError(403)
    request[FORM] = form
    return await handler(request)


# --- machine endpoints ---------------------------------------------------------------------------


async def _stylesheet(request: web.Request) -> web.Response:
    return web.Response(body=STYLESHEET.read_bytes(), content_type="text/css", charset="utf-8",
                        headers={"Cache-Control": "public, max-age=3600"})


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": kit_of(request).runtime.name})


async def _readyz(request: web.Request) -> web.Response:
    checks = await kit_of(request).runtime.ready()
    return web.json_response({"ready": checks is not None, "checks": checks or {}},
                             status=200 if checks is not None else 503)


def run(app: web.Application, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; the lifespan stops the runtime (relay drained) on the way out."""
    web.run_app(app, host=host, port=port, print=None, access_log=None, shutdown_timeout=10)
