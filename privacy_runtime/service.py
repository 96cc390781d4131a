"""One object per stream service process: the shared runtime, a plain async context.

`ServiceRuntime` owns the database pool, the key ring, the outbox and its relay, the audit trail,
the dead-letter producer, the stream consumer and the common HTTP pages. A service's
`create_service(settings)` (its `app.py`) builds one, registers its streams (`handlers.py`), routes
(`views.py`) and background loops on it; `start()` brings it up, `stop()` down (or `async with`).
Nothing here knows about any one service, nor about the worker shell that runs it in production
(`faust_shell.py`): a test drives the same object in-process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg

from privacy_runtime.audit import AuditTrail
from privacy_runtime.consumer import BatchConsumer
from privacy_runtime.crypto import KeyRing
from privacy_runtime.datamap import DataMap, load_data_map
from privacy_runtime.deadletters import DeadLetters
from privacy_runtime.housekeeping import housekeeping_loop
from privacy_runtime.kafka import RenewingProducer, renewing_producer, wait_for_kafka
from privacy_runtime.migrations import open_service_schema
from privacy_runtime.outbox import Outbox, OutboxRelay, close_publishing
from privacy_runtime.processor import Handler, StreamProcessor
from privacy_runtime.settings import ServiceSettings
from privacy_runtime.unit_of_work import Transaction, open_transaction
from privacy_runtime.web import Routes, register_common_pages

log = logging.getLogger(__name__)


class OtherKeys(Protocol):
    """Keys wrapped by the master key that a service keeps outside the keyring (the notifier's final
    notices): moved to the current master key during a rotation, like the keyring's."""

    async def rewrap(self, conn: asyncpg.Connection) -> int:
        """Re-wrap what is not locked elsewhere under the current master key; how many were moved."""

    async def left(self, conn: asyncpg.Connection) -> int:
        """How many are still wrapped by another master key."""


