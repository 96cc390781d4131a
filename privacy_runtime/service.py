"""One object per service process: the faust app plus the shared runtime it wires in.

`ServiceRuntime` owns the database pool, the key ring, the outbox and its relay, the audit trail,
the dead-letter producer and the common HTTP pages. A service's `app.py` creates one and its
`agents.py` and `views.py` use it; nothing here knows about any one service.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import faust
import mode
from aiokafka import AIOKafkaProducer

from privacy_runtime import web
from privacy_runtime.audit import AuditTrail
from privacy_runtime.consumer import BatchConsumer
from privacy_runtime.crypto import KeyRing
from privacy_runtime.datamap import DataMap, load_data_map
from privacy_runtime.db import create_pool
from privacy_runtime.deadletters import DeadLetters
from privacy_runtime.housekeeping import housekeeping_loop
from privacy_runtime.kafka import (
    faust_broker_credentials,
    faust_broker_urls,
    make_producer,
    start_producer_with_backoff,
    wait_for_kafka,
)
from privacy_runtime.logs import configure_logging, logging_config
from privacy_runtime.migrations import apply_keystore_migrations, apply_migrations
from privacy_runtime.outbox import Outbox, OutboxRelay, close_publishing
from privacy_runtime.processor import Handler, StreamProcessor
from privacy_runtime.settings import ServiceSettings
from privacy_runtime.unit_of_work import Transaction, open_transaction

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
        configure_logging(settings.log_level)
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
        self._producer: AIOKafkaProducer | None = None
        self._dead_letters: DeadLetters | None = None
        self._relay: OutboxRelay | None = None
        self._background: list[asyncio.Task[None]] = []
        self._on_started: list[Callable[[], Awaitable[None]]] = []
        #: Awaited by the outbox relay before it publishes what it took (see OutboxRelay).
        self.before_publish: list[Callable[[], Awaitable[None]]] = []
        self._other_keys: list[OtherKeys] = []
        self._streams: dict[str, StreamProcessor] = {}
        self._consumer: BatchConsumer | None = None
        self._consumer_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.group_id = settings.consumer_group or f"privacy-{name}"
        datadir = Path(settings.state_dir) / name
        datadir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
        # The consumer group `privacy-<name>` belongs to the BatchConsumer; faust's own (unused) group
        # gets another id so the two never join one group with different protocols.
        self.app = _App(
            f"privacy-{name}-worker",
            broker=faust_broker_urls(settings),
            broker_credentials=faust_broker_credentials(settings),
            value_serializer="raw",
            key_serializer="raw",
            store="memory://",
            web_port=web_port,
            # faust's own /router and /table pages describe the cluster and its tables to anyone who
            # asks; these services route nothing through faust and keep no faust tables.
            web_router_enabled=False,
            web_tables_enabled=False,
            web_bind=settings.web_bind,
            web_host=settings.web_bind,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            broker_commit_every=1000,
            # A member killed without leaving is noticed after this long; the default (60 s) would
            # stall a restarted worker's first rebalance for a minute.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=2.0,
            broker_commit_interval=0.5,
            stream_buffer_maxsize=4096,
            datadir=str(datadir),
            web_in_thread=False,
            logging_config=logging_config(settings.log_level),
        )
        self.app.before_start = self._wait_for_kafka
        self.app.after_start = self.ensure_started
        self.app.before_stop = self.stop_consuming
        # Also from the app's last shutdown step: a SIGTERM while faust is still starting (its own
        # group can take seconds to settle) stops the app before `_Lifecycle` was ever started, so
        # `_Lifecycle.on_stop` never runs; without this, the loop's teardown would cancel every task
        # mid-flight (an email between the relay's 250 and its `sent` commit, say).
        self.app.after_stop = self.stop
        self.app.service(_Lifecycle(self, loop=None))  # type: ignore[arg-type]  # an instance works too
        web.register_common_pages(self.app, self)

    # --- wiring used by agents and views --------------------------------------------------

    def stream(self, topic: str, handler: Handler, *, deduplicate: bool = True) -> StreamProcessor:
        """Consume `topic`: batches of decoded, deduplicated events go to `handler` in a transaction."""
        processor = StreamProcessor(self, topic, handler, deduplicate=deduplicate)
        self._streams[topic] = processor
        return processor

    def on_started(self, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Register a coroutine to run once the database and producer are up (e.g. a resend loop)."""
        self._on_started.append(fn)
        return fn

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "runtime not started"
        return self._pool

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "runtime not started"
        return self._producer

    @property
    def dead_letters(self) -> DeadLetters:
        assert self._dead_letters is not None, "runtime not started"
        return self._dead_letters

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A unit of work (`privacy_runtime.unit_of_work`); after commit the outbox relay is woken at once."""
        return open_transaction(self.pool, self.keyring, self.outbox, self.audit)

    # --- lifecycle ------------------------------------------------------------------------

    async def ensure_started(self) -> None:
        """Start once, from whichever comes first: the first agent or the worker's service hook.

        Agents start before the consumer group has assigned partitions; starting here means the
        database, producer and relay (and so /readyz) do not wait for a rebalance."""
        async with self._start_lock:
            if not self.started.is_set() and not self._stopping:  # never start after a stop began
                await self.start()

    async def start(self) -> None:
        self._pool = await create_pool(self.settings.database_url, self.name)
        await apply_migrations(self._pool, self.name, self.sql_dir)
        if self.settings.separate_keystore():  # KEYSTORE_DATABASE_URL: the wrapped keys live apart
            self._keystore_pool = await create_pool(self.settings.keystore_url(), self.name, min_size=1)
            await apply_keystore_migrations(self._keystore_pool, self.name)
            self.keyring.use_keystore(self._keystore_pool)
        async with self._pool.acquire() as conn:
            await self.keyring.load_lookup_key(conn)
        self._producer = make_producer(self.settings)
        await self._start_producer_with_backoff(self._producer)
        self._dead_letters = DeadLetters(self._producer, self.name)
        self._relay = OutboxRelay(self._pool, self._producer, self.outbox, before_publish=self.before_publish)
        self._background.append(asyncio.create_task(self._relay.run(), name=f"{self.name}-outbox-relay"))
        self._background.append(asyncio.create_task(_forever(self._report_lag), name=f"{self.name}-lag"))
        self._background.append(asyncio.create_task(_forever(self._housekeeping), name=f"{self.name}-housekeeping"))
        if self.settings.privacy_master_key_previous:
            self._background.append(asyncio.create_task(_forever(self._rewrap_keys), name=f"{self.name}-rewrap"))
        for fn in self._on_started:
            self._background.append(asyncio.create_task(_forever(fn), name=f"{self.name}-{fn.__name__}"))
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
            async with self.transaction() as conn:
                moved += await self.keyring.rewrap_all(conn)
                for other in self._other_keys:
                    moved += await other.rewrap(conn)
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
        group. Runs first on SIGTERM, before faust's own shutdown."""
        if self._consumer is not None and self._consumer_task is not None and not self._consumer_task.done():
            self._consumer.stop()
            try:
                await asyncio.wait_for(asyncio.shield(self._consumer_task), timeout=30)
            except (TimeoutError, Exception) as exc:
                log.warning("consumer did not stop cleanly: %r", exc)
                self._consumer_task.cancel()

    async def stop(self) -> None:
        """Stop once (both `_Lifecycle` and the app's shutdown may call it): consuming first, then the
        background loops (each finishes what it has in hand), the relay's last pass, producer, pool."""
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

    async def _wait_for_kafka(self) -> None:
        await wait_for_kafka(self.settings, sleep=self.app.sleep, should_stop=lambda: self.app.should_stop)

    async def _housekeeping(self) -> None:
        """Delete deduplication records past their retention (privacy_runtime/housekeeping.py)."""
        await housekeeping_loop(self, lambda: datetime.now(UTC))

    async def _report_lag(self, interval: float = 5.0) -> None:
        """Consumer lag per assigned partition: the high-water mark minus this group's position."""
        while True:
            await asyncio.sleep(interval)
            if self._consumer is not None:
                await self._consumer.report_lag()

    @staticmethod
    async def _start_producer_with_backoff(producer: AIOKafkaProducer) -> None:
        await start_producer_with_backoff(producer)


