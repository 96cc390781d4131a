"""The office web app: the pages kit's base (sessions, CSRF, headers, forms, error pages) with the
office's runtime, its sign-in check and its pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from privacy_runtime import vocabulary
from privacy_runtime.datamap import load_data_map
from privacy_runtime.pages.app import KIT, create_base_app
from privacy_runtime.pages.ratelimit import RateLimiter
from services.office import views
from services.office.client import SERVICE_NAMES, Services
from services.office.operators import parse_operators
from services.office.runtime import OfficeRuntime
from services.office.settings import OfficeSettings
from services.office.texts import MESSAGES

TEMPLATES = Path(__file__).with_name("templates")
SESSION_COOKIE = "office_session"


def create_app(settings: OfficeSettings, runtime: OfficeRuntime | None = None,
               services: Services | None = None) -> web.Application:
    """`runtime` and `services` stand in for the real ones in tests of the pages alone."""
    runtime = runtime or OfficeRuntime(settings)
    # Swedish and English like every page people use: the kit's switch, Accept-Language, then Swedish.
    app = create_base_app(runtime, templates=TEMPLATES, messages=MESSAGES, session_cookie=SESSION_COOKIE,
                          idle_seconds=int(settings.office_session_idle_seconds), public_url=settings.public_url())
    vocabulary.install(app[KIT].env)
    app.middlewares.append(views.require_operator)
    app[views.RUNTIME] = runtime
    app[views.OPERATORS] = parse_operators(settings.office_operators.get_secret_value())
    app[views.ADMIN_TOKEN] = settings.admin_token.get_secret_value()
    app[views.DATA_MAP] = load_data_map(settings.data_map_path)
    app[views.SIGN_IN_LIMIT] = RateLimiter(limit=10, window_seconds=300)
    app[views.DLQ_PER_TOPIC] = settings.office_dead_letters_per_topic

    async def clients(app: web.Application) -> AsyncIterator[None]:
        app[views.SERVICES] = services or Services({name: settings.service_url(name) for name in SERVICE_NAMES},
                                                   settings.admin_token.get_secret_value())
        yield
        await app[views.SERVICES].close()

    app.cleanup_ctx.append(clients)
    app.add_routes(views.routes)
    return app
