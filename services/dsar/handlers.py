"""DSAR stream handlers: which topic goes to which use case, each a thin call into the workflow or the
inbox.

Batches arrive through the runtime's consumer (see privacy_runtime/consumer.py for why it is not a
faust agent per topic); each handler runs inside the batch's unit of work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.topics import (
    CONSENT_CHANGED,
    DSAR_REQUESTED,
    ERASURE_REQUESTED,
    PRIVACY_ACKS,
    USER_REGISTERED,
    command_topic,
)

if TYPE_CHECKING:
    from services.dsar.app import DsarService


def register_streams(service: DsarService) -> None:
    runtime, workflow = service.runtime, service.workflow
    runtime.stream(ERASURE_REQUESTED, workflow.on_erasure_requested)
    runtime.stream(DSAR_REQUESTED, workflow.on_dsar_requested)
    runtime.stream(PRIVACY_ACKS, workflow.on_acks)
    runtime.stream(command_topic(runtime.name), service.inbox.handle)
    # Subject activity only, for the retention of inactive subjects (services/dsar/inactivity.py).
    runtime.stream(USER_REGISTERED, workflow.on_activity, deduplicate=False)
    runtime.stream(CONSENT_CHANGED, workflow.on_activity, deduplicate=False)
