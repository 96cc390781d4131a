"""Notifier use cases on the consuming side: keep the directory, queue emails, start notice fan-outs.

Each method runs inside the transaction the stream processor opened for a batch. Emails go out in the
recipient's locale from the directory; the `locale` of a `notification-requested` is only a fallback
(the dsar service does not know the subject's language). A notification that
cannot be rendered (unknown template, missing param) raises `TemplateProblem`; the processor then
re-runs the batch one event at a time and dead-letters the bad one, so it never blocks the others.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from privacy_runtime import metrics
from privacy_runtime.crypto import KeyRing
from privacy_runtime.notice_secrets import NoticeSecrets
from privacy_runtime.processor import Inbound
from privacy_runtime.unit_of_work import Runtime, UnitOfWork
from schemas.topics import MERGER_NOTICE, POLICY_CHANGED
from services.notifier import rules, store, templates
from services.notifier.final_notices import FINAL_TEMPLATES, FinalNoticeKeys
from services.notifier.settings import NotifierSettings

log = logging.getLogger(__name__)

#: Stand in for the real links while a notification is validated.
_SAMPLE_UNSUBSCRIBE = "https://example.invalid/v1/unsubscribe/sample"
_SAMPLE_MANAGE = "https://example.invalid/manage/sample"


@dataclass(frozen=True)
class Request:
    """One email to queue, before sealing."""

    notification_id: str
    subject: str
    template: str
    category: str
    locale: str | None
    params: dict[str, Any]
    origin: str


def params_field(notification_id: str) -> str:
    """The encryption context of an email's params (binds the ciphertext to its row)."""
    return f"email-params:{notification_id}"


async def erased_among(keyring: KeyRing, conn: asyncpg.Connection, subjects: set[str]) -> set[str]:
    """Erased subjects by the database's tombstones, not by the key cache: another notifier process may
    have shredded a key this one still has cached (which is then forgotten here)."""
    digests = {keyring.subject_digest(s): s for s in subjects}
    erased = {digests[d] for d in await store.erased_digests(conn, list(digests))}
    for subject in erased:
        keyring.forget(subject)
    return erased


