"""Consent service wiring: the faust app, the runtime, and the objects agents and views share."""

from __future__ import annotations

import asyncio
from pathlib import Path

from privacy_runtime.commands import CommandPolicy, CommandTracker, resend_loop
from privacy_runtime.inbox import CommandInbox
from privacy_runtime.service import ServiceRuntime
from privacy_runtime.tokens import UNSUBSCRIBE, TokenSigner
from services.consent import seals
from services.consent.downstream import consent_actions
from services.consent.ledger import Ledger
from services.consent.settings import ConsentSettings

SYSTEM_ID = "consent"

settings = ConsentSettings()  # type: ignore[call-arg]  # values come from the environment
runtime = ServiceRuntime(SYSTEM_ID, settings, Path(__file__).with_name("migrations"), settings.consent_web_port)
app = runtime.app

tracker = CommandTracker(
    runtime.outbox,
    runtime.audit,
    runtime.keyring,
    CommandPolicy.from_settings(settings, retry_failed=True),  # an opt-out must be applied, not just answered
)
ledger = Ledger(runtime, tracker)
inbox = CommandInbox(runtime, SYSTEM_ID, consent_actions(runtime, settings.policy_url, ledger))
unsubscribe_tokens = TokenSigner(settings.master_key(), UNSUBSCRIBE, settings.previous_master_key())


@runtime.on_started
async def resend_commands() -> None:
    await resend_loop(runtime, tracker)


@runtime.on_started
async def anchor_ledger_seals() -> None:
    while True:
        await asyncio.sleep(settings.ledger_anchor_seconds)
        async with runtime.transaction() as conn:
            await seals.anchor(conn, runtime.audit)
