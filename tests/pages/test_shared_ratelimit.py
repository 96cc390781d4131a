"""The rate limiter shared through PostgreSQL: two pools (as two replicas would hold) draw on one
count, the window rule is the in-memory limiter's, concurrent attempts never pass the limit, and ended
windows are purged. On the privacy center's own tables (its migrations), in a scratch schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from devstack.stack import Stack
from privacy_runtime.pages.ratelimit import SharedRateLimiter, purge_rate_limits
from tests.helpers import ROOT, scratch_schema

pytestmark = pytest.mark.stack

MIGRATIONS: Path = ROOT / "services" / "privacy_center" / "migrations"


async def test_two_replicas_share_one_limit(stack: Stack) -> None:
    dsn = stack.endpoints.database_url
    async with scratch_schema(dsn, "ratelimit", MIGRATIONS, max_size=12) as first:
        schema = await first.fetchval("SELECT current_schema()")
        second = await asyncpg.create_pool(dsn, min_size=1, max_size=2, server_settings={"search_path": schema})
        assert second is not None
        try:
            one = SharedRateLimiter(lambda: first, "email_address", limit=3, window_seconds=3600)
            other = SharedRateLimiter(lambda: second, "email_address", limit=3, window_seconds=3600)
            answers = [await limiter.allow("email:a") for limiter in (one, other, one, other, one)]
            assert answers == [True, True, True, False, False], "three in all, whichever replica counts"
            assert await other.allow("email:b"), "another key has its own count"
            client = SharedRateLimiter(lambda: second, "email_client", limit=3, window_seconds=3600)
            assert await client.allow("email:a"), "another scope has its own count"

            # The window ends: the next attempt opens a new one (as in memory), and the purge takes
            # only ended windows.
            await first.execute("UPDATE rate_limits SET expires_at = now() - interval '1 second' "
                                "WHERE scope = 'email_address' AND key = 'email:b'")
            async with first.acquire() as conn:
                assert await purge_rate_limits(conn) == 1
            assert await first.fetchval("SELECT count(*) FROM rate_limits") == 2
            await first.execute("UPDATE rate_limits SET expires_at = now() WHERE key = 'email:a'")
            assert [await other.allow("email:a") for _ in range(4)] == [True, True, True, False]
            hits = await first.fetchval("SELECT hits FROM rate_limits WHERE scope = 'email_address' AND key = 'email:a'")
            assert hits == 4, "refused attempts stop counting at the limit + 1"

            # Many at once, from both: exactly the limit passes (one atomic upsert each).
            burst = SharedRateLimiter(lambda: first, "code_client", limit=5, window_seconds=3600)
            burst_other = SharedRateLimiter(lambda: second, "code_client", limit=5, window_seconds=3600)
            allowed = await asyncio.gather(*(limiter.allow("client:c") for limiter in [burst, burst_other] * 10))
            assert allowed.count(True) == 5
        finally:
            await second.close()
