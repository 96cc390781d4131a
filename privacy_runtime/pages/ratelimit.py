"""Rate limiters: `allow(key)` says whether one more attempt fits in the key's window.

Both count the same way: a key's window opens with its first attempt and lasts `window_seconds`; within
it at most `limit` attempts are allowed, the rest refused; the next attempt after it opens a new one.
Keys are hashed by the caller when they name a person.

- `SharedRateLimiter` counts in PostgreSQL (table `rate_limits` of the app's schema), so every replica
  draws on one count: n replicas allow the limit, not n times it. One atomic upsert per attempt, on the
  database's clock (replicas' clocks may differ); `purge_rate_limits` deletes windows that ended.
- `RateLimiter` counts in the process's memory, per replica: the office's sign-in form keeps it (its
  tokens are 256-bit secrets, so the limit only damps noise, and its page tests run without a
  database).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta

import asyncpg

#: Table `rate_limits` (scope, key, expires_at, hits), created by the app's migrations.
_HIT = """
INSERT INTO rate_limits (scope, key, expires_at, hits) VALUES ($1, $2, now() + $3::interval, 1)
ON CONFLICT (scope, key) DO UPDATE SET
    hits = CASE WHEN rate_limits.expires_at <= now() THEN 1 ELSE LEAST(rate_limits.hits + 1, $4) END,
    expires_at = CASE WHEN rate_limits.expires_at <= now() THEN EXCLUDED.expires_at ELSE rate_limits.expires_at END
RETURNING hits
"""


class SharedRateLimiter:
    """Attempts counted in the database, shared by every replica of the app (same limits as in memory)."""

    def __init__(self, pool: Callable[[], asyncpg.Pool], scope: str, limit: int, window_seconds: float):
        self._pool = pool  # a callable: the pool exists only once the app's runtime started
        self.scope = scope
        self.limit = limit
        self.window = timedelta(seconds=window_seconds)

    async def allow(self, key: str) -> bool:
        # The count stops at limit + 1: refused attempts do not make the number grow without end.
        async with self._pool().acquire() as conn:
            hits = await conn.fetchval(_HIT, self.scope, key, self.window, self.limit + 1)
        return int(hits) <= self.limit


async def purge_rate_limits(conn: asyncpg.Connection) -> int:
    """Delete the windows that have ended (a new attempt would start afresh anyway)."""
    status = await conn.execute("DELETE FROM rate_limits WHERE expires_at < now()")
    return int(status.split()[-1])


class RateLimiter:
    """Attempts counted in this process's memory (bounded: the least recently seen keys go first)."""

    def __init__(self, limit: int, window_seconds: float, max_keys: int = 100_000):
        self.limit = limit
        self.window = window_seconds
        self.max_keys = max_keys
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        started, count = self._windows.get(key, (now, 0))
        if now - started >= self.window:
            started, count = now, 0
        if count >= self.limit:
            return False
        self._windows[key] = (started, count + 1)
        self._windows.move_to_end(key)
        while len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)  # the least recently seen: memory stays bounded
        return True
