"""The interpreter of case decisions, and what every driver of the dsar workflow shares.

`cases` (pure) decides; `CaseEffects.apply` carries out a decision's effects (status events,
notifications, commands, exports, audit) in the caller's transaction, so a crash never loses or
duplicates an effect. The drivers build on it: the stream handlers (`intake`), identity verification
and operator actions over HTTP (`operations`), export downloads (`downloads`) and the timers (`timers`).

A transaction that changes a case holds the case's subject's lock (`subject_locks.lock_subjects`) before
the case's row lock, as the stream processor does for every batch: a subject's cases then change one
transaction at a time, whichever path changes them, and a decision about one case (lifting a
restriction) reads the subject's other cases as committed, never while another path changes them
(verifying a new restriction). Subject first, then case rows: the other order would let a transaction
holding a case wait for the subject while a batch holding the subject waits for the case.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any

import asyncpg

from privacy_runtime import metrics
from privacy_runtime.command_codec import AckIn
from privacy_runtime.commands import Ack, CommandSpec, CommandTracker
from privacy_runtime.crypto import seal
from privacy_runtime.notice_secrets import NoticeSecrets
from privacy_runtime.subject_locks import lock_subjects, try_lock_subjects
from privacy_runtime.unit_of_work import Runtime, UnitOfWork
from schemas.enums import AckStatus, CaseRight, CaseStatus, Locale, NotificationCategory
from schemas.events import DsarStatus, NotificationRequested, PrivacyAck
from schemas.topics import DSAR_STATUS, NOTIFICATION_REQUESTED
from services.dsar import cases, package, store
from services.dsar.cases import Case, Decision
from services.dsar.sealing import CaseTexts, operator_words
from services.dsar.settings import DsarSettings
from services.dsar.verification import CodeHasher, new_code

log = logging.getLogger(__name__)

#: Notification event ids derive from the notification id, so a replayed effect is a duplicate.
NOTIFICATION_NAMESPACE = uuid.UUID("a3c0e6f2-8b7d-4c1e-9f25-3d6b0a4e8c71")

#: The dsar service does not know the subject's language; the notifier's directory may override it.
DEFAULT_LOCALE = Locale.SV


class UnknownCase(LookupError):
    pass


@dataclass(frozen=True)
class Answer:
    """A system's answer to a command, whole (an export in parts once all parts are here)."""

    ack: AckIn
    export: dict[str, Any] | None = None
    retained_basis: str | None = None
    #: Why the answer cannot be used (it counts as `failed`; the reason goes to the operator).
    problem: str | None = None

    @classmethod
    def from_event(cls, data: PrivacyAck) -> Answer:
        return cls(AckIn.from_event(data), data.export, data.retained_basis)

    @classmethod
    def unusable(cls, command_id: uuid.UUID, system: str, why: str) -> Answer:
        """An answer that cannot be used, or none in time: `failed`, with the reason for the operator."""
        return cls(AckIn(command_id, system, AckStatus.FAILED, why), problem=why)


def utcnow() -> datetime:
    return datetime.now(UTC)


async def audit_case(tx: UnitOfWork, case: Case, action: str, detail: dict[str, Any], *, actor: str | None = None,
                     sealed: Mapping[str, str | None] | None = None) -> None:
    """An audit entry about a case: the case's subject, its request id as the reference."""
    await tx.audit.record(action, subject=case.subject, ref=case.request_id, detail=detail, actor=actor,
                          sealed=sealed)


