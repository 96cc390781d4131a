"""Consent stream handlers: one agent per topic, each a thin call into the ledger or the inbox."""

from __future__ import annotations

from typing import Any

import asyncpg

from privacy_runtime.processor import Inbound
from schemas.topics import CONSENT_CHANGED, DSAR_REQUESTED, PRIVACY_ACKS, USER_REGISTERED, command_topic
from services.consent.app import SYSTEM_ID, app, inbox, ledger, runtime, tracker


async def record_acks(conn: asyncpg.Connection, batch: list[Inbound]) -> None:
    for item in batch:
        ack = item.data
        await tracker.acknowledge(
            conn, command_id=str(ack.command_id), system=str(ack.system), status=str(ack.status), detail=ack.detail
        )


@app.agent(runtime.topic(USER_REGISTERED))
async def on_user_registered(stream: Any) -> None:
    await runtime.processor(USER_REGISTERED, ledger.record_registrations).consume(stream)


@app.agent(runtime.topic(CONSENT_CHANGED))
async def on_consent_changed(stream: Any) -> None:
    await runtime.processor(CONSENT_CHANGED, ledger.record_changes).consume(stream)


@app.agent(runtime.topic(DSAR_REQUESTED))
async def on_dsar_requested(stream: Any) -> None:
    await runtime.processor(DSAR_REQUESTED, ledger.record_objections).consume(stream)


@app.agent(runtime.topic(PRIVACY_ACKS))
async def on_privacy_acks(stream: Any) -> None:
    await runtime.processor(PRIVACY_ACKS, record_acks).consume(stream)


@app.agent(runtime.topic(command_topic(SYSTEM_ID)))
async def on_commands(stream: Any) -> None:
    await runtime.processor(command_topic(SYSTEM_ID), inbox.handle).consume(stream)
