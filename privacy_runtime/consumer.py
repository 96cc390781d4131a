"""The consumer loop: topic partitions in, batches through `StreamProcessor`, offsets committed after.

Why not one faust agent per topic: faust hands events over one at a time (about 10k events/s per
process on this kind of machine, measured), and the ledger needs whole batches to reach the database
in a few round trips. One aiokafka consumer per service polls up to `batch_max_events` messages at
once, applies them per topic in one transaction each, and commits the offsets only after that commit.
A crash anywhere re-delivers the batch; the idempotency claims make the replay a no-op. faust only runs
the process (CLI, web server, lifecycle: `faust_shell.py`); no faust stream is used.

Under a backlog the work runs in lanes, one per topic partition: a partition's batches are applied
strictly in order, one transaction at a time, but partitions do not wait for each other (events are
keyed by subject, so order matters only within a partition). While PostgreSQL runs one lane's
statements the service prepares another's, and the next poll is fetched and decoded meanwhile; at
most two polls are in flight. Applied offsets are committed by one committer, coalesced (at most five
commits a second), so the next batch never waits on the broker. Before a rebalance takes partitions
away, and at shutdown, every lane is finished and its offsets committed. A trickle of events is
applied at once, one transaction per topic (lower latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import OffsetAndMetadata

from privacy_runtime import metrics
from privacy_runtime.kafka import aiokafka_options
from privacy_runtime.processor import Inbound, RawMessage, StreamProcessor
from privacy_runtime.settings import ConnectionSettings

log = logging.getLogger(__name__)


def _raw(record: ConsumerRecord[bytes, bytes]) -> RawMessage:
    return RawMessage(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=[(str(k), bytes(v) if v is not None else b"") for k, v in (record.headers or ())],
    )


Polled = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
#: From this many messages in one poll on (a backlog), the poll goes to the lanes, one transaction per
#: topic partition, while the next poll is fetched and decoded. Below (a trickle), one transaction per
#: topic, applied before the next poll, is faster: measured with bench change_latency.
OVERLAP_FROM = 200
#: Polls whose batches may be applied at once (each lane still one batch at a time): the next poll is
#: fetched and decoded while the last ones are applied.
#: Measured with bench consent_ingest: 3 or 4 keep the cores busier but cost more CPU per event.
POLLS_IN_FLIGHT = 2
#: A poll takes up to this many transactions' worth (BATCH_MAX_EVENTS each). aiokafka hands out its
#: buffer partition by partition, so a poll of one transaction's worth is mostly one partition and
#: keeps one lane busy; measured with bench consent_ingest: 4 keeps 2.5 transactions open instead of 1.5.
POLL_BATCHES = 4
#: Seconds between two commits of applied offsets (shutdown and rebalance commit at once). Measured
#: with bench change_latency: a commit per trickle batch costs more latency than it saves replay.
COMMIT_EVERY = 0.2


def committable(
    offsets: dict[TopicPartition, OffsetAndMetadata], assigned: set[TopicPartition]
) -> tuple[dict[TopicPartition, OffsetAndMetadata], set[TopicPartition]]:
    """The offsets this member may still commit (its partitions now), and the partitions it no longer has."""
    gone = {tp for tp in offsets if tp not in assigned}
    return {tp: offset for tp, offset in offsets.items() if tp in assigned}, gone


class _FinishBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer):
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.owner.forget_lag(revoked)  # first: finishing may raise, the partitions go regardless
        await self.owner.finish_in_flight()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


class BatchConsumer:
    def __init__(self, settings: ConnectionSettings, group_id: str, processors: dict[str, StreamProcessor], *,
                 batch_max_events: int):
        self.settings = settings
        self.batch_max_events = batch_max_events
        self.group_id = group_id
        self.processors = processors
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        #: The last batch of each lane (topic partition); the next one starts when it is applied.
        self._lanes: dict[TopicPartition, asyncio.Task[None]] = {}
        #: The batches of each poll still in flight, oldest first (at most POLLS_IN_FLIGHT).
        self._polls: deque[list[asyncio.Task[None]]] = deque()
        #: Offsets applied but not committed yet, and the committer that sends them.
        self._to_commit: dict[TopicPartition, OffsetAndMetadata] = {}
        self._commit_wanted = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._committer: asyncio.Task[None] | None = None
        #: Partitions whose lag series this consumer set (removed when they are revoked).
        self._lag_reported: set[TopicPartition] = set()

    def stop(self) -> None:
        """Finish the batches in hand, commit them, then leave the group."""
        self._stopping.set()

    async def run(self) -> None:
        settings = self.settings
        consumer = AIOKafkaConsumer(
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch_max_events,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            # A member killed without leaving is noticed after this long (the default is 45 s).
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
            **aiokafka_options(settings),
        )
        consumer.subscribe(list(self.processors), listener=_FinishBeforeRevoke(self))
        self._consumer = consumer
        await self._start(consumer)
        self._committer = asyncio.create_task(self._commit_forever())
        try:
            while not self._stopping.is_set():
                # getmany returns as soon as records arrive; the timeout only bounds an idle wait.
                polled = await consumer.getmany(
                    timeout_ms=250, max_records=self.batch_max_events * POLL_BATCHES)
                if not polled:
                    for tasks in self._polls:  # surfaces a failed lane while idle
                        await self._wait_for(tasks)
                    continue
                decoded = await self._decode(polled)
                if sum(len(records) for records in polled.values()) < OVERLAP_FROM:
                    await self._drain_lanes()  # their offsets are committed in the background
                    await self._apply_whole(decoded, polled)  # a trickle: latency first
                else:
                    self._polls.append(self._to_lanes(decoded, polled))
                    if len(self._polls) >= POLLS_IN_FLIGHT:
                        await self._wait_for(self._polls.popleft())
            await self.finish_in_flight()
        finally:
            for task in [*self._lanes.values(), *(t for tasks in self._polls for t in tasks)]:
                if not task.done():
                    task.cancel()  # not committed: the batch comes again after a restart
                elif not task.cancelled():
                    task.exception()  # seen: the first failure is what this loop raises
            self._lanes.clear()
            self._polls.clear()
            if self._committer is not None:
                self._committer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._committer
            await consumer.stop()
            # A restarted loop rejoins the group and may get other partitions.
            self.forget_lag(list(self._lag_reported))

    async def finish_in_flight(self) -> None:
        """Wait until every lane's batches are applied and their offsets committed (also called before
        a rebalance). An error propagates: the loop restarts and what was not committed is re-delivered."""
        await self._drain_lanes()
        await self._commit_now()

    async def _drain_lanes(self) -> None:
        lanes = list(self._lanes.values())
        self._polls.clear()
        try:
            await self._wait_for(lanes)
        finally:
            self._lanes = {tp: task for tp, task in self._lanes.items() if not task.done()}

    @staticmethod
    async def _wait_for(tasks: list[asyncio.Task[None]]) -> None:
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _to_lanes(self, decoded: dict[str, list[Inbound]], polled: Polled) -> list[asyncio.Task[None]]:
        """Start the batches of each topic partition (at most BATCH_MAX_EVENTS each), each after that
        partition's previous batch. A batch's offset is past its last message (the last batch of a
        partition: past the poll's last message there, dead-lettered ones included)."""
        by_partition: dict[TopicPartition, list[Inbound]] = defaultdict(list)
        for good in decoded.values():
            for item in good:
                by_partition[TopicPartition(item.raw.topic, item.raw.partition)].append(item)
        size = self.batch_max_events
        started = []
        for tp, records in polled.items():
            items = by_partition.get(tp, [])
            chunks = [items[i:i + size] for i in range(0, len(items), size)] or [[]]
            for number, chunk in enumerate(chunks, 1):
                last = records[-1].offset if number == len(chunks) else chunk[-1].raw.offset
                task = asyncio.create_task(
                    self._lane_step(self._lanes.get(tp), tp, chunk, OffsetAndMetadata(last + 1, ""))
                )
                self._lanes[tp] = task
                started.append(task)
        return started

    async def _lane_step(
        self, before: asyncio.Task[None] | None, tp: TopicPartition, items: list[Inbound],
        offset: OffsetAndMetadata,
    ) -> None:
        if before is not None:
            await before  # a failed batch fails the ones after it: none may be applied past it
        if items:
            await self.processors[tp.topic].apply(items)
        self._mark_applied({tp: offset})

    async def _apply_whole(self, decoded: dict[str, list[Inbound]], polled: Polled) -> None:
        for topic, good in decoded.items():
            await self.processors[topic].apply(good)  # few events: one transaction per topic
        self._mark_applied({tp: OffsetAndMetadata(records[-1].offset + 1, "") for tp, records in polled.items()})

    def _mark_applied(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self._to_commit.update(offsets)
        self._commit_wanted.set()

    async def _commit_forever(self) -> None:
        """Commit applied offsets as they come, many lanes' in one request, at most every
        COMMIT_EVERY seconds: a trickle applies hundreds of batches a second, and a commit per batch
        costs the broker more than the few events a crash would re-deliver (deduplicated anyway).
        Shutdown and rebalance commit at once."""
        while True:
            await self._commit_wanted.wait()
            try:
                await self._commit_now()
            except Exception as exc:  # the broker is away: the offsets wait for the next attempt
                log.warning("offsets not committed yet (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)
            await asyncio.sleep(COMMIT_EVERY)

    async def _commit_now(self) -> None:
        # One commit at a time: whoever waits here (shutdown, rebalance) knows that every offset marked
        # before it is committed when it gets through.
        async with self._commit_lock:
            self._commit_wanted.clear()
            offsets, self._to_commit = self._to_commit, {}
            if not offsets or self._consumer is None:
                return
            offsets, gone = committable(offsets, self._consumer.assignment())
            if gone:
                # Applied here, then taken away by a rebalance before they were committed: the new
                # owner re-delivers them and the claims make that a no-op. Kept, they would make every
                # later commit of this member fail (aiokafka refuses a partition it no longer has), and
                # its own partitions' offsets would never be committed again.
                log.warning("offsets of %d partitions taken away by a rebalance not committed; their new owner "
                            "re-delivers those batches", len(gone))
            if not offsets:
                return
            try:
                await self._consumer.commit(offsets)
            except CommitFailedError as exc:
                # The group moved on without us; the next owner re-delivers the batches and the claims
                # make them a no-op.
                log.warning("offsets of applied batches not committed (%s); they will be re-delivered", exc)
            except BaseException:
                for tp, offset in offsets.items():  # not lost: newer offsets marked meanwhile win
                    self._to_commit.setdefault(tp, offset)
                self._commit_wanted.set()
                raise

    async def report_lag(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await consumer.position(tp)
            except Exception:  # partition revoked meanwhile
                continue
            if tp not in consumer.assignment():  # revoked while we waited: its series is gone, keep it so
                continue
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, highwater - position))
            self._lag_reported.add(tp)

    def forget_lag(self, partitions: list[TopicPartition]) -> None:
        """Remove the lag series of partitions this member gave up. Left in place, the last value stays
        exported, frozen, and ``max by (topic, partition)`` in the alert and dashboards picks it over the
        new owner's."""
        for tp in partitions:
            if tp in self._lag_reported:
                self._lag_reported.discard(tp)
                metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))

    async def _decode(self, polled: Polled) -> dict[str, list[Inbound]]:
        by_topic: dict[str, list[RawMessage]] = defaultdict(list)
        for tp, records in polled.items():
            by_topic[tp.topic].extend(_raw(r) for r in records)
        return {topic: await self.processors[topic].decode(messages) for topic, messages in by_topic.items()}

    async def _start(self, consumer: AIOKafkaConsumer) -> None:
        delay = 0.2
        while True:
            try:
                await consumer.start()
                return
            except Exception as exc:
                if self._stopping.is_set():
                    raise
                log.warning("Kafka consumer cannot start yet (%s); retrying in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