class Intake:
    def __init__(self, runtime: Runtime, settings: NotifierSettings):
        self.runtime = runtime
        self.keyring = runtime.keyring
        self.settings = settings
        self.domain = rules.sender_domain(settings.smtp_from)
        self.final_keys = FinalNoticeKeys(settings.master_key(), settings.previous_master_key())
        self.notice_secrets = NoticeSecrets(settings.master_key(), settings.previous_master_key())
        self.context = templates.Context(
            contact_email=settings.privacy_contact_email,
            public_base_url=settings.public_base_url,
            privacy_center_url=settings.privacy_center_url,
        )

    # --- directory ---------------------------------------------------------------------------

    async def record_registrations(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        conn = tx.conn
        latest: dict[str, Inbound] = {}
        for item in batch:
            subject = item.event.subject
            if subject not in latest or latest[subject].ordered_at <= item.ordered_at:
                latest[subject] = item
        erased = await erased_among(self.keyring, conn, set(latest))
        erased |= await tx.keys.ensure_keys(set(latest) - erased)
        rows = []
        for subject, item in sorted(latest.items()):  # one lock order for every writer of the directory
            if subject in erased:
                continue  # an erased subject is never written again
            data = item.data
            rows.append(
                store.DirectoryRow(
                    subject=subject,
                    email_sealed=tx.keys.encrypt_cached(subject, "email", data.email) or b"",
                    name_sealed=tx.keys.encrypt_cached(subject, "name", data.name or None),
                    email_hash=self.keyring.keyed_hash("email", data.email),
                    locale=templates.locale_of(data.locale),
                    country=data.country,
                    registered_at=item.event.time,
                    ordered_at=item.ordered_at,
                )
            )
        await store.upsert_recipients(conn, rows)
        if erased:
            log.info("ignored %d registrations of erased subjects", len(erased))

    # --- erasure holds ------------------------------------------------------------------------

    async def record_case_statuses(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        """`dsar-status`: a verified erasure case holds back every email to its subject but its own; a
        rejected or cancelled one ends that. A subject's statuses come in order (one partition, keyed by
        subject), so the last one of a case in the batch is its state."""
        conn = tx.conn
        latest: dict[tuple[str, str], bool] = {}
        for item in batch:
            change = rules.erasure_hold_change(item.data.right, item.data.status)
            if change is not None:
                latest[(item.event.subject, str(item.data.request_id))] = change
        await store.hold_for_erasure(conn, sorted(key for key, held in latest.items() if held))
        await store.release_erasure_holds(conn, sorted(key for key, held in latest.items() if not held))

    # --- single notifications ----------------------------------------------------------------

    async def queue_requested(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        requests = []
        for item in batch:
            data = item.data
            requests.append(
                Request(
                    notification_id=data.notification_id,
                    subject=item.event.subject,
                    template=data.template,
                    category=data.category,
                    locale=data.locale,
                    # A code or link sealed by the sender is opened here; one that does not open
                    # fails this event alone (dead-lettered with the reason).
                    params=self.notice_secrets.open(data.notification_id, data.params),
                    origin="notification-requested",
                )
            )
        await self.queue(tx, requests)

    async def queue_disclosures(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        requests = []
        for item in batch:
            data = item.data
            subject = item.event.subject
            notify = rules.notify_of_disclosure(data.may_notify_subject)
            await tx.audit.record(
                "legal_disclosure_received",
                subject=subject,
                ref=item.event.id,
                detail={
                    "authority": data.authority,
                    "subject_notified": notify,
                    "outside_eea": data.outside_eea,
                },
            )
            if not notify:
                metrics.EMAILS_SUPPRESSED.labels(reason="disclosure_confidential").inc()
                continue
            requests.append(
                Request(
                    notification_id=rules.disclosure_notification_id(data.case_ref, subject),
                    subject=subject,
                    template=rules.LEGAL_DISCLOSURE_TEMPLATE,
                    category=rules.TRANSACTIONAL,
                    locale=None,
                    params={
                        "authority": data.authority,
                        "legal_basis": data.legal_basis,
                        "data_categories": list(data.data_categories),
                        "recipient_country": data.recipient_country,
                        "outside_eea": data.outside_eea,
                        "case_ref": data.case_ref,
                    },
                    origin="legal-disclosure",
                )
            )
        await self.queue(tx, requests)

    async def queue(self, tx: UnitOfWork, requests: list[Request]) -> int:
        """Validate, seal and queue; returns how many were new. Replays insert nothing.

        Nothing is queued for an erased subject (the row only records the suppression), except the
        erasure confirmation of the request that erased them, addressed from its final notice.
        """
        conn = tx.conn
        if not requests:
            return 0
        unique: dict[str, Request] = {}
        for request in requests:
            self.validate(request.template, request.category, None, request.params)
            unique.setdefault(request.notification_id, request)
        subjects = {r.subject for r in unique.values()}
        await store.lock_recipients(conn, sorted(subjects))  # serialises with an erasure of the same subject
        erased = await erased_among(self.keyring, conn, subjects)
        erased |= await tx.keys.ensure_keys(subjects - erased)
        finals = await store.final_notices(
            conn, sorted({r.subject for r in unique.values() if r.subject in erased and r.template in FINAL_TEMPLATES})
        )
        rows = []
        for request in unique.values():
            plain = json.dumps(request.params)
            row = store.EmailRow(
                notification_id=request.notification_id,
                subject=request.subject,
                template=request.template,
                category=request.category,
                locale=request.locale,
                params_sealed=None,
                message_id=rules.message_id(request.notification_id, self.domain),
                origin=request.origin,
            )
            final = finals.get(request.subject)
            if request.subject not in erased:
                sealed = tx.keys.encrypt_cached(request.subject, params_field(request.notification_id), plain)
                rows.append(replace(row, params_sealed=sealed))
            elif final is not None and str(final["request_id"]) == str(request.params.get("request_id")):
                key = self.final_keys.unwrap(request.subject, final["wrapped_key"], final["master_key_id"])
                sealed = self.final_keys.seal_params(key, request.notification_id, plain)
                rows.append(replace(row, params_sealed=sealed, final_notice=True))
            else:
                rows.append(replace(row, status=rules.Status.SUPPRESSED, last_error="erased"))
        inserted = set(await store.insert_emails(conn, rows))
        for row in rows:
            if row.notification_id in inserted and row.status == rules.Status.SUPPRESSED:
                metrics.EMAILS_SUPPRESSED.labels(reason="erased").inc()
        if inserted:
            await store.notify(conn, store.EMAILS_CHANNEL)
        return len(inserted)

    def validate(self, template: str, category: str, locale: str | None, params: dict[str, Any]) -> None:
        """Raise TemplateProblem now rather than fail at send time (every locale unless one is given:
        the email goes out in the recipient's own locale from the directory, which may differ from the
        event's)."""
        context = templates.Context(
            contact_email=self.context.contact_email,
            public_base_url=self.context.public_base_url,
            unsubscribe_url=_SAMPLE_UNSUBSCRIBE if category == rules.MARKETING else None,
            privacy_center_url=self.context.privacy_center_url,
            manage_url=_SAMPLE_MANAGE,
        )
        for lang in (locale,) if locale else templates.LOCALES:
            templates.validate(template, lang, params, context)

    # --- notices to everyone -----------------------------------------------------------------

    async def start_merger_fanouts(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        for item in batch:
            data = item.data
            params = {
                "kind": data.kind,
                "counterparty": data.counterparty,
                "effective_date": data.effective_date.isoformat(),
                "data_categories": list(data.data_categories),
                "notice_url": data.notice_url,
            }
            await self.start_fanout(tx, MERGER_NOTICE, data.transaction_id, rules.MERGER_NOTICE_TEMPLATE, params)

    async def start_policy_fanouts(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        for item in batch:
            data = item.data
            if not rules.fans_out_policy_change(data.material):
                log.info("policy version %s is not material: no email", data.version)
                continue
            params = {
                "version": data.version,
                "effective_date": data.effective_date.isoformat(),
                "summary_sv": data.summary_sv,
                "summary_en": data.summary_en,
                "url": data.url,
            }
            await self.start_fanout(tx, POLICY_CHANGED, data.version, rules.POLICY_CHANGED_TEMPLATE, params)

    async def start_fanout(
        self, tx: UnitOfWork, notice: str, notice_id: str, template: str, params: dict[str, Any]
    ) -> bool:
        """Record the job; the fan-out loop walks the directory. A replayed notice starts nothing new."""
        conn = tx.conn
        self.validate(template, rules.TRANSACTIONAL, None, params)
        job_id = f"{notice}:{notice_id}"
        created = await store.create_fanout_job(
            conn, job_id=job_id, notice=notice, notice_id=notice_id, template=template, params=params
        )
        if created:
            await tx.audit.record(
                "fanout_started",
                ref=job_id,
                detail={"notice": notice, "template": template},
                publish=False,  # privacy-audit events are keyed by subject; a notice to everyone has none
            )
            await store.notify(conn, store.FANOUT_CHANNEL)
        return created
