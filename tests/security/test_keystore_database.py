"""KEYSTORE_DATABASE_URL: the wrapped subject keys live in another database than the data they open
(here a second database on the stack's PostgreSQL server), so a backup of the data holds no key; an
erasure still shreds (the key goes from the key store, the tombstone stays with the data)."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devstack.stack import Stack
from privacy_runtime.crypto import KeyRing
from privacy_runtime.migrations import apply_keystore_migrations
from tests.helpers import TEST_MASTER_KEY, ServiceProcess, scratch_schema, wait_until
from tests.notifier.test_notifier_e2e import command, register

pytestmark = pytest.mark.stack

#: The runtime's tables only (no service's).
NO_SERVICE_SQL = Path(__file__).resolve().parents[1] / "runtime" / "no_service_sql"


@pytest.fixture(scope="module")
async def keystore_url(stack: Stack) -> AsyncIterator[str]:
    main = stack.endpoints.database_url
    name = f"privacy_keys_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(main)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield main.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="module")
async def notifier(stack: Stack, keystore_url: str) -> AsyncIterator[ServiceProcess]:
    async with ServiceProcess("notifier", stack.env(), {"KEYSTORE_DATABASE_URL": keystore_url,
                                                        "EMAIL_IDLE_POLL_SECONDS": "0.2"}).running() as service:
        yield service


async def _count(dsn: str, query: str, *args: Any) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(query, *args))
    finally:
        await conn.close()


async def test_keys_live_in_the_key_store_and_erasure_still_shreds(stack: Stack, notifier: ServiceProcess, keystore_url: str) -> None:
    main = stack.endpoints.database_url
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = f"keystore-{uuid.uuid4().hex[:10]}"
    db = await asyncpg.connect(main, server_settings={"search_path": "notifier"})
    try:
        await register(bootstrap, db, [subject], "keystore.example")
        sealed = await db.fetchval("SELECT email_sealed FROM recipients WHERE subject = $1", subject)
        assert sealed is not None and b"keystore.example" not in bytes(sealed)
    finally:
        await db.close()

    in_keystore = "SELECT count(*) FROM notifier.subject_keys WHERE subject = $1"
    assert await _count(keystore_url, in_keystore, subject) == 1, "the key is in the key store"
    assert await _count(main, in_keystore, subject) == 0, "and not beside the data it opens"

    # The key in the key store opens the data; nothing in the main database does.
    keyring = KeyRing(base64.b64decode(TEST_MASTER_KEY))
    keys = await asyncpg.create_pool(keystore_url, min_size=1, max_size=1,
                                     server_settings={"search_path": "notifier"})
    data = await asyncpg.connect(main, server_settings={"search_path": "notifier"})
    try:
        await keyring.load_lookup_key(data)
        keyring.use_keystore(keys)
        assert await keyring.decrypt(data, subject, "email", sealed) == f"{subject}@keystore.example"

        ack = await command(bootstrap, subject, "erase")
        assert ack["status"] == "done", ack

        async def shredded() -> bool:
            return await _count(keystore_url, in_keystore, subject) == 0

        await wait_until(shredded, what="the key to be shredded from the key store")
        assert await keyring.is_erased(data, subject), "the tombstone stays with the data"
        keyring.forget(subject)
        assert await keyring.decrypt(data, subject, "email", sealed) is None, "the old ciphertext opens no more"
        assert await _count(main, in_keystore, subject) == 0
    finally:
        await data.close()
        await keys.close()


async def test_a_master_key_rotation_rewraps_the_keys_in_the_key_store(keystore_url: str, stack: Stack) -> None:
    """The KeyRing on its own, on a fresh schema in both databases: keys are created, re-wrapped under
    a new master key and shredded in the key store; the main database's `subject_keys` stays empty."""
    main = stack.endpoints.database_url
    old, new = os.urandom(32), os.urandom(32)
    async with scratch_schema(main, "keystore_t", NO_SERVICE_SQL) as data:
        schema = await data.fetchval("SELECT current_schema()")
        admin = await asyncpg.connect(keystore_url)
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        keys = await asyncpg.create_pool(keystore_url, min_size=1, max_size=2, server_settings={"search_path": schema})
        try:
            await apply_keystore_migrations(keys, schema)
            before = KeyRing(old)
            before.use_keystore(keys)
            async with data.acquire() as conn:
                await before.load_lookup_key(conn)
                pending: dict[str, bytes] = {}
                async with conn.transaction():
                    assert await before.ensure_keys(conn, {"ann", "bo"}, pending) == set()
                    sealed = before.encrypt_cached("ann", "email", "ann@example.com", pending)
                before.remember_committed(pending)
                after = KeyRing(new, old)
                after.use_keystore(keys)
                await after.load_lookup_key(conn)
                async with conn.transaction():
                    assert await after.rewrap_all(conn) == 2
                assert await after.keys_under_other_masters(conn) == 0
                assert await after.decrypt(conn, "ann", "email", sealed) == "ann@example.com"
                assert await conn.fetchval("SELECT count(*) FROM subject_keys") == 0
                async with conn.transaction():
                    assert await after.shred_subject(conn, "ann")
                assert await after.is_erased(conn, "ann")
            assert await keys.fetchval("SELECT array_agg(subject) FROM subject_keys") == ["bo"]
        finally:
            await keys.close()
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()
