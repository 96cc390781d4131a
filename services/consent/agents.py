"""Consent stream handlers: one per topic, each a thin call into the ledger or the inbox.

Batches arrive through the runtime's consumer (see privacy_runtime/consumer.py for why it is not a
faust agent per topic); each handler runs inside the batch's transaction.
"""

from __future__ import annotations

from privacy_runtime.commands import AckIn
from privacy_runtime.processor import Inbound
from privacy_runtime.unit_of_work import UnitOfWork
from schemas.topics import CONSENT_CHANGED, DSAR_REQUESTED, PRIVACY_ACKS, USER_REGISTERED, command_topic
from services.consent.app import SYSTEM_ID, inbox, ledger, runtime, tracker


async def record_acks(tx: UnitOfWork, batch: list[Inbound]) -> None:
    await tracker.acknowledge_many(tx, [
        AckIn(str(a.command_id), str(a.system), str(a.status), a.detail) for a in (item.data for item in batch)
    ])


runtime.stream(USER_REGISTERED, ledger.record_registrations)
runtime.stream(CONSENT_CHANGED, ledger.record_changes, deduplicate=False)  # by ledger entry id
runtime.stream(DSAR_REQUESTED, ledger.record_objections)
runtime.stream(PRIVACY_ACKS, record_acks)
runtime.stream(command_topic(SYSTEM_ID), inbox.handle)
