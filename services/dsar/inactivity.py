"""Inactive subjects (storage limitation, GDPR Art. 5(1)(e)): pure rules for the retention sweep.

The dsar service records each subject's last activity from the events it sees; a subject inactive for
longer than the data map's `inactive_subject_retention_days` is erased through an ordinary erasure
case, opened by an `erasure-requested` the service publishes to itself (ground `retention_expired`),
once an operator confirms it (the case waits in manual review; see `cases.RETENTION_REVIEW`). A subject
seen again meanwhile is no longer inactive: the waiting case is cancelled (`cases.subject_active`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from schemas.enums import ErasureGround, RequestedVia
from schemas.events import ErasureRequested

#: request_id = uuid5(namespace, subject + last activity): a re-run, a second replica or a replayed
#: pass asks for the same request, which the case store opens only once.
RETENTION_NAMESPACE = uuid.UUID("6f0b8e52-1c4d-4a7e-b3f9-2d8c5e7a9b14")


def latest_activity(events: Iterable[tuple[str, datetime]], now: datetime) -> dict[str, datetime]:
    """The newest event time per subject, never later than `now` (a producer's clock running ahead
    must not keep a subject's data longer)."""
    latest: dict[str, datetime] = {}
    for subject, at in events:
        at = min(at, now)
        if subject not in latest or at > latest[subject]:
            latest[subject] = at
    return latest


def counts_as_activity(requested_via: RequestedVia) -> bool:
    """A rights request is the subject's own activity; one the platform raises itself (`internal`:
    a retention or child-data erasure) is not, or every sweep would restart the clock it acts on."""
    return requested_via != RequestedVia.INTERNAL


def inactive_cutoff(now: datetime, retention_days: int) -> datetime:
    """Subjects whose last activity is before this are past retention."""
    return now - timedelta(days=retention_days)


def is_inactive(last_activity: datetime, now: datetime, retention_days: int) -> bool:
    return last_activity < inactive_cutoff(now, retention_days)


def retention_request_id(subject: str, last_activity: datetime) -> str:
    moment = last_activity.astimezone(UTC).isoformat(timespec="microseconds")
    return str(uuid.uuid5(RETENTION_NAMESPACE, f"{subject}\n{moment}"))


def retention_event_id(request_id: str) -> str:
    """The event's CloudEvents id, derived too, so a re-published request is a duplicate event."""
    return str(uuid.uuid5(RETENTION_NAMESPACE, f"event:{request_id}"))


def retention_erasure(request_id: str) -> ErasureRequested:
    # The platform itself asks, so there is no identity to verify.
    return ErasureRequested(
        request_id=uuid.UUID(request_id),
        ground=ErasureGround.RETENTION_EXPIRED,
        identity_verified=True,
        requested_via=RequestedVia.INTERNAL,
    )
