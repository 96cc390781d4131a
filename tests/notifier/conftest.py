"""Notifier tests: the `slow` marker, and an in-process runtime on a scratch schema of the stack's PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devstack.stack import Stack
from tests.notifier.support import Runtime, scratch_runtime


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running (tens of seconds); deselect with -m 'not slow'")


@pytest.fixture
async def runtime(stack: Stack) -> AsyncIterator[Runtime]:
    async with scratch_runtime(stack.env()["DATABASE_URL"]) as instance:
        yield instance
