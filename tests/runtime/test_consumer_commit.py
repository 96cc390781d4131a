"""Offsets of partitions a rebalance took away never block the member's later commits.

A member applies a batch, a rebalance gives that partition to another member before the offset is
committed, and the member keeps its other partitions. aiokafka refuses a commit that names a partition
the member no longer has (IllegalStateError), for the whole request: had the stale offset been kept for
the next attempt, every later commit of the member would fail the same way and its own partitions'
offsets would never be committed again (the fault run with two replicas per service found one consent
process in that state, retrying every 0.7 s, its group's committed offsets stuck at the start).
"""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from aiokafka.structs import OffsetAndMetadata

from privacy_runtime.consumer import BatchConsumer, committable
from privacy_runtime.settings import ConnectionSettings

KEPT, TAKEN = TopicPartition("consent-changed", 0), TopicPartition("consent-changed", 1)


class Member:
    """The two things `_commit_now` asks of aiokafka's consumer, with aiokafka's check."""

    def __init__(self, assigned: set[TopicPartition]):
        self.assigned = assigned
        self.committed: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        for tp in offsets:
            if tp not in self.assigned:
                raise IllegalStateError(f"Partition {tp} is not assigned")
        self.committed.update({tp: o.offset for tp, o in offsets.items()})


def consumer_with(member: Member) -> BatchConsumer:
    consumer = BatchConsumer(ConnectionSettings(), group_id="g", processors={}, batch_max_events=100)
    consumer._consumer = member  # type: ignore[assignment]
    return consumer


def test_committable_keeps_the_members_partitions_only() -> None:
    offsets = {KEPT: OffsetAndMetadata(5, ""), TAKEN: OffsetAndMetadata(9, "")}
    assert committable(offsets, {KEPT}) == ({KEPT: OffsetAndMetadata(5, "")}, {TAKEN})


async def test_a_partition_taken_away_does_not_stop_the_members_own_commits() -> None:
    member = Member({KEPT, TAKEN})
    consumer: Any = consumer_with(member)
    consumer._mark_applied({KEPT: OffsetAndMetadata(5, ""), TAKEN: OffsetAndMetadata(9, "")})
    member.assigned = {KEPT}  # the rebalance took TAKEN before the committer ran
    await consumer._commit_now()
    assert member.committed == {KEPT: 5}
    assert consumer._to_commit == {}, "nothing left to poison the next commit"

    consumer._mark_applied({KEPT: OffsetAndMetadata(8, "")})  # later batches of its own partition
    await consumer._commit_now()
    assert member.committed == {KEPT: 8}
