"""Versioned SQL migrations, applied at start-up under an advisory lock.

The runtime's own files (`privacy_runtime/sql`) come first, then the service's. Each file runs once,
in a transaction, and is recorded in `schema_migrations`.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import asyncpg

from privacy_runtime.crypto import KeyRing
from privacy_runtime.db import create_pool
from privacy_runtime.settings import ServiceSettings

log = logging.getLogger(__name__)

RUNTIME_SQL = Path(__file__).with_name("sql")
#: The key store's own migrations (the wrapped subject keys), when it is another database.
KEYSTORE_SQL = Path(__file__).with_name("keystore_sql")


def migration_files(service_sql: Path) -> list[tuple[str, Path]]:
    files = [(f"runtime/{p.name}", p) for p in sorted(RUNTIME_SQL.glob("*.sql"))]
    files += [(f"service/{p.name}", p) for p in sorted(service_sql.glob("*.sql"))]
    return files


def keystore_migration_files() -> list[tuple[str, Path]]:
    return [(f"keystore/{p.name}", p) for p in sorted(KEYSTORE_SQL.glob("*.sql"))]


async def apply_migrations(pool: asyncpg.Pool, schema: str, service_sql: Path) -> list[str]:
    return await _apply(pool, schema, migration_files(service_sql))


async def apply_keystore_migrations(pool: asyncpg.Pool, schema: str) -> list[str]:
    """The key store's tables, in the service's schema of the key store's database."""
    return await _apply(pool, schema, keystore_migration_files())


async def _apply(pool: asyncpg.Pool, schema: str, files: list[tuple[str, Path]]) -> list[str]:
    applied: list[str] = []
    lock_id = int(hashlib.sha256(f"migrate:{schema}".encode()).hexdigest()[:15], 16)
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", lock_id)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for name, path in files:
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                applied.append(name)
                log.info("applied migration %s to schema %s", name, schema)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_id)
    return applied


async def open_service_schema(
    settings: ServiceSettings, schema: str, sql_dir: Path, keyring: KeyRing
) -> tuple[asyncpg.Pool, asyncpg.Pool | None]:
    """The service's pool on its schema, migrated; the key store's own pool when the wrapped keys live
    apart (KEYSTORE_DATABASE_URL), else None; and the key ring ready (its lookup key loaded)."""
    pool = await create_pool(settings.database_url, schema)
    await apply_migrations(pool, schema, sql_dir)
    keystore_pool = None
    if settings.separate_keystore():
        keystore_pool = await create_pool(settings.keystore_url(), schema, min_size=1)
        await apply_keystore_migrations(keystore_pool, schema)
        keyring.use_keystore(keystore_pool)
    async with pool.acquire() as conn:
        await keyring.load_lookup_key(conn)
    return pool, keystore_pool
