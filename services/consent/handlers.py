"""Consent stream handlers: which topic goes to which use case, each a thin call into the ledger, the
command tracker or the inbox.

Batches arrive through the runtime's consumer (see privacy_runtime/consumer.py for why it is not a
faust agent per topic); each handler runs inside the batch's unit of work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from privacy_runtime.command_codec import AckIn
from privacy_runtime.commands import CommandTracker
from privacy_runtime.processor import Handler, Inbound
from privacy_runtime.unit_of_work import UnitOfWork
from schemas.topics import CONSENT_CHANGED, DSAR_REQUESTED, PRIVACY_ACKS, USER_REGISTERED, command_topic

if TYPE_CHECKING:
    from services.consent.app import ConsentService


def record_acks(tracker: CommandTracker) -> Handler:
    async def record(tx: UnitOfWork, batch: list[Inbound]) -> None:
        await tracker.acknowledge_many(tx, [AckIn.from_event(item.data) for item in batch])

    return record


def register_streams(service: ConsentService) -> None:
    runtime, ledger = service.runtime, service.ledger
    runtime.stream(USER_REGISTERED, ledger.record_registrations)
    runtime.stream(CONSENT_CHANGED, ledger.record_changes, deduplicate=False)  # by ledger entry id
    runtime.stream(DSAR_REQUESTED, ledger.record_objections)
    runtime.stream(PRIVACY_ACKS, record_acks(service.tracker))
    runtime.stream(command_topic(service.runtime.name), service.inbox.handle)
