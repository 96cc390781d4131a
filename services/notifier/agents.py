"""Notifier stream handlers: one agent per topic, each a thin call into the intake or the inbox."""

from __future__ import annotations

from typing import Any

from schemas.topics import (
    LEGAL_DISCLOSURE,
    MERGER_NOTICE,
    NOTIFICATION_REQUESTED,
    POLICY_CHANGED,
    USER_REGISTERED,
    command_topic,
)
from services.notifier.app import SYSTEM_ID, app, inbox, intake, runtime


@app.agent(runtime.topic(USER_REGISTERED))
async def on_user_registered(stream: Any) -> None:
    await runtime.processor(USER_REGISTERED, intake.record_registrations).consume(stream)


@app.agent(runtime.topic(NOTIFICATION_REQUESTED))
async def on_notification_requested(stream: Any) -> None:
    await runtime.processor(NOTIFICATION_REQUESTED, intake.queue_requested).consume(stream)


@app.agent(runtime.topic(MERGER_NOTICE))
async def on_merger_notice(stream: Any) -> None:
    await runtime.processor(MERGER_NOTICE, intake.start_merger_fanouts).consume(stream)


@app.agent(runtime.topic(POLICY_CHANGED))
async def on_policy_changed(stream: Any) -> None:
    await runtime.processor(POLICY_CHANGED, intake.start_policy_fanouts).consume(stream)


@app.agent(runtime.topic(LEGAL_DISCLOSURE))
async def on_legal_disclosure(stream: Any) -> None:
    await runtime.processor(LEGAL_DISCLOSURE, intake.queue_disclosures).consume(stream)


@app.agent(runtime.topic(command_topic(SYSTEM_ID)))
async def on_commands(stream: Any) -> None:
    await runtime.processor(command_topic(SYSTEM_ID), inbox.handle).consume(stream)
