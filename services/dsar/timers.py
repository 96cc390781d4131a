"""Timed passes over cases: close unverified ones, escalate overdue ones, give up on exports whose
parts did not all arrive, refresh the deadline gauges."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from privacy_runtime import metrics
from services.dsar import cases, store
from services.dsar.effects import Answer, CaseEffects, utcnow

log = logging.getLogger(__name__)


class Timers(CaseEffects):
    """One pass (`tick`) every `timer_interval_seconds`; a pass never waits for a busy subject."""

    async def timer_loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bad pass must not stop the deadlines being watched
                log.warning("dsar timer pass failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.settings.timer_interval_seconds)

    async def tick(self) -> None:
        now = utcnow()
        horizon = now + timedelta(seconds=self.settings.due_soon_seconds)
        async with self.runtime.pool.acquire() as conn:
            unverified = await store.unverified_before(conn, now - self.unverified_after)
        # One transaction per case, its subject try-locked: a pass holds one subject at a time and never
        # waits for one, so it waits in no cycle; a case whose subject is busy is closed next pass.
        for request_id in unverified:
            async with self.runtime.transaction() as tx:
                case = await self._lock_case(tx.conn, request_id, wait=False)
                if case is not None and case.status == cases.IDENTITY_PENDING:
                    await self.apply(tx, cases.close_unverified(case, now, self.unverified_after))
        async with self.runtime.transaction() as tx:
            # Escalation: each overdue case is reported once (audit + log), each case due soon reminded once.
            for row in await store.claim_overdue(tx.conn, now):
                log.warning(
                    "case %s (%s) is overdue since %s",
                    row["request_id"],
                    row["case_right"],
                    row["due_at"].isoformat(),
                )
                await tx.audit.record(
                    "case_overdue",
                    subject=row["subject"],
                    ref=str(row["request_id"]),
                    detail={"right": row["case_right"], "due_at": row["due_at"].isoformat()},
                )
                case = await self.texts.opened(tx.conn, await store.get_case(tx.conn, str(row["request_id"])))
                email = cases.overdue_email(case) if case is not None else None
                if case is not None and email is not None:
                    await self._notify(tx, case, email)
            for row in await store.claim_due_soon(tx.conn, now, horizon):
                await tx.audit.record(
                    "case_due_soon",
                    subject=row["subject"],
                    ref=str(row["request_id"]),
                    detail={"right": row["case_right"], "due_at": row["due_at"].isoformat()},
                )
            await store.purge_expired_exports(tx.conn, now)
            await store.drop_settled_export_parts(tx.conn)
        await self.settle_incomplete_exports(now)
        async with self.runtime.pool.acquire() as conn:
            counts = {r["case_right"]: r for r in await store.deadline_counts(conn, now, horizon)}
        for right in cases.RIGHTS:
            row = counts.get(right)
            metrics.CASES_OPEN.labels(right=right).set(row["open"] if row else 0)
            metrics.CASES_OVERDUE.labels(right=right).set(row["overdue"] if row else 0)
            metrics.CASES_DUE_SOON.labels(right=right).set(row["due_soon"] if row else 0)
            metrics.CASES_AWAITING_REVIEW.labels(right=right).set(row["awaiting_review"] if row else 0)

    async def settle_incomplete_exports(self, now: datetime) -> None:
        """An export still arriving in parts at its `respond_by` can no longer be used in time: the case goes
        to an operator with the reason (approve asks the system again, with a new command)."""
        async with self.runtime.pool.acquire() as conn:
            due = await store.incomplete_exports_due(conn, now)
        for row in due:
            async with self.runtime.transaction() as tx:
                case = await self._lock_case(tx.conn, str(row["request_id"]), wait=False)
                if case is None:
                    continue
                parts = row["parts"] or "?"
                why = (f"only {row['held']} of {parts} parts of the export arrived by respond_by "
                       f"({row['system']} is late or a part was lost)")
                await self._settle(tx, [Answer.unusable(row["command_id"], row["system"], why)])
