"""Fixtures of the consent tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from devstack.stack import Stack
from tests.helpers import scratch_schema

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "consent" / "migrations"


@pytest.fixture
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    """Consent's tables without the service, in a schema of their own: for tests of its SQL."""
    async with scratch_schema(stack.endpoints.database_url, "consent_store", MIGRATIONS) as created:
        yield created
