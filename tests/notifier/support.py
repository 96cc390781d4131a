"""In-process notifier parts on a PostgreSQL schema of their own (no Kafka, no faust)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from devstack.smtp_sink import MaildirHandler
from privacy_runtime.unit_of_work import PoolRuntime
from services.notifier import store
from services.notifier.consent_client import ConsentDecisions
from services.notifier.delivery import Sender
from services.notifier.settings import NotifierSettings
from services.notifier.wakeups import Wakeups
from tests.helpers import TEST_MASTER_KEY, free_port, scratch_schema

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "notifier" / "migrations"
PAGE = 7


#: The notifier's parts run on a pool alone: the shared `PoolRuntime`.
Runtime = PoolRuntime


@asynccontextmanager
async def scratch_runtime(dsn: str, **settings: Any) -> AsyncIterator[Runtime]:
    """A Runtime on a fresh schema with the notifier's migrations, dropped afterwards."""
    # One sending lane unless a test asks for more: the tests written for one connection look at its
    # session (`sender.mailer`) and count connects. Each lane holds a pooled connection while it sends,
    # and the claim, a failure's audit and the hand-back take others (`pool_size` for several senders).
    pool_size: int | None = settings.pop("pool_size", None)
    options: dict[str, Any] = {"fanout_page_size": PAGE, "smtp_starttls": False, "smtp_connections": 1, **settings}
    size = pool_size or max(4, options["smtp_connections"] + 3)
    async with scratch_schema(dsn, "notifier_t", MIGRATIONS, max_size=size) as pool:
        runtime = Runtime("notifier", NotifierSettings(privacy_master_key=TEST_MASTER_KEY, database_url=dsn, **options), pool)
        await runtime.start()
        yield runtime


async def fill_directory(
    runtime: Runtime, subjects: list[str], *, domain: str = "fo.example", restricted: bool = False
) -> list[str]:
    async with runtime.transaction() as tx:
        await tx.keys.ensure_keys(set(subjects))
        await store.upsert_recipients(
            tx.conn,
            [
                store.DirectoryRow(
                    subject=s,
                    email_sealed=tx.keys.encrypt_cached(s, "email", f"{s}@{domain}") or b"",
                    name_sealed=tx.keys.encrypt_cached(s, "name", "Test Person"),
                    email_hash=runtime.keyring.keyed_hash("email", f"{s}@{domain}"),
                    locale="sv",
                    country="SE",
                    registered_at=datetime.now(UTC),
                )
                for s in subjects
            ],
        )
        if restricted:
            for s in subjects:
                await store.set_restricted(tx.conn, s, True)
    return sorted(subjects)


class SlowHandler(MaildirHandler):
    """The devstack sink's handler, slow per message: it stores the message, then waits `delay` seconds
    before answering 250 (so a sender spends most of a send in the window where the relay already has
    the message and the sender does not know it yet)."""

    def __init__(self, maildir: Path, delay: float) -> None:
        super().__init__(maildir, maildir.parent)
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(self.delay)
        return reply


@asynccontextmanager
async def slow_sink(maildir: Path, delay: float) -> AsyncIterator[int]:
    """A real SMTP server in this event loop that keeps each message as `.eml` (as the devstack sink
    does) and answers each one `delay` seconds late. Yields its port."""
    maildir.mkdir(parents=True, exist_ok=True)
    handler = SlowHandler(maildir, delay)
    port = free_port()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="slow-sink", enable_SMTPUTF8=True, decode_data=False), "127.0.0.1", port
    )
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def sink_runtime(stack: Any, maildir: Path, delay: float, **settings: Any) -> AsyncIterator[Runtime]:
    """A scratch runtime sending to a `slow_sink` in this loop, with a consent service nobody runs (no
    answer, so no marketing)."""
    async with (
        slow_sink(maildir, delay) as port,
        scratch_runtime(
            stack.env()["DATABASE_URL"],
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            consent_base_url=f"http://127.0.0.1:{free_port()}",
            **settings,
        ) as runtime,
    ):
        yield runtime


def sender_for(runtime: Runtime) -> Sender:
    """A Sender on `runtime` as the service builds it."""
    settings = runtime.settings
    return Sender(runtime, settings, Wakeups(settings.database_url), ConsentDecisions(settings.consent_base_url, 0.5))


def arrivals(maildir: Path) -> Counter[str]:
    """How many messages each recipient got (the sink names files `<ns>-<seq>-<rand>-<recipient>.eml`)."""
    return Counter(p.name.split("-", 3)[3].removesuffix(".eml") for p in maildir.glob("*.eml"))
