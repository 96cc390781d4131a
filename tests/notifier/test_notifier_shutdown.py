"""SIGTERM during a fan-out: the email in flight is finished, the rest handed back, nothing sent twice.

The notifier runs as a real process (real Kafka and PostgreSQL) and sends to a real SMTP server in this
test's event loop that stores each message and answers 250 a little late: almost all of a send is then
the window where the relay has the message and the sender has not yet marked it `sent`, which is where
a shutdown that cancels the send would leave the row to its lease and send it again after a restart.

The notifier gets a database of its own and a consumer group that starts at the topics' ends, so its
directory holds this test's recipients only: a notice to "everyone" is this test's 600, and a restart
finds nothing of other tests' in its queue.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from devstack.stack import Stack
from schemas.topics import (
    LEGAL_DISCLOSURE,
    MERGER_NOTICE,
    NOTIFICATION_REQUESTED,
    POLICY_CHANGED,
    USER_REGISTERED,
    command_topic,
)
from tests.helpers import ServiceProcess, commit_group_offsets, publish, wait_until
from tests.notifier.support import arrivals, slow_sink
from tests.notifier.test_notifier_e2e import merger, new_domain, register

pytestmark = pytest.mark.stack

RECIPIENTS = 600
PER_MESSAGE = 0.02  # seconds the sink waits between storing a message and answering 250
SHUTDOWN_BOUND = 15.0  # seconds from SIGTERM to exit


@dataclass(frozen=True)
class Isolated:
    database_url: str
    group: str


@pytest.fixture
async def isolated(stack: Stack) -> AsyncIterator[Isolated]:
    """A database of its own, and a consumer group positioned at the end of every topic the notifier
    reads (what earlier tests published is not this test's)."""
    shared = stack.env()["DATABASE_URL"]
    name = f"notifier_term_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(shared)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    group = f"privacy-notifier-term-{uuid.uuid4().hex[:6]}"
    topics = [USER_REGISTERED, NOTIFICATION_REQUESTED, MERGER_NOTICE, POLICY_CHANGED, LEGAL_DISCLOSURE,
              command_topic("notifier")]
    await commit_group_offsets(stack.endpoints.kafka_bootstrap, group, topics, to_end=True)
    try:
        yield Isolated(urlunsplit(urlsplit(shared)._replace(path=f"/{name}")), group)
    finally:
        admin = await asyncpg.connect(shared)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


@pytest.fixture
async def db(isolated: Isolated) -> AsyncIterator[asyncpg.Connection]:
    """The isolated notifier's schema (the service creates it at start)."""
    conn = await asyncpg.connect(isolated.database_url, server_settings={"search_path": "notifier"})
    try:
        yield conn
    finally:
        await conn.close()


async def statuses(db: asyncpg.Connection, job: str, subjects: list[str] | None = None) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT status, count(*) AS n FROM emails WHERE origin = $1 "
        "AND ($2::text[] IS NULL OR subject = ANY($2::text[])) GROUP BY status",
        job,
        subjects,
    )
    return {r["status"]: r["n"] for r in rows}


def mine(maildir: Path, domain: str) -> dict[str, int]:
    return {rcpt: n for rcpt, n in arrivals(maildir).items() if rcpt.endswith(f"@{domain}")}


def sink_env(port: int, isolated: Isolated, **settings: str) -> dict[str, str]:
    """A notifier process's settings: the in-loop sink at `port`, the module's own database and group,
    and a short lease, so that rows a stopped process left in `sending` are retaken (and would be
    resent) soon."""
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_STARTTLS": "false",
        "EMAIL_IDLE_POLL_SECONDS": "0.2",
        "EMAIL_LEASE_SECONDS": "4",
        "DATABASE_URL": isolated.database_url,
        "CONSUMER_GROUP": isolated.group,
        **settings,
    }


async def wait_all_sent(
    maildir: Path, domain: str, db: asyncpg.Connection, job: str, subjects: list[str], timeout: float
) -> None:
    """Until every subject got the job's email and every row of theirs is `sent`."""

    async def everyone() -> bool:
        return len(mine(maildir, domain)) >= len(subjects) and (await statuses(db, job, subjects)) == {
            "sent": len(subjects)
        }

    await wait_until(everyone, timeout=timeout, interval=0.5, what="every recipient after the restart")


async def test_sigterm_mid_fanout_then_restart_sends_each_email_once(
    stack: Any, isolated: Isolated, db: asyncpg.Connection, tmp_path: Path
) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    maildir = tmp_path / "mail"
    domain = new_domain("term")
    run = uuid.uuid4().hex[:6]
    subjects = [f"0tm-{run}-{i:04d}" for i in range(RECIPIENTS)]  # "0": paged, so queued, before the rest
    transaction_id = f"tx-term-{run}"
    job = f"merger-notice:{transaction_id}"
    async with slow_sink(maildir, PER_MESSAGE) as port:
        # Many small pages: SIGTERM lands while the directory is still paged.
        extra = sink_env(port, isolated, FANOUT_PAGE_SIZE="1")
        service = ServiceProcess("notifier", stack.env(), extra).start()
        try:
            await service.wait_ready()
            await register(bootstrap, db, subjects, domain)
            await publish(bootstrap, MERGER_NOTICE, merger(transaction_id), subject=None, key=transaction_id)

            async def sending() -> bool:
                return len(mine(maildir, domain)) >= 3

            await wait_until(sending, timeout=60, interval=0.05, what="the fan-out's first emails")
            paging = await db.fetchval("SELECT queued FROM fanout_jobs WHERE job_id = $1 AND NOT done", job)
            code, took = await asyncio.to_thread(service.terminate, SHUTDOWN_BOUND)
            at_stop = await statuses(db, job)
            ours_at_stop = await statuses(db, job, subjects)
            paged = await db.fetchval("SELECT queued FROM fanout_jobs WHERE job_id = $1", job)
            mailed = sum(mine(maildir, domain).values())
            print(
                f"\nSIGTERM: exit {code} after {took:.2f}s; {mailed} mailed; fan-out had queued {paging} "
                f"at SIGTERM, {paged} at exit; rows {at_stop}, ours {ours_at_stop}"
            )
            assert code == 0, service.log_tail()
            assert 0 < mailed < RECIPIENTS, "SIGTERM should land while the fan-out is being sent"
            assert at_stop.get("sending", 0) == 0, (
                f"the email in flight was not finished, or rows not handed back:\n{service.log_tail()}")
            assert ours_at_stop.get("sent", 0) == mailed, "every email the relay has is marked sent, and only those"

            service = ServiceProcess("notifier", stack.env(), extra, port=service.port).start()
            await service.wait_ready()

            await wait_all_sent(maildir, domain, db, job, subjects, timeout=120)
            await asyncio.sleep(6.0)  # longer than the lease: a row left behind would have been resent by now
        finally:
            service.stop()
        received = mine(maildir, domain)
        assert sorted(received) == sorted(f"{s}@{domain}" for s in subjects)
        twice = {rcpt: n for rcpt, n in received.items() if n != 1}
        assert twice == {}, f"sent more than once: {twice}"
