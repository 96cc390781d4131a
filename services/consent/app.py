"""Consent service wiring: `create_service(settings)` builds the runtime and the objects handlers and
views share, and registers its streams, routes and background loops on it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from privacy_runtime.commands import CommandPolicy, CommandTracker, resend_loop
from privacy_runtime.inbox import CommandInbox
from privacy_runtime.notifications import Listener
from privacy_runtime.service import ServiceRuntime
from privacy_runtime.tokens import UNSUBSCRIBE, TokenSigner
from services.consent import handlers, seals, views
from services.consent.decision_cache import DecisionCache
from services.consent.downstream import consent_actions
from services.consent.ledger import Ledger
from services.consent.settings import ConsentSettings

SYSTEM_ID = "consent"


@dataclass(frozen=True)
class ConsentService:
    settings: ConsentSettings
    runtime: ServiceRuntime
    tracker: CommandTracker
    ledger: Ledger
    inbox: CommandInbox
    decision_cache: DecisionCache
    decision_listener: Listener
    unsubscribe_tokens: TokenSigner


def create_service(settings: ConsentSettings) -> ConsentService:
    runtime = ServiceRuntime(SYSTEM_ID, settings, Path(__file__).with_name("migrations"), settings.consent_web_port)
    # An opt-out must be applied, not just answered: a failed one is re-sent.
    tracker = CommandTracker(CommandPolicy.from_settings(settings, retry_failed=True))
    ledger = Ledger(runtime, tracker)
    decision_cache = DecisionCache(settings.decision_cache_subjects)
    service = ConsentService(
        settings=settings,
        runtime=runtime,
        tracker=tracker,
        ledger=ledger,
        inbox=CommandInbox(SYSTEM_ID, consent_actions(settings, ledger)),
        decision_cache=decision_cache,
        decision_listener=Listener(
            settings.database_url, f"{SYSTEM_ID}_decisions", decision_cache.notified,  # migration 0007's channel
            on_ready=decision_cache.start, on_lost=decision_cache.stop,
            check_seconds=settings.decision_cache_check_seconds,
            timeout_seconds=settings.decision_cache_timeout_seconds,
        ),
        unsubscribe_tokens=TokenSigner(settings.master_key(), UNSUBSCRIBE, settings.previous_master_key()),
    )
    handlers.register_streams(service)
    views.add_routes(runtime.routes, service)
    _add_loops(service)
    return service


def _add_loops(service: ConsentService) -> None:
    runtime, settings = service.runtime, service.settings
    runtime.keep_running(resend_commands=partial(resend_loop, runtime, service.tracker))

    @runtime.on_started
    async def anchor_ledger_seals() -> None:
        while True:
            await asyncio.sleep(settings.ledger_anchor_seconds)
            async with runtime.transaction() as tx:
                await seals.anchor(tx)

    @runtime.on_started
    async def keep_decision_cache_fresh() -> None:
        if settings.decision_cache_subjects > 0:
            await service.decision_listener.run()

    async def decision_cache_synced() -> None:
        """Before the relay publishes: every change committed before its rows has reached the cache.

        The rows it took were committed (with their notifications queued) before it took them, so a
        sync sent now returns after their notifications: a withdrawal's subject is dropped here before
        its command leaves. A sync that fails drops the whole cache (decisions from SQL) instead."""
        if service.decision_cache.live:
            await service.decision_listener.sync()

    runtime.before_publish.append(decision_cache_synced)
