"""A stream service built by `create_service(settings)` and driven in-process, without the worker shell:
one event in from Kafka, its state over HTTP, its command out through the outbox relay."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from devstack.stack import Stack
from schemas.events import ConsentChanged
from schemas.topics import CONSENT_CHANGED, command_topic
from services.consent.app import create_service
from services.consent.settings import ConsentSettings
from tests.helpers import TEST_MASTER_KEY, event_of, get_json, publish, subject_id, wait_for_messages, wait_until

pytestmark = pytest.mark.stack


@asynccontextmanager
async def fresh_database(dsn: str) -> AsyncIterator[str]:
    """A database of its own on the suite's PostgreSQL, so the service's schema starts empty."""
    name = f"in_process_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield dsn.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_a_service_built_in_process_applies_an_event_and_publishes_its_command(
    stack: Stack, tmp_path: Path
) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    async with fresh_database(stack.endpoints.database_url) as dsn:
        service = create_service(ConsentSettings(
            privacy_master_key=TEST_MASTER_KEY, database_url=dsn, kafka_bootstrap_servers=bootstrap,
            consumer_group=f"in-process-{uuid.uuid4().hex[:8]}", state_dir=tmp_path,
        ))
        http = web.Application()
        service.runtime.routes.mount(http)
        async with service.runtime, TestServer(http) as server:
            status, ready = await get_json(str(server.make_url("/readyz")))
            assert (status, ready["ready"]) == (200, True), ready

            subject = subject_id("inproc")
            await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
                purpose="marketing_email", granted=False, channel="email_footer", policy_version="2021-10-30",
            ), subject=subject)

            async def withdrawn() -> Any:
                status, body = await get_json(str(server.make_url(f"/v1/subjects/{subject}/consents")))
                if status != 200:
                    return None
                purposes = {p["purpose"]: p for p in body["purposes"]}
                consent = purposes["marketing_email"]["consent"]
                return body if consent is not None and consent["granted"] is False else None

            await wait_until(withdrawn, timeout=60, what="the withdrawal applied and readable over HTTP")

            def suppress_for_subject(message: Any) -> bool:
                event = event_of(message)
                return event is not None and event["subject"] == subject and event["data"]["action"] == "suppress"

            await wait_for_messages(bootstrap, command_topic("marketing_email"), suppress_for_subject, timeout=60)


async def test_a_service_started_with_a_previous_master_key_rewraps_the_keys_under_it(
    stack: Stack, tmp_path: Path
) -> None:
    """Master key rotation while serving: the runtime's background pass moves every data key to the current
    master key (the lookup key too), in units of work of its own."""
    old, new = base64.b64encode(b"o" * 32).decode(), base64.b64encode(b"n" * 32).decode()
    async with fresh_database(stack.endpoints.database_url) as dsn:
        def settings(**keys: str) -> ConsentSettings:
            return ConsentSettings(database_url=dsn, kafka_bootstrap_servers=stack.endpoints.kafka_bootstrap,
                                   consumer_group=f"in-process-{uuid.uuid4().hex[:8]}", state_dir=tmp_path, **keys)

        before = create_service(settings(privacy_master_key=old)).runtime
        async with before:
            async with before.transaction() as tx:
                for n in range(3):
                    assert await tx.keys.data_key(f"rotated-{n}") is not None
            async with before.pool.acquire() as conn:
                assert await before.keyring.keys_under_other_masters(conn) == 0

        after = create_service(settings(privacy_master_key=new, privacy_master_key_previous=old)).runtime
        async with after:
            async def left() -> bool:
                async with after.pool.acquire() as conn:
                    return await after.keyring.keys_under_other_masters(conn) == 0

            await wait_until(left, timeout=60, what="every key re-wrapped under the current master key")
            current = create_service(settings(privacy_master_key=new)).runtime.keyring  # the old key gone
            async with after.pool.acquire() as conn:
                await current.load_lookup_key(conn)
                assert await current.data_key(conn, "rotated-0", create=False) is not None
