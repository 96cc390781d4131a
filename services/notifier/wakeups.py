"""Wake the sender and the fan-out loop as soon as work commits (PostgreSQL LISTEN/NOTIFY).

Writers run `NOTIFY` inside their transaction, so the notification arrives only once the rows are
visible. The loops also poll on a timer, so a lost listener connection only adds latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from services.notifier.store import EMAILS_CHANNEL, FANOUT_CHANNEL

log = logging.getLogger(__name__)


class Signal:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self, *_: Any) -> None:
        self._event.set()

    async def wait_for(self, seconds: float) -> None:
        """Return when set (or after `seconds`), and re-arm."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()


class Wakeups:
    def __init__(self, database_url: str):
        self.database_url = database_url
        self.emails = Signal()
        self.fanout = Signal()

    async def listen(self) -> None:
        """Keep one listening connection open; reconnect when it drops."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.database_url, timeout=10)
                await conn.add_listener(EMAILS_CHANNEL, self.emails.set)
                await conn.add_listener(FANOUT_CHANNEL, self.fanout.set)
                # Work may have committed while no one listened.
                self.emails.set()
                self.fanout.set()
                while not conn.is_closed():
                    await asyncio.sleep(2.0)
                    await conn.execute("SELECT 1", timeout=5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notify listener lost (%s); reconnecting", type(exc).__name__)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            await asyncio.sleep(1.0)
