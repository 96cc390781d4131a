"""The privacy center, built by `create_app(settings)`: the pages kit's base app, this service's
pages, its own schema and outbox, and the clients of the services it reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from aiohttp import web

from privacy_runtime import vocabulary
from privacy_runtime.datamap import load_data_map
from privacy_runtime.notice_secrets import NoticeSecrets
from privacy_runtime.pages.app import KIT, create_base_app
from privacy_runtime.pages.ratelimit import SharedRateLimiter, purge_rate_limits
from privacy_runtime.pages.runtime import PageRuntime
from privacy_runtime.tokens import MANAGE, TokenSigner
from services.privacy_center import erasure, store, views
from services.privacy_center.clients import Services, Unavailable
from services.privacy_center.settings import PrivacyCenterSettings
from services.privacy_center.texts import MESSAGES

log = logging.getLogger(__name__)

NAME = "privacy_center"
HERE = Path(__file__).parent
MONTHS = {
    "sv": ("januari februari mars april maj juni juli augusti september oktober november december").split(),
    "en": ("January February March April May June July August September October November December").split(),
}


def day(value: date | datetime, lang: str) -> str:
    """A date as a person reads it, in Swedish time: 7 december 2026 / 7 December 2026."""
    if isinstance(value, datetime):
        from zoneinfo import ZoneInfo

        value = value.astimezone(ZoneInfo("Europe/Stockholm")).date()
    return f"{value.day} {MONTHS.get(lang, MONTHS['sv'])[value.month - 1]} {value.year}"


def create_app(settings: PrivacyCenterSettings | None = None) -> web.Application:
    settings = settings or PrivacyCenterSettings()  # type: ignore[call-arg]  # from the environment
    runtime = PageRuntime(NAME, settings, HERE / "migrations", publishes=settings.outbox_relay)
    app = create_base_app(
        runtime, templates=HERE / "templates", messages=MESSAGES, session_cookie="privacy_center_session",
        idle_seconds=settings.session_idle_minutes * 60, public_url=settings.privacy_center_url,
    )
    app[KIT].env.filters["day"] = day
    vocabulary.install(app[KIT].env)
    center = views.Center(
        settings=settings,
        runtime=runtime,
        services=Services(settings),
        manage_tokens=TokenSigner(settings.master_key(), MANAGE, settings.previous_master_key()),
        notice_secrets=NoticeSecrets(settings.master_key(), settings.previous_master_key()),
        # Counted in this service's schema, so every replica draws on the same limits.
        email_per_address=SharedRateLimiter(lambda: runtime.pool, "email_address", settings.email_limit_per_address,
                                            views.HOUR),
        email_per_client=SharedRateLimiter(lambda: runtime.pool, "email_client", settings.email_limit_per_client,
                                           views.HOUR),
        code_per_client=SharedRateLimiter(lambda: runtime.pool, "code_client", settings.code_limit_per_client,
                                          views.HOUR),
        data_map=load_data_map(settings.data_map_path),
    )
    app[views.CENTER] = center
    views.add_routes(app)

    async def housekeeping(_: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_purge_loop(center), name="privacy-center-purge"),
                 asyncio.create_task(_erasure_loop(center), name="privacy-center-erasures")]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await center.services.close()

    app.cleanup_ctx.append(housekeeping)
    return app


async def _purge_loop(center: views.Center) -> None:
    while True:
        try:
            now = datetime.now(UTC)
            async with center.runtime.transaction() as tx:
                await store.purge(tx.conn, now, now - timedelta(days=center.settings.notes_retention_days))
                await purge_rate_limits(tx.conn)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("privacy center housekeeping failed; next pass in an hour")
        await asyncio.sleep(3600)


async def _erasure_loop(center: views.Center) -> None:
    """Erased subjects' notes deleted and their key here shredded (erasure.py), every few seconds."""
    await center.runtime.started.wait()
    while True:
        try:
            forgotten = await erasure.shred_erased(center.runtime, center.services)
            if forgotten:
                log.info("privacy center: %d erased subjects' notes deleted and keys shredded", forgotten)
        except asyncio.CancelledError:
            raise
        except Unavailable as exc:
            log.warning("erasure check: dsar did not answer (%s); next pass in %ss", exc,
                        center.settings.erasure_check_seconds)
        except Exception:
            log.exception("erasure check failed; next pass in %ss", center.settings.erasure_check_seconds)
        await asyncio.sleep(center.settings.erasure_check_seconds)
