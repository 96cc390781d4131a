"""Notifier tests: the `slow` marker, an in-process runtime on a scratch schema of the stack's PostgreSQL,
and a connection to the notifier's own schema."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from devstack.stack import Stack
from tests.notifier.support import Runtime, scratch_runtime


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running (tens of seconds); deselect with -m 'not slow'")


@pytest.fixture
async def runtime(stack: Stack) -> AsyncIterator[Runtime]:
    async with scratch_runtime(stack.env()["DATABASE_URL"]) as instance:
        yield instance


@pytest.fixture(scope="module")
async def db(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    """The notifier's schema, as the service in this module sees it."""
    conn = await asyncpg.connect(stack.env()["DATABASE_URL"], server_settings={"search_path": "notifier"})
    try:
        yield conn
    finally:
        await conn.close()
