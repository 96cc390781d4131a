"""Property: through the real ledger (PostgreSQL), any arrival order and batching of a set of consent
events ends in the state event-time order gives, with every event recorded once."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.stack import Stack
from privacy_runtime.commands import CommandPolicy, CommandTracker
from privacy_runtime.datamap import load_data_map
from privacy_runtime.migrations import apply_migrations
from privacy_runtime.processor import Inbound, RawMessage
from privacy_runtime.settings import DEFAULT_DATA_MAP
from privacy_runtime.unit_of_work import PoolRuntime
from schemas.envelope import new_event
from schemas.events import ConsentChanged
from schemas.topics import CONSENT_CHANGED
from services.consent import rules
from services.consent.ledger import Ledger
from services.consent.settings import ConsentSettings
from tests.consent.oracle import state_the_policy_describes

pytestmark = pytest.mark.stack

T0 = datetime(2026, 6, 1, tzinfo=UTC)
CONSENT_SQL = Path(__file__).resolve().parents[2] / "services" / "consent" / "migrations"


class Harness:
    def __init__(self, dsn: str):
        self.loop = asyncio.new_event_loop()
        self.schema = f"ledger_prop_{uuid.uuid4().hex[:8]}"
        self.pool: asyncpg.Pool = self.loop.run_until_complete(self._setup(dsn))
        settings = ConsentSettings(privacy_master_key=base64.b64encode(os.urandom(32)).decode())
        self.runtime = PoolRuntime("consent", settings, self.pool, load_data_map(DEFAULT_DATA_MAP))
        self.loop.run_until_complete(self.runtime.start())
        self.ledger = Ledger(self.runtime, CommandTracker(CommandPolicy()))

    async def _setup(self, dsn: str) -> asyncpg.Pool:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'CREATE SCHEMA "{self.schema}"')
        await conn.close()
        pool = await asyncpg.create_pool(dsn, server_settings={"search_path": self.schema}, min_size=1, max_size=2)
        assert pool is not None
        await apply_migrations(pool, self.schema, CONSENT_SQL)
        return pool

    def apply(self, batches: list[list[Inbound]]) -> None:
        async def run() -> None:
            for batch in batches:
                async with self.runtime.transaction() as tx:
                    await self.ledger.record_changes(tx, batch)
        self.loop.run_until_complete(run())

    def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:
                return await conn.fetch(query, *args)
        return self.loop.run_until_complete(run())

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.close())
        self.loop.close()


@pytest.fixture(scope="module")
def harness(stack: Stack) -> Iterator[Harness]:
    h = Harness(stack.endpoints.database_url)
    try:
        yield h
    finally:
        h.close()


def _inbound(subject: str, purpose: str, granted: bool, minute: int, event_id: str) -> Inbound:
    event = new_event(CONSENT_CHANGED, ConsentChanged(purpose=purpose, granted=granted, channel="preference_center",
                                                       policy_version="v1"),
                      subject=subject, source="urn:test", time=T0 + timedelta(minutes=minute), id=event_id)
    return Inbound(event, RawMessage(CONSENT_CHANGED, 0, 0, subject.encode(), b"", []))


changes = st.lists(
    st.tuples(st.sampled_from(["analytics", "marketing_email", "partner_sharing"]), st.booleans(),
              st.integers(min_value=0, max_value=10), st.uuids().map(str)),
    min_size=1, max_size=25, unique_by=lambda t: t[3],
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes, st.randoms(use_true_random=False))
def test_any_arrival_order_and_batching_gives_event_time_state(harness: Harness, raw: list, rnd: random.Random) -> None:  # type: ignore[type-arg]
    subject = f"prop-{uuid.uuid4().hex[:10]}"
    # Event ids are unique per event in production; hypothesis may repeat uuids across examples.
    raw = [(p, g, m, f"{subject}-{eid}") for p, g, m, eid in raw]
    items = [_inbound(subject, p, g, m, eid) for p, g, m, eid in raw]
    rnd.shuffle(items)
    batches: list[list[Inbound]] = []
    while items:
        size = rnd.randint(1, len(items))
        batches.append(items[:size])
        items = items[size:]
    harness.apply(batches)

    records = [rules.ConsentRecord(f"{eid}:{p}", p, g, T0 + timedelta(minutes=m), "preference_center", "v1")
               for p, g, m, eid in raw]
    expected = {p: (r.granted, r.event_id) for p, r in state_the_policy_describes(records).items()}
    stored = {r["purpose"]: (r["granted"], r["entry_id"])
              for r in harness.fetch("SELECT * FROM consent_state WHERE subject = $1", subject)}
    assert stored == expected
    ledger = harness.fetch("SELECT entry_id FROM consent_ledger WHERE subject = $1", subject)
    assert sorted(r["entry_id"] for r in ledger) == sorted(r.event_id for r in records)
