"""PostgreSQL access: one pool per service, pinned to the service's own schema."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

log = logging.getLogger(__name__)

#: Errors that mean "the database cannot do it right now": wait and retry, never dead-letter.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    # Out of room in the shared lock table (53200) or other server resources (53000): the batch holds a
    # lock per subject; it waits for others to commit and release theirs, it is not a bad event.
    asyncpg.exceptions.InsufficientResourcesError,
    asyncio.TimeoutError,
    ConnectionError,
)


def inline_text(value: str) -> str:
    """A text value as SQL, for a statement without parameters (`OneTripTransaction`'s first and last
    statements): hex-encoded, so only [0-9a-f] reaches the SQL text whatever the value holds, and
    nothing in it can end the literal."""
    return f"convert_from(decode('{value.encode().hex()}', 'hex'), 'UTF8')"


class OneTripTransaction:
    """A transaction on `conn` whose BEGIN may carry its first statement and whose COMMIT its last, each
    pair in one simple query: on loopback every round trip costs both ends a send, and a short
    transaction is mostly round trips (asyncpg's own transaction sends BEGIN and COMMIT alone).

    A simple query takes no parameters: `first` and `last` are SQL a caller builds from values it
    formats itself (`subject_locks.lock_statement`). Inside, statements run as usual; asyncpg's
    `conn.transaction()` must not be nested in it (asyncpg refuses)."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def start(self, first: str | None = None) -> None:
        await self.conn.execute(f"BEGIN; {first}" if first else "BEGIN")

    async def commit(self, last: str | None = None) -> None:
        await self.conn.execute(f"{last}; COMMIT" if last else "COMMIT")

    async def rollback(self) -> None:
        """Roll back what is open, if anything (a failed start or commit leaves it open and aborted)."""
        if not self.conn.is_closed() and self.conn.is_in_transaction():
            await self.conn.execute("ROLLBACK")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Return a connection to the pool without the reset query (a round trip per transaction).

    Nothing outlives a transaction on a pooled connection: settings are transaction-local
    (`set_config(..., true)`), advisory locks transaction-scoped (the migrations' session lock is
    released in a `finally`), LISTEN runs on dedicated connections, and cursors close at commit.
    asyncpg still rolls back an open transaction and drops listeners before this is called."""


async def create_pool(
    dsn: str, schema: str, *, min_size: int = 2, max_size: int = 10, wait_seconds: float = 120.0
) -> asyncpg.Pool:
    """Create a pool, waiting for PostgreSQL with backoff instead of crashing at start-up."""
    await ensure_schema(dsn, schema, wait_seconds=wait_seconds)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": schema, "application_name": f"privacy-{schema}"},
        command_timeout=60,
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def connect_with_backoff(dsn: str, wait_seconds: float = 120.0) -> asyncpg.Connection:
    delay = 0.2
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        try:
            return await asyncpg.connect(dsn, timeout=10)
        except TRANSIENT_DB_ERRORS as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("database not reachable yet (%s); retrying in %.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def ensure_schema(dsn: str, schema: str, *, wait_seconds: float = 120.0) -> None:
    conn = await connect_with_backoff(dsn, wait_seconds)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    finally:
        await conn.close()
