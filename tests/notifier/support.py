"""In-process notifier parts on a PostgreSQL schema of their own (no Kafka, no faust)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from privacy_runtime.audit import AuditTrail
from privacy_runtime.crypto import KeyRing
from privacy_runtime.migrations import apply_migrations
from privacy_runtime.outbox import Outbox
from services.notifier import store
from services.notifier.settings import NotifierSettings
from tests.helpers import TEST_MASTER_KEY

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "notifier" / "migrations"
PAGE = 7


class Runtime:
    """The slice of ServiceRuntime the notifier's intake, fan-out and sender use."""

    def __init__(self, pool: asyncpg.Pool, settings: NotifierSettings):
        self.pool = pool
        self.settings = settings
        self.keyring = KeyRing(settings.master_key())
        self.outbox = Outbox(self.keyring, source="urn:test:notifier")
        self.audit = AuditTrail(self.outbox, actor="service:notifier-test")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """As ServiceRuntime.transaction: keys created inside are cached only once it commits."""
        async with self.pool.acquire() as conn:
            self.keyring.discard_pending(conn)
            try:
                async with conn.transaction():
                    yield conn
            except BaseException:
                self.keyring.discard_pending(conn)
                raise
            self.keyring.commit_pending(conn)


@asynccontextmanager
async def scratch_runtime(dsn: str, **settings: Any) -> AsyncIterator[Runtime]:
    """A Runtime on a fresh schema with the notifier's migrations, dropped afterwards."""
    schema = f"notifier_t{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, server_settings={"search_path": schema})
    assert pool is not None
    try:
        await apply_migrations(pool, schema, MIGRATIONS)
        options: dict[str, Any] = {"fanout_page_size": PAGE, **settings}
        runtime = Runtime(pool, NotifierSettings(privacy_master_key=TEST_MASTER_KEY, database_url=dsn, **options))
        async with pool.acquire() as conn:
            await runtime.keyring.load_lookup_key(conn)
        yield runtime
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def fill_directory(
    runtime: Runtime, subjects: list[str], *, domain: str = "fo.example", restricted: bool = False
) -> list[str]:
    async with runtime.transaction() as conn:
        await runtime.keyring.ensure_keys(conn, set(subjects))
        await store.upsert_recipients(
            conn,
            [
                store.DirectoryRow(
                    subject=s,
                    email_sealed=runtime.keyring.encrypt_cached(s, "email", f"{s}@{domain}") or b"",
                    name_sealed=runtime.keyring.encrypt_cached(s, "name", "Test Person"),
                    email_hash=runtime.keyring.keyed_hash("email", f"{s}@{domain}"),
                    locale="sv",
                    country="SE",
                    registered_at=datetime.now(UTC),
                )
                for s in subjects
            ],
        )
        if restricted:
            for s in subjects:
                await store.set_restricted(conn, s, True)
    return sorted(subjects)