#: faust's CLI knows `warn` and `crit` only; accept the logging module's names too.
_LOG_LEVEL_ALIASES = {"warning": "warn", "critical": "crit"}


def normalise_log_level(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ("-l", "--loglevel") and i + 1 < len(out):
            out[i + 1] = _LOG_LEVEL_ALIASES.get(out[i + 1].lower(), out[i + 1])
        elif arg.startswith("--loglevel="):
            level = arg.split("=", 1)[1]
            out[i] = f"--loglevel={_LOG_LEVEL_ALIASES.get(level.lower(), level)}"
    return out


def run_worker(app: faust.App) -> None:
    """Entry point of every service: `python -m services.<name> worker -l warning`."""
    import sys

    sys.argv = normalise_log_level(sys.argv)
    app.main()


async def _forever(fn: Callable[[], Awaitable[None]]) -> None:
    """Run a background loop; restart it after an unexpected error instead of dying silently."""
    while True:
        try:
            await fn()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s failed; restarting in 1s", getattr(fn, "__name__", fn))
            await asyncio.sleep(1.0)


class _App(faust.App):
    """A faust app that runs `before_start` before any of its Kafka clients start.

    mode starts a service's own `on_start` before its children, and faust's producer (the first
    child to touch Kafka) ends the worker when it cannot bootstrap: waiting here turns a broker that
    is not up yet into a wait with backoff instead of a crash.
    """

    before_start: Callable[[], Awaitable[None]] | None = None
    after_start: Callable[[], Awaitable[None]] | None = None
    before_stop: Callable[[], Awaitable[None]] | None = None
    after_stop: Callable[[], Awaitable[None]] | None = None

    async def on_stop(self) -> None:
        if self.before_stop is not None:
            await self.before_stop()
        await super().on_stop()

    async def on_shutdown(self) -> None:
        # After the app's children (web, `_Lifecycle` if it started) have stopped.
        await super().on_shutdown()
        if self.after_stop is not None:
            await self.after_stop()

    async def on_start(self) -> None:
        await super().on_start()
        if self.before_start is not None:
            await self.before_start()
        if self.after_start is not None:
            # The runtime (database, producer, consumer) starts beside faust's own start-up rather
            # than after it, so /readyz does not wait on faust's group.
            self.add_future(self.after_start())


class _Lifecycle(mode.Service):
    """Starts and stops the runtime with the faust worker."""

    def __init__(self, runtime: ServiceRuntime, **kwargs: Any):
        super().__init__(**kwargs)
        self.runtime = runtime

    async def on_start(self) -> None:
        await self.runtime.ensure_started()

    async def on_stop(self) -> None:
        await self.runtime.stop()
