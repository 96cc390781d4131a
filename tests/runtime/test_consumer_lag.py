"""The consumer-lag gauge follows the partitions this member owns: after a rebalance it exports no
frozen lag for partitions another member now reads (``max by (topic, partition)`` would pick it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from privacy_runtime.consumer import BatchConsumer, _FinishBeforeRevoke
from privacy_runtime.settings import ConnectionSettings


@dataclass
class _FakeConsumer:
    """What report_lag and a rebalance use of an AIOKafkaConsumer."""

    owned: set[TopicPartition]
    highwaters: dict[TopicPartition, int]
    positions: dict[TopicPartition, int]
    revoke_during_position: set[TopicPartition] = field(default_factory=set)
    commits: list[dict[TopicPartition, Any]] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)

    async def position(self, tp: TopicPartition) -> int:
        if tp in self.revoke_during_position:  # a rebalance runs while report_lag awaits the broker
            self.owned.discard(tp)
        return self.positions[tp]

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets)


def _lag(topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("privacy_consumer_lag_messages", {"topic": topic, "partition": str(partition)})


def _consumer(fake: _FakeConsumer) -> BatchConsumer:
    consumer = BatchConsumer(ConnectionSettings(), group_id="lag-test", processors={}, batch_max_events=100)
    consumer._consumer = fake  # type: ignore[assignment]
    return consumer


async def test_revoked_partitions_stop_exporting_lag() -> None:
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    fake = _FakeConsumer(owned={p0, p1}, highwaters={p0: 100, p1: 50}, positions={p0: 40, p1: 50})
    consumer = _consumer(fake)

    await consumer.report_lag()
    assert (_lag(topic, 0), _lag(topic, 1)) == (60.0, 0.0)

    # Rebalance: partition 0 goes to another member.
    await _FinishBeforeRevoke(consumer).on_partitions_revoked([p0])
    fake.owned = {p1}
    assert _lag(topic, 0) is None
    assert _lag(topic, 1) == 0.0

    fake.positions[p1] = 20
    await consumer.report_lag()
    assert _lag(topic, 0) is None
    assert _lag(topic, 1) == 30.0

    # Given back later: reported again.
    fake.owned = {p0, p1}
    await consumer.report_lag()
    assert _lag(topic, 0) == 60.0


async def test_partition_revoked_while_lag_is_read_is_not_reported() -> None:
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    p0 = TopicPartition(topic, 0)
    fake = _FakeConsumer(owned={p0}, highwaters={p0: 10}, positions={p0: 0}, revoke_during_position={p0})
    consumer = _consumer(fake)

    await consumer.report_lag()
    assert _lag(topic, 0) is None


def test_forgetting_a_partition_never_reported_is_harmless() -> None:
    consumer = _consumer(_FakeConsumer(owned=set(), highwaters={}, positions={}))
    consumer.forget_lag([TopicPartition(f"lag-{uuid.uuid4().hex[:8]}", 3)])
