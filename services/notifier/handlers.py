"""Notifier stream handlers: which topic goes to which use case, each a thin call into the intake or
the inbox.

Batches arrive through the runtime's consumer (see privacy_runtime/consumer.py for why it is not a
faust agent per topic); each handler runs inside the batch's unit of work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.topics import (
    DSAR_STATUS,
    LEGAL_DISCLOSURE,
    MERGER_NOTICE,
    NOTIFICATION_REQUESTED,
    POLICY_CHANGED,
    USER_REGISTERED,
    command_topic,
)

if TYPE_CHECKING:
    from services.notifier.app import NotifierService


def register_streams(service: NotifierService) -> None:
    runtime, intake = service.runtime, service.intake
    runtime.stream(USER_REGISTERED, intake.record_registrations)
    runtime.stream(NOTIFICATION_REQUESTED, intake.queue_requested)
    runtime.stream(MERGER_NOTICE, intake.start_merger_fanouts)
    runtime.stream(POLICY_CHANGED, intake.start_policy_fanouts)
    runtime.stream(LEGAL_DISCLOSURE, intake.queue_disclosures)
    # Erasure holds: from verification of an erasure case on, only that case's emails (rules.held_for_erasure).
    runtime.stream(DSAR_STATUS, intake.record_case_statuses)
    runtime.stream(command_topic(runtime.name), service.inbox.handle)
