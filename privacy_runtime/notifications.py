"""A dedicated PostgreSQL LISTEN connection: what other transactions changed, once they committed.

NOTIFY is transactional: a notification is queued before its transaction commits and delivered only
after the commit, to every listener in queue order. So a notification this listener queues itself
(`sync`) comes back only after every notification of every transaction that had committed before the
sync was sent: `await listener.sync()` means "whatever committed before now has been handled here".

The owner hears of a lost connection (`on_lost`) before anything else can happen, and of a working one
(`on_ready`) only once LISTEN is in place: between the two it may have missed notifications, so whatever
it derived from them must be dropped. A connection that stops answering is found by a periodic sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Callable

import asyncpg

from privacy_runtime.db import TRANSIENT_DB_ERRORS

log = logging.getLogger(__name__)

SYNC_PREFIX = "sync:"


class Listener:
    def __init__(
        self,
        dsn: str,
        channel: str,
        on_payload: Callable[[str], None],
        *,
        on_ready: Callable[[], None],
        on_lost: Callable[[], None],
        check_seconds: float = 1.0,
        timeout_seconds: float = 2.0,
    ):
        self.dsn = dsn
        self.channel = channel
        self.on_payload = on_payload
        self.on_ready = on_ready
        self.on_lost = on_lost
        self.check_seconds = check_seconds
        self.timeout_seconds = timeout_seconds
        self._conn: asyncpg.Connection | None = None
        self._syncs: dict[str, asyncio.Future[None]] = {}
        self._numbers = itertools.count()
        #: In every token: each process listening on the channel sends syncs of its own, and one of theirs
        #: must never answer one of ours (theirs may have been queued before changes ours must see).
        self._instance = uuid.uuid4().hex[:12]
        self._broken = asyncio.Event()
        self._one_query = asyncio.Lock()  # a connection runs one statement at a time

    @property
    def application_name(self) -> str:
        """How its connection is named in pg_stat_activity."""
        return f"privacy-listen-{self.channel}"[:63]

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def run(self) -> None:
        """Forever: connect, LISTEN, then check the connection every `check_seconds`; reconnect when lost."""
        delay = 0.2
        while True:
            try:
                await self._connect()
                delay = 0.2
                while not self._broken.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._broken.wait(), timeout=self.check_seconds)
                    if not self._broken.is_set() and not await self.sync():
                        break
            except asyncio.CancelledError:
                await self._drop()
                raise
            except TRANSIENT_DB_ERRORS as exc:
                log.warning("LISTEN %s: database unavailable (%s); retrying in %.1fs",
                            self.channel, type(exc).__name__, delay)
            except Exception:
                log.exception("LISTEN %s failed; retrying in %.1fs", self.channel, delay)
            await self._drop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def sync(self) -> bool:
        """True once every notification committed before this call has been handed to `on_payload`;
        False (and the connection dropped, `on_lost` called) when that cannot be known in time."""
        conn = self._conn
        if conn is None:
            return False
        token = f"{SYNC_PREFIX}{self._instance}:{next(self._numbers)}"
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._syncs[token] = done
        try:
            async with self._one_query:
                await conn.execute("SELECT pg_notify($1, $2)", self.channel, token, timeout=self.timeout_seconds)
            await asyncio.wait_for(done, timeout=self.timeout_seconds)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("LISTEN %s: no answer to a sync (%s); dropping the connection", self.channel,
                        type(exc).__name__)
            await self._drop()
            return False
        finally:
            self._syncs.pop(token, None)

    async def stop(self) -> None:
        await self._drop()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=self.timeout_seconds,
                                     server_settings={"application_name": self.application_name})
        try:
            self._broken.clear()
            conn.add_termination_listener(self._terminated)
            await conn.add_listener(self.channel, self._notified)
        except BaseException:
            await conn.close(timeout=1)
            raise
        self._conn = conn
        self.on_ready()  # only now: a change committed from here on is notified on this connection

    def _notified(self, conn: object, pid: int, channel: str, payload: str) -> None:
        if payload.startswith(SYNC_PREFIX):
            done = self._syncs.get(payload)
            if done is not None and not done.done():
                done.set_result(None)
            return
        self.on_payload(payload)

    def _terminated(self, conn: object) -> None:
        if conn is self._conn:
            self._conn = None
            self.on_lost()
            self._broken.set()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        self.on_lost()  # first: nothing derived from the notifications may be used from here on
        self._broken.set()
        for done in self._syncs.values():
            if not done.done():
                done.set_exception(ConnectionError("listener connection dropped"))
        with contextlib.suppress(Exception):
            conn.remove_termination_listener(self._terminated)
            await conn.close(timeout=1)
