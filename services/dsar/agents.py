"""DSAR stream handlers: one agent per topic, each a thin call into the workflow or the inbox."""

from __future__ import annotations

from typing import Any

from schemas.topics import DSAR_REQUESTED, ERASURE_REQUESTED, PRIVACY_ACKS, command_topic
from services.dsar.app import SYSTEM_ID, app, inbox, runtime, workflow


@app.agent(runtime.topic(ERASURE_REQUESTED))
async def on_erasure_requested(stream: Any) -> None:
    await runtime.processor(ERASURE_REQUESTED, workflow.on_erasure_requested).consume(stream)


@app.agent(runtime.topic(DSAR_REQUESTED))
async def on_dsar_requested(stream: Any) -> None:
    await runtime.processor(DSAR_REQUESTED, workflow.on_dsar_requested).consume(stream)


@app.agent(runtime.topic(PRIVACY_ACKS))
async def on_privacy_acks(stream: Any) -> None:
    await runtime.processor(PRIVACY_ACKS, workflow.on_acks).consume(stream)


@app.agent(runtime.topic(command_topic(SYSTEM_ID)))
async def on_commands(stream: Any) -> None:
    await runtime.processor(command_topic(SYSTEM_ID), inbox.handle).consume(stream)