class CaseEffects:
    """State shared by the drivers, the effect interpreter, and the two steps every driver takes: lock
    a case as the stream processor does, and settle answers to its commands."""

    def __init__(self, runtime: Runtime, tracker: CommandTracker, settings: DsarSettings):
        self.runtime = runtime
        self.tracker = tracker
        self.settings = settings
        self.keyring = runtime.keyring
        self.texts = CaseTexts(runtime.keyring)
        self.data_map = runtime.data_map
        self.hasher = CodeHasher(settings.master_key(), settings.previous_master_key())
        self.notice_secrets = NoticeSecrets(settings.master_key(), settings.previous_master_key())
        # PUBLIC_BASE_URL when set; otherwise this service's own local address (the contract default).
        if "public_base_url" in settings.model_fields_set:
            self.public_base_url = settings.public_base_url.rstrip("/")
        else:
            self.public_base_url = f"http://{settings.web_bind}:{settings.dsar_web_port}"

    @property
    def unverified_after(self) -> timedelta:
        return timedelta(seconds=self.settings.unverified_close_after_seconds)

    async def apply(self, tx: UnitOfWork, decision: Decision, *, save: bool = True) -> Case:
        """Carry out a decision's effects in order; then save the case (unless the caller saves it)."""
        case = decision.case
        changes = [e for e in decision.effects if isinstance(e, cases.StatusChanged)]
        unsent: list[str] = []
        for effect in decision.effects:
            if isinstance(effect, cases.StatusChanged):
                # Only the last status of a decision carries the case's reason (rejection, review).
                reason = case.status_reason if effect is changes[-1] else case.extension_reason
                await self._status_changed(tx, case, effect, reason)
            else:
                unsent += await self._carry_out(tx, case, effect)
        if unsent:
            # Commands that could not be sent would never be answered: the case decides what now.
            case = await self.apply(tx, cases.rectify_not_sent(case, unsent, utcnow()), save=False)
        if save:
            await self.save(tx, case)
        return case

    async def _carry_out(self, tx: UnitOfWork, case: Case, effect: cases.Effect) -> list[str]:
        """One effect other than a status change; returns the systems a command could not be sent to."""
        if isinstance(effect, cases.DeadlineExtended):
            await self._extended(tx, case, effect)
        elif isinstance(effect, cases.Notify):
            await self._notify(tx, case, effect)
        elif isinstance(effect, cases.IssueCommands):
            return await self._issue(tx, case, effect.steps)
        elif isinstance(effect, cases.SendVerificationCode):
            await self._send_code(tx, case)
        elif isinstance(effect, cases.AssembleExport):
            await self._assemble_export(tx, case)
        elif isinstance(effect, cases.CancelOtherCases):
            await self._cancel_others(tx, case, effect.reason)
        elif isinstance(effect, cases.ShredSubject):
            await self._shred(tx, case)
        elif isinstance(effect, cases.Note):
            await self._note(tx, case, effect)
        return []

    async def _extended(self, tx: UnitOfWork, case: Case, effect: cases.DeadlineExtended) -> None:
        await self._publish_status(tx, case, case.status, effect.reason)
        await audit_case(tx, case, "case_extended", {
            "months": effect.months, "due_at": case.due_at.isoformat(),
            "original_due_at": case.original_due_at.isoformat(),
        }, sealed={"reason": effect.reason})  # the operator's words: shredded with the subject

    async def _shred(self, tx: UnitOfWork, case: Case) -> None:
        """Last of a decision's effects: the completion email and status events before it are unsealed
        and survive this."""
        await store.erase_subject_records(tx.conn, case.subject)
        await tx.keys.shred_subject(case.subject)
        await audit_case(tx, case, "subject_shredded", {"system": "dsar"})

    async def _note(self, tx: UnitOfWork, case: Case, effect: cases.Note) -> None:
        if effect.action == "case_manual_review":  # someone has to act: say so where it is seen
            log.warning("case %s waits for manual review: %s", case.request_id, effect.detail.get("reason"))
        await audit_case(tx, case, effect.action, dict(effect.detail))

    async def save(self, tx: UnitOfWork, case: Case) -> None:
        """Store the case, its free text sealed with the subject's key (`sealing`)."""
        await store.save_case(tx.conn, await self.texts.sealed(tx, case))

    async def _status_changed(
        self, tx: UnitOfWork, case: Case, change: cases.StatusChanged, reason: str | None
    ) -> None:
        await self._publish_status(tx, case, change.status, reason)
        detail: dict[str, Any] = {"right": case.right, "from": change.previous, "to": change.status}
        # An operator's words (a rejection, an extension) may name the person: sealed, shredded with them.
        sealed = {"reason": reason} if reason and reason in operator_words(case) else {}
        if reason and not sealed:
            detail["reason"] = reason
            if case.review is not None and reason == case.review_reason:  # the office says it in its own words
                detail.update(case.review.fields())
        await audit_case(tx, case, f"case_{change.status}", detail, sealed=sealed)
        if change.status in cases.TERMINAL:
            metrics.CASES_CLOSED.labels(right=case.right, status=change.status).inc()
            if change.status == cases.COMPLETED:
                seconds = ((case.closed_at or utcnow()) - case.received_at).total_seconds()
                metrics.CASE_COMPLETION_SECONDS.labels(right=case.right).observe(max(0.0, seconds))

    async def _publish_status(self, tx: UnitOfWork, case: Case, status: str, reason: str | None) -> None:
        event = DsarStatus(
            request_id=uuid.UUID(case.request_id),
            right=CaseRight(case.right),
            status=CaseStatus(status),
            due_at=case.due_at,
            extended=case.extended,
            reason=(reason or None),
        )
        # No PII in a status event: unsealed, so it survives the subject's erasure.
        await tx.outbox.add(DSAR_STATUS, event, subject=case.subject, seal=False)

    def _basis_sv(self, item: Mapping[str, Any]) -> str | None:
        entry = self.data_map.get(str(item.get("system")))
        if entry is None or entry.retained_basis_sv is None or item.get("basis") != entry.retained_basis:
            return None
        return entry.retained_basis_sv

    async def _notify(self, tx: UnitOfWork, case: Case, notify: cases.Notify) -> None:
        conn = tx.conn
        notification_id = f"dsar:{case.request_id}:{notify.suffix}"
        params = dict(notify.params)
        if notify.template == "erasure_completed":
            # What a system keeps, in Swedish too where the data map says it and the system's answer
            # is the basis the map names.
            params["retained"] = [{**item, "basis_sv": self._basis_sv(item)} for item in params.get("retained", [])]
            # The subject's other open requests are cancelled with this erasure (nothing is left to act
            # on); the last email says which (Art. 12(4)), as no other will reach them.
            params["closed_requests"] = [
                {"request_id": other.request_id, "right": other.right}
                for other in await store.cases_of(conn, case.subject)
                if other.request_id != case.request_id and not other.terminal
            ]
        # Sealed by default: codes and download links are secrets. The completion email is unsealed
        # because the subject's key is shredded in the same transaction.
        sealed = not notify.survive_erasure
        if sealed and await tx.keys.is_erased(case.subject):
            log.info("notification %s not requested: subject erased", notification_id)
            return
        event = NotificationRequested(
            notification_id=notification_id,
            template=notify.template,
            category=NotificationCategory.TRANSACTIONAL,
            locale=DEFAULT_LOCALE,
            params=self.notice_secrets.seal(notification_id, params),  # codes and links never in the clear
        )
        await tx.outbox.add(
            NOTIFICATION_REQUESTED,
            event,
            subject=case.subject,
            seal=sealed,
            event_id=str(uuid.uuid5(NOTIFICATION_NAMESPACE, notification_id)),
        )
        await audit_case(tx, case, "notification_requested", {"template": notify.template, "id": notification_id})

    async def _issue(self, tx: UnitOfWork, case: Case, steps: tuple[cases.Step, ...]) -> list[str]:
        """Send the steps' commands; returns the systems whose `rectify` had no values to send."""
        conn = tx.conn
        unsent: list[str] = []
        corrections: dict[str, str] = {}
        if any(s.action == "rectify" for s in steps):
            sealed = await store.corrections_sealed(conn, case.request_id)
            plain = await tx.keys.decrypt(case.subject, f"corrections:{case.request_id}", sealed)
            corrections = json.loads(plain) if plain else {}
        assert all(step.command_id is not None for step in steps)
        # Field-less commands (all but rectify) carry no PII: issued together, unsealed.
        await self.tracker.issue_many(tx, [
            CommandSpec(case.subject, step.system, step.action, step.purpose, case.request_id, step.command_id)
            for step in steps if step.action != "rectify"
        ])
        for step in steps:
            if step.action != "rectify":
                continue
            system = self.data_map.get(step.system)
            held = set(system.fields) if system else set()
            # Data minimisation: each system gets only the corrections of fields it holds.
            fields = {k: v for k, v in corrections.items() if k in held}
            if not fields:
                log.warning("rectify for %s on %s has no correction values left", case.request_id, step.system)
                unsent.append(step.system)
                continue
            await self.tracker.issue(
                tx,
                subject=case.subject,
                system=step.system,
                action=step.action,
                purpose=step.purpose,
                request_id=case.request_id,
                fields=fields,
                command_id=step.command_id,
            )
        return unsent

    async def _send_code(self, tx: UnitOfWork, case: Case) -> None:
        conn = tx.conn
        code = new_code()
        ttl = timedelta(seconds=self.settings.verification_code_ttl_seconds)
        number = await store.put_code(conn, case.request_id, self.hasher.hash(case.request_id, code), utcnow() + ttl)
        await self._notify(tx, case, cases.code_email(case, code, number, ttl))

    async def _assemble_export(self, tx: UnitOfWork, case: Case) -> None:
        conn = tx.conn
        fragments: dict[str, package.Fragment] = {}
        for row in await store.fragments(conn, case.request_id):
            data = None
            if row["fragment_sealed"] is not None:
                plain = await tx.keys.decrypt(
                    case.subject,
                    f"fragment:{case.request_id}:{row['system']}",
                    bytes(row["fragment_sealed"]),
                )
                data = json.loads(plain) if plain else None
            fragments[row["system"]] = package.Fragment(row["status"], data)
        now = utcnow()
        built = package.render(case, package.build(case, fragments, self.data_map, now), self.data_map)
        token = secrets.token_urlsafe(32)
        token_hash = sha256(token.encode()).hexdigest()
        data_key = await tx.keys.data_key(case.subject)
        assert data_key is not None
        expires_at = now + timedelta(seconds=self.settings.export_ttl_seconds)
        await store.put_export(
            conn,
            token_hash=token_hash,
            request_id=case.request_id,
            subject=case.subject,
            media_type=built.media_type,
            filename=built.filename,
            sealed=seal(data_key, built.content, f"export:{token_hash}".encode()),
            expires_at=expires_at,
            downloads=self.settings.export_max_downloads,
        )
        await store.drop_fragments(conn, case.request_id)
        await audit_case(tx, case, "export_assembled", {
            "systems": sorted(fragments), "media_type": built.media_type, "bytes": len(built.content)})
        link = f"{self.public_base_url}/v1/exports/{token}"
        await self._notify(tx, case, cases.export_email(case, link, expires_at, self.settings.export_max_downloads))

    async def _cancel_others(self, tx: UnitOfWork, case: Case, reason: str) -> None:
        conn = tx.conn
        others = await store.open_cases_of(conn, case.subject, except_request=case.request_id)
        for request_id in others:
            other = await self.texts.opened(conn, await store.lock_case(conn, request_id))
            if other is not None and not other.terminal:
                await self.apply(tx, cases.cancel(other, reason, utcnow()))
        # Their commands need no answer now, and could not be re-sent once the key is gone.
        await store.supersede_commands(conn, others)

    async def _lock_case(self, conn: asyncpg.Connection, request_id: str, *, wait: bool = True) -> Case | None:
        """The case locked as the stream processor locks it: its subject's lock first, then the row.

        The subject is read unlocked first (a case's subject never changes); the caller re-checks the
        case it gets, as it is now. None: no such case, or (`wait=False`, for timer passes, which skip a
        busy subject until the next pass rather than wait) its subject is busy."""
        subject = await store.case_subject(conn, request_id)
        if subject is None:
            return None
        if wait:
            await lock_subjects(conn, [subject])
        elif not await try_lock_subjects(conn, [subject]):
            return None
        return await self.texts.opened(conn, await store.lock_case(conn, request_id))

    async def _settle(self, tx: UnitOfWork, answers: list[Answer]) -> None:
        """Record answers to commands and move their cases on (the caller holds their subjects' locks)."""
        conn = tx.conn
        acks = await self.tracker.acknowledge_many(
            tx, [a.ack for a in answers]
        )
        by_case: dict[str, list[tuple[Ack, Answer]]] = defaultdict(list)
        for ack, answer in zip(acks, answers, strict=True):
            if ack is None or not ack.first or ack.request_id is None:
                continue  # another service's command, or a repeated answer
            by_case[ack.request_id].append((ack, answer))
        # Each case is locked and saved once per batch, in a fixed order (workers lock alike).
        for request_id in sorted(by_case):
            case = await self.texts.opened(conn, await store.lock_case(conn, request_id))
            if case is None:
                continue
            for ack, answer in by_case[request_id]:
                if ack.action == "export" and not case.terminal:
                    fragment = None
                    if answer.export is not None:
                        fragment = await tx.keys.encrypt(
                            case.subject,
                            f"fragment:{case.request_id}:{ack.system}",
                            json.dumps(answer.export),
                        )
                    await store.put_fragment(conn, case.request_id, ack.system, ack.status, fragment)
                decision = cases.record_ack(case, ack.command_id, ack.status, utcnow(), answer.retained_basis,
                                            problem=answer.problem)
                case = await self.apply(tx, decision, save=False)
            await self.save(tx, case)
        await store.drop_export_parts(conn, [uuid.UUID(a.command_id) for a in acks
                                             if a is not None and a.first and a.action == "export"])
