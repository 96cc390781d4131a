"""The retention sweeper: data is kept only as long as it is needed.

Subjects (storage limitation, GDPR Art. 5(1)(e)): a subject inactive for longer than the data map's
`inactive_subject_retention_days` gets an `erasure-requested` (ground `retention_expired`, requested
via `internal`) through the outbox; the service consumes it and opens an ordinary erasure case, which
waits in manual review for an operator to confirm (activity is only what this service sees; see
`cases.RETENTION_REVIEW`) unless RETENTION_ERASE_WITHOUT_REVIEW is set. Paged (one transaction per
page) and bounded per pass; the request id derives from subject and last activity, so a re-run or a
second replica opens nothing twice.

The dsar service's own records:

- an export package is wiped once its link expired or was used up (it holds a copy of everything);
- export fragments and sealed corrections go once their case is closed (they were only inputs);
- identity verification rows go once their case is closed;
- a closed case record goes after `case_record_retention_seconds`, except a completed restriction
  not lifted yet (still in force) and a case flagged for manual review.

Each purge is one transaction with one audit entry giving the counts (no personal data).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from privacy_runtime import metrics
from privacy_runtime.unit_of_work import Runtime
from schemas.topics import ERASURE_REQUESTED
from services.dsar import inactivity, store
from services.dsar.settings import DsarSettings

log = logging.getLogger(__name__)


async def sweep(runtime: Runtime, now: datetime, case_retention: timedelta,
                failure_window: timedelta = timedelta(days=1)) -> dict[str, int]:
    async with runtime.transaction() as tx:
        counts = await store.purge_expired(tx.conn, now, now - case_retention, now - failure_window)
        if any(counts.values()):
            await tx.audit.record("retention_sweep", ref="dsar", detail=counts, publish=False)
    return counts


async def request_erasures(
    runtime: Runtime, now: datetime, *, retention_days: int, page_size: int, max_per_pass: int
) -> int:
    """Publish a `retention_expired` erasure for up to `max_per_pass` inactive subjects; returns how many."""
    cutoff = inactivity.inactive_cutoff(now, retention_days)
    requested = 0
    while requested < max_per_pass:
        async with runtime.transaction() as tx:
            due = await store.claim_inactive(tx.conn, cutoff, now, min(page_size, max_per_pass - requested))
            for subject, last_activity in due:
                request_id = inactivity.retention_request_id(subject, last_activity)
                # No PII in the request: unsealed, like the status events it leads to.
                await tx.outbox.add(
                    ERASURE_REQUESTED,
                    inactivity.retention_erasure(request_id),
                    subject=subject,
                    event_id=inactivity.retention_event_id(request_id),
                    seal=False,
                )
                await tx.audit.record(
                    "retention_erasure_requested",
                    subject=subject,
                    ref=request_id,
                    detail={
                        "ground": "retention_expired",
                        "last_activity_at": last_activity.isoformat(),
                        "retention_days": retention_days,
                    },
                )
        # Counted once committed: a failed page is swept again, not counted twice.
        metrics.RETENTION_ERASURES_REQUESTED.inc(len(due))
        requested += len(due)
        if len(due) < page_size:
            break
    return requested


async def sweep_forever(runtime: Runtime, settings: DsarSettings, clock: Callable[[], datetime]) -> None:
    while True:
        try:
            await sweep(runtime, clock(), timedelta(seconds=settings.case_record_retention_seconds),
                        timedelta(seconds=settings.verification_failure_window_seconds))
            if settings.retention_erasures_per_pass > 0:
                requested = await request_erasures(
                    runtime,
                    clock(),
                    retention_days=runtime.data_map.inactive_subject_retention_days,
                    page_size=settings.retention_erasure_page_size,
                    max_per_pass=settings.retention_erasures_per_pass,
                )
                if requested:
                    log.info("retention: erasure requested for %d inactive subjects", requested)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed pass is retried next interval; the sweeper keeps running
            log.warning("retention sweep failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(settings.retention_sweep_seconds)
