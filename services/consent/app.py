"""Consent service wiring: the faust app, the runtime, and the objects agents and views share."""

from __future__ import annotations

import asyncio
from pathlib import Path

from privacy_runtime.commands import CommandPolicy, CommandTracker, resend_loop
from privacy_runtime.inbox import CommandInbox
from privacy_runtime.notifications import Listener
from privacy_runtime.service import ServiceRuntime
from privacy_runtime.tokens import UNSUBSCRIBE, TokenSigner
from services.consent import seals
from services.consent.decision_cache import DecisionCache
from services.consent.downstream import consent_actions
from services.consent.ledger import Ledger
from services.consent.settings import ConsentSettings

SYSTEM_ID = "consent"

settings = ConsentSettings()  # type: ignore[call-arg]  # values come from the environment
runtime = ServiceRuntime(SYSTEM_ID, settings, Path(__file__).with_name("migrations"), settings.consent_web_port)
app = runtime.app

# an opt-out must be applied, not just answered
tracker = CommandTracker(CommandPolicy.from_settings(settings, retry_failed=True))
ledger = Ledger(runtime, tracker)
inbox = CommandInbox(SYSTEM_ID, consent_actions(settings, ledger))
decision_cache = DecisionCache(settings.decision_cache_subjects)
decision_listener = Listener(
    settings.database_url, f"{SYSTEM_ID}_decisions", decision_cache.notified,  # migration 0007's channel
    on_ready=decision_cache.start, on_lost=decision_cache.stop,
    check_seconds=settings.decision_cache_check_seconds, timeout_seconds=settings.decision_cache_timeout_seconds,
)
unsubscribe_tokens = TokenSigner(settings.master_key(), UNSUBSCRIBE, settings.previous_master_key())


@runtime.on_started
async def resend_commands() -> None:
    await resend_loop(runtime, tracker)


@runtime.on_started
async def anchor_ledger_seals() -> None:
    while True:
        await asyncio.sleep(settings.ledger_anchor_seconds)
        async with runtime.transaction() as tx:
            await seals.anchor(tx)


@runtime.on_started
async def keep_decision_cache_fresh() -> None:
    if settings.decision_cache_subjects > 0:
        await decision_listener.run()


async def _decision_cache_synced() -> None:
    """Before the relay publishes: every change committed before its rows has reached the cache.

    The rows it took were committed (with their notifications queued) before it took them, so a sync
    sent now returns after their notifications: a withdrawal's subject is dropped here before its
    command leaves. A sync that fails drops the whole cache (decisions from SQL) instead."""
    if decision_cache.live:
        await decision_listener.sync()


runtime.before_publish.append(_decision_cache_synced)
