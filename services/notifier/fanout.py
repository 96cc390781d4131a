"""Notice fan-out: queue one email per directory entry, page by page, resumable after a crash.

A `fanout_jobs` row is created in the same transaction as the `merger-notice` / material
`policy-changed` event is consumed. This loop then walks the directory with keyset pagination
(`subject > last_subject ORDER BY subject LIMIT page`), never holding more than one page in memory.
Each page is one transaction: the queued emails and the job's new cursor commit together, so a crash
resumes exactly after the last committed page. The emails' notification ids are
`<notice>:<id>:<subject>` and are inserted with ON CONFLICT DO NOTHING, so a replayed notice or a
repeated page queues nothing twice.

Merger and policy notices are transactional: they go to recipients who opted out of marketing too.
Recipients that register after the walk has passed their place in the order are not included.
"""

from __future__ import annotations

import json
import logging

import asyncpg

from privacy_runtime import metrics
from privacy_runtime.unit_of_work import Runtime, UnitOfWork
from services.notifier import rules, store
from services.notifier.intake import params_field
from services.notifier.settings import NotifierSettings
from services.notifier.wakeups import Wakeups

log = logging.getLogger(__name__)


class FanOut:
    def __init__(self, runtime: Runtime, settings: NotifierSettings, wakeups: Wakeups):
        self.runtime = runtime
        self.keyring = runtime.keyring
        self.settings = settings
        self.wakeups = wakeups
        self.domain = rules.sender_domain(settings.smtp_from)

    async def run(self) -> None:
        while True:
            try:
                progressed = await self.step()
            except Exception as exc:
                log.warning("fan-out step failed (%s: %s); retrying", type(exc).__name__, exc)
                progressed = False
                await self.wakeups.fanout.wait_for(1.0)
            if not progressed:
                await self.wakeups.fanout.wait_for(self.settings.email_idle_poll_seconds)

    async def step(self) -> bool:
        """Queue one page of one open job. False when no job has work left."""
        async with self.runtime.transaction() as tx:
            job = await store.next_fanout_job(tx.conn)
            if job is None:
                return False
            queued, last, done = await self._page(tx, job)
            await store.advance_fanout(tx.conn, job["job_id"], last, queued, done)
            if done:
                await tx.audit.record(
                    "fanout_completed",
                    ref=job["job_id"],
                    detail={"notice": job["notice"], "queued": job["queued"] + queued},
                    publish=False,  # no subject to key a privacy-audit event by
                )
            if queued:
                await store.notify(tx.conn, store.EMAILS_CHANNEL)
        metrics.FANOUT_RECIPIENTS.labels(notice=job["notice"]).inc(queued)
        if done:
            log.info("fan-out %s done: %d emails queued", job["job_id"], job["queued"] + queued)
        return True

    async def _page(self, tx: UnitOfWork, job: asyncpg.Record) -> tuple[int, str, bool]:
        conn = tx.conn
        page = self.settings.fanout_page_size
        subjects = await store.recipient_page(conn, job["last_subject"], page)
        if not subjects:
            return 0, job["last_subject"], True
        erased = await tx.keys.ensure_keys(set(subjects))
        params = json.loads(job["params"]) if isinstance(job["params"], str) else dict(job["params"])
        plain = json.dumps(params)
        rows = []
        for subject in subjects:
            if subject in erased:  # cannot happen (erasure deletes the entry) but never send to one
                continue
            notification_id = rules.fanout_notification_id(job["notice"], job["notice_id"], subject)
            rows.append(
                store.EmailRow(
                    notification_id=notification_id,
                    subject=subject,
                    template=job["template"],
                    category=rules.TRANSACTIONAL,
                    locale=None,
                    params_sealed=tx.keys.encrypt_cached(subject, params_field(notification_id), plain),
                    message_id=rules.message_id(notification_id, self.domain),
                    origin=job["job_id"],
                    priority=rules.PRIORITY_BULK,
                )
            )
        inserted = await store.insert_emails(conn, rows)
        return len(inserted), subjects[-1], len(subjects) < page
