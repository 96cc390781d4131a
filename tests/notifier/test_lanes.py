"""SIGKILL of a notifier sending over four lanes (SMTP_CONNECTIONS=4) in groups of three emails per
transaction (EMAILS_PER_SEND_TRANSACTION=3): nothing is lost, and at most one group per lane (twelve
emails) arrives twice, with the same Message-ID.

The notifier runs as a real process (real Kafka and PostgreSQL, a database and consumer group of its
own as in test_notifier_shutdown.py) and sends to a real SMTP server in this test's event loop that
stores each message and answers 250 a little late, so almost all of every lane's send is the window
where the relay has the message and the sender has not yet marked it `sent`: a kill then leaves up to
one such group per lane, which is sent again once its lease expires. Each group has its own `sent`
commit, so no more than that can come twice.
"""

from __future__ import annotations

import email.policy
import uuid
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from schemas.topics import MERGER_NOTICE
from tests.helpers import ServiceProcess, publish, wait_until
from tests.notifier.support import slow_sink
from tests.notifier.test_notifier_e2e import merger, new_domain, register
from tests.notifier.test_notifier_shutdown import Isolated, mine, sink_env, wait_all_sent
from tests.notifier.test_notifier_shutdown import db as db  # the fixtures
from tests.notifier.test_notifier_shutdown import isolated as isolated

pytestmark = pytest.mark.stack

LANES = 4
RECIPIENTS = 600
GROUP = 3  # emails per send transaction
PER_MESSAGE = 0.05  # seconds the sink waits between storing a message and answering 250


def message_ids(maildir: Path, recipient: str) -> set[str]:
    parser = BytesParser(policy=email.policy.default)
    return {str(parser.parsebytes(p.read_bytes())["Message-ID"]) for p in maildir.glob(f"*-{recipient}.eml")}


async def test_a_crash_mid_send_with_four_lanes_loses_nothing_and_resends_at_most_one_group_per_lane(
    stack: Any, isolated: Isolated, db: asyncpg.Connection, tmp_path: Path
) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    maildir = tmp_path / "mail"
    domain = new_domain("lanes")
    run = uuid.uuid4().hex[:6]
    subjects = [f"ln-{run}-{i:04d}" for i in range(RECIPIENTS)]
    transaction_id = f"tx-lanes-{run}"
    job = f"merger-notice:{transaction_id}"
    async with slow_sink(maildir, PER_MESSAGE) as port:
        extra = sink_env(port, isolated, SMTP_CONNECTIONS=str(LANES), EMAILS_PER_SEND_TRANSACTION=str(GROUP))
        service = ServiceProcess("notifier", stack.env(), extra).start()
        try:
            await service.wait_ready()
            await register(bootstrap, db, subjects, domain)
            await publish(bootstrap, MERGER_NOTICE, merger(transaction_id), subject=None, key=transaction_id)

            async def sending() -> bool:
                return len(mine(maildir, domain)) >= 200  # every lane busy by then

            await wait_until(sending, timeout=60, interval=0.02, what="the fan-out's first emails")
            service.kill()
            mailed = sum(mine(maildir, domain).values())
            stuck = await db.fetchval("SELECT count(*) FROM emails WHERE origin = $1 AND status = 'sending'", job)
            service = ServiceProcess("notifier", stack.env(), extra, port=service.port).start()
            await service.wait_ready()

            await wait_all_sent(maildir, domain, db, job, subjects, timeout=180)
        finally:
            service.stop()
    received = mine(maildir, domain)
    twice = {rcpt: n for rcpt, n in received.items() if n != 1}
    print(f"\nSIGKILL with {LANES} lanes, groups of {GROUP}: {mailed} mailed at the kill, {stuck} rows in 'sending'; "
          f"sent twice: {sorted(twice)}")
    assert 0 < mailed < RECIPIENTS, "the kill should land while the fan-out is being sent"
    assert sorted(received) == sorted(f"{s}@{domain}" for s in subjects), "nobody is left out"
    assert all(n == 2 for n in twice.values()), f"more than two copies: {twice}"
    assert len(twice) <= LANES * GROUP, f"more second copies than one group per lane: {twice}"
    for recipient in twice:
        assert len(message_ids(maildir, recipient)) == 1, "a resend carries the same Message-ID"