class ServiceRuntime:
    def __init__(self, name: str, settings: ServiceSettings, sql_dir: Path, web_port: int):
        self.name = name
        self.settings = settings
        self.sql_dir = sql_dir
        self.keyring = KeyRing(settings.master_key(), settings.previous_master_key())
        self.outbox = Outbox(self.keyring, source=f"urn:isopartner:privacy:{name}")
        self.audit = AuditTrail(self.outbox, actor=f"service:{name}")
        self.data_map: DataMap = load_data_map(settings.data_map_path)
        self.started = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._pool: asyncpg.Pool | None = None
        self._keystore_pool: asyncpg.Pool | None = None
        self._producer: RenewingProducer | None = None
        self._dead_letters: DeadLetters | None = None
        self._relay: OutboxRelay | None = None
        self._background: list[asyncio.Task[None]] = []
        self._on_started: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        #: Awaited by the outbox relay before it publishes what it took (see OutboxRelay).
        self.before_publish: list[Callable[[], Awaitable[None]]] = []
        self._other_keys: list[OtherKeys] = []
        self._streams: dict[str, StreamProcessor] = {}
        self._consumer: BatchConsumer | None = None
        self._consumer_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.group_id = settings.consumer_group or f"privacy-{name}"
        #: The port the worker shell serves `routes` on (the service's `<NAME>_WEB_PORT`).
        self.web_port = web_port
        self.routes = Routes()
        register_common_pages(self.routes, self)

    # --- wiring used by handlers and views --------------------------------------------------

    def stream(self, topic: str, handler: Handler, *, deduplicate: bool = True) -> StreamProcessor:
        """Consume `topic`: batches of decoded, deduplicated events go to `handler` in a transaction."""
        processor = StreamProcessor(self, topic, handler, deduplicate=deduplicate)
        self._streams[topic] = processor
        return processor

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics this service consumes, in the order its streams were registered."""
        return tuple(self._streams)

    def on_started(self, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Register a coroutine to run once the database and producer are up (e.g. a resend loop)."""
        self._on_started.append((fn.__name__, fn))
        return fn

    def keep_running(self, **loops: Callable[[], Awaitable[None]]) -> None:
        """Run each loop once the database and producer are up, restarted should it fail; the keyword
        names its task."""
        self._on_started.extend(loops.items())

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "runtime not started"
        return self._pool

    @property
    def producer(self) -> RenewingProducer:
        assert self._producer is not None, "runtime not started"
        return self._producer

    @property
    def dead_letters(self) -> DeadLetters:
        assert self._dead_letters is not None, "runtime not started"
        return self._dead_letters

    def transaction(self, *, locking: Iterable[str | None] = ()) -> AbstractAsyncContextManager[Transaction]:
        """A unit of work (`privacy_runtime.unit_of_work`); after commit the outbox relay is woken at once."""
        return open_transaction(self.pool, self.keyring, self.outbox, self.audit, locking)

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> ServiceRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start once (the worker shell may ask twice); never after a stop began."""
        async with self._start_lock:
            if not self.started.is_set() and not self._stopping:
                await self._start()

    async def wait_for_kafka(self, *, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                             should_stop: Callable[[], bool] = lambda: False) -> None:
        """Wait, with backoff, until the brokers answer (a service may start before its broker)."""
        await wait_for_kafka(self.settings, sleep=sleep, should_stop=lambda: self._stopping or should_stop())

    async def _start(self) -> None:
        self._pool, self._keystore_pool = await open_service_schema(self.settings, self.name, self.sql_dir,
                                                                    self.keyring)
        self._producer = renewing_producer(self.settings)
        await self._producer.start()
        self._dead_letters = DeadLetters(self._producer, self.name)
        self._relay = OutboxRelay(self._pool, self._producer, self.outbox, before_publish=self.before_publish)
        self._background.append(asyncio.create_task(self._relay.run(), name=f"{self.name}-outbox-relay"))
        self._background.append(asyncio.create_task(_forever(self._report_lag), name=f"{self.name}-lag"))
        self._background.append(asyncio.create_task(_forever(self._housekeeping), name=f"{self.name}-housekeeping"))
        if self.settings.privacy_master_key_previous:
            self._background.append(asyncio.create_task(_forever(self._rewrap_keys), name=f"{self.name}-rewrap"))
        for name, fn in self._on_started:
            self._background.append(asyncio.create_task(_forever(fn, name), name=f"{self.name}-{name}"))
        if self._streams:
            self._consumer = BatchConsumer(self.settings, self.group_id, self._streams,
                                           batch_max_events=self.settings.batch_max_events)
            self._consumer_task = asyncio.create_task(_forever(self._consumer.run), name=f"{self.name}-consumer")
        # Objects alive now (modules, models, templates) live as long as the process: keep them out of
        # the collector's full passes, which otherwise show up as latency spikes under load.
        gc.collect()
        gc.freeze()
        self.started.set()
        log.info("%s runtime started", self.name)

    async def _rewrap_keys(self) -> None:
        """Master key rotation: move every key wrapped by the previous master key to the current one,
        while serving. Once the log says so, PRIVACY_MASTER_KEY_PREVIOUS can be removed.

        A pass skips keys other transactions hold at that moment: passes repeat until none is left."""
        moved = 0
        while True:
            async with self.transaction() as tx:
                moved += await self.keyring.rewrap_all(tx.conn)
                for other in self._other_keys:
                    moved += await other.rewrap(tx.conn)
            async with self.pool.acquire() as conn:
                left = await self.keyring.keys_under_other_masters(conn)
                for other in self._other_keys:
                    left += await other.left(conn)
            if not left:
                break
            await asyncio.sleep(1.0)
        log.warning("master key rotation: %d keys re-wrapped under the current master key; %s stores none under "
                    "the previous one. Keep PRIVACY_MASTER_KEY_PREVIOUS set while links and codes in emails already "
                    "sent must work (unsubscribe and manage-your-privacy links are signed, verification codes hashed, "
                    "with it)",
                    moved, self.name)

    def rotate_with_master_key(self, keys: OtherKeys) -> None:
        """Keys a service wraps outside the keyring: re-wrapped with the keyring's during a rotation."""
        self._other_keys.append(keys)

    async def stop_consuming(self) -> None:
        """Take no more messages: let the batch in hand finish and commit its offsets, then leave the
        group. Runs first on SIGTERM, before the worker shell's own shutdown."""
        if self._consumer is not None and self._consumer_task is not None and not self._consumer_task.done():
            self._consumer.stop()
            try:
                await asyncio.wait_for(asyncio.shield(self._consumer_task), timeout=30)
            except (TimeoutError, Exception) as exc:
                log.warning("consumer did not stop cleanly: %r", exc)
                self._consumer_task.cancel()

    async def stop(self) -> None:
        """Stop once (the worker shell may call it twice): consuming first, then the background loops
        (each finishes what it has in hand), the relay's last pass, producer, pool."""
        if self._stopping:
            return
        self._stopping = True
        try:  # a start in progress completes first (bounded: it may be waiting for a dependency)
            await asyncio.wait_for(self._start_lock.acquire(), timeout=10)
            self._start_lock.release()
        except TimeoutError:
            log.warning("%s still starting at shutdown; stopping what has started", self.name)
        await self.stop_consuming()
        if self._relay is not None:
            self._relay.stop()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await close_publishing(self._relay, self._producer, self._pool, self._keystore_pool)
        log.info("%s runtime stopped", self.name)

    async def _housekeeping(self) -> None:
        """Delete deduplication records past their retention (privacy_runtime/housekeeping.py)."""
        await housekeeping_loop(self, lambda: datetime.now(UTC))

    async def _report_lag(self, interval: float = 5.0) -> None:
        """Consumer lag per assigned partition: the high-water mark minus this group's position."""
        while True:
            await asyncio.sleep(interval)
            if self._consumer is not None:
                await self._consumer.report_lag()


async def _forever(fn: Callable[[], Awaitable[None]], name: str | None = None) -> None:
    """Run a background loop; restart it after an unexpected error instead of dying silently."""
    while True:
        try:
            await fn()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s failed; restarting in 1s", name or getattr(fn, "__name__", fn))
            await asyncio.sleep(1.0)
