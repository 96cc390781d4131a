"""DSAR use cases: open cases from the request topics, collect acks, verify identity, operator
actions and timers. Each runs in one transaction: it reads through `store`, decides through `cases`
(pure), and carries out the decision's effects (status events, notifications, commands, audit) in
that same transaction, so a crash never loses or duplicates an effect.

A transaction that changes a case holds the case's subject's lock (`processor.lock_subjects`) before
the case's row lock, as the stream processor does for every batch: a subject's cases then change one
transaction at a time, whichever path changes them, and a decision about one case (lifting a
restriction) reads the subject's other cases as committed, never while another path changes them
(verifying a new restriction). Subject first, then case rows: the other order would let a transaction
holding a case wait for the subject while a batch holding the subject waits for the case.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any, TypeVar

import asyncpg

from privacy_runtime import export_chunks, metrics
from privacy_runtime.commands import Ack, AckIn, CommandSpec, CommandTracker, resend_now
from privacy_runtime.crypto import SubjectErased, open_sealed, seal
from privacy_runtime.notice_secrets import NoticeSecrets
from privacy_runtime.processor import Inbound, lock_subjects, try_lock_subjects
from privacy_runtime.unit_of_work import Runtime, UnitOfWork
from schemas.enums import CaseRight, CaseStatus, Locale, NotificationCategory
from schemas.events import DsarStatus, NotificationRequested
from schemas.fields import MAX_EXPORT_TOTAL_BYTES
from schemas.topics import DSAR_STATUS, NOTIFICATION_REQUESTED
from services.dsar import cases, inactivity, package, store
from services.dsar.cases import Case, Decision
from services.dsar.sealing import CaseTexts, operator_words
from services.dsar.settings import DsarSettings
from services.dsar.verification import CodeHasher, Verdict, judge, new_code

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Notification event ids derive from the notification id, so a replayed effect is a duplicate.
NOTIFICATION_NAMESPACE = uuid.UUID("a3c0e6f2-8b7d-4c1e-9f25-3d6b0a4e8c71")
#: The dsar service does not know the subject's language; the notifier's directory may override it.
DEFAULT_LOCALE = Locale.SV
#: Errors that make an HTTP-driven transaction worth one more try (two requests on one case).
RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


class UnknownCase(LookupError):
    pass


@dataclass(frozen=True)
class Answer:
    """A system's answer to a command, whole (an export in parts once all parts are here)."""

    command_id: str
    system: str
    status: str
    detail: str | None
    export: dict[str, Any] | None
    retained_basis: str | None
    #: Why the answer cannot be used (it counts as `failed`; the reason goes to the operator).
    problem: str | None = None


@dataclass(frozen=True)
class VerifyResult:
    status: int
    body: dict[str, Any]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Workflow:
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

    # --- subject activity (for the retention of inactive subjects) ----------------------------------

    async def on_activity(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        """`user-registered`, `consent-changed`: only who was active when is kept (no PII). Replays
        are harmless (the newest time wins, and a time that moves nothing cancels nothing), so these
        topics need no per-event idempotency claims."""
        await self._record_activity(tx, batch)

    async def _record_activity(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        conn = tx.conn
        now = utcnow()
        latest = inactivity.latest_activity(((i.event.subject, i.event.time) for i in batch), now)
        digest = self.keyring.subject_digest
        moved = await store.record_activity(conn, {s: (at, digest(s)) for s, at in latest.items()})
        # A subject seen again is no longer inactive: their retention erasure waiting for review goes.
        for subject, request_id in await store.retention_reviews(conn, moved):
            case = await self.texts.opened(conn, await store.lock_case(conn, request_id))
            if case is not None:
                await self._apply_activity(tx, case, latest[subject], now)

    async def _apply_activity(self, tx: UnitOfWork, case: Case, active_at: datetime,
                              now: datetime) -> Case:
        cutoff = inactivity.inactive_cutoff(now, self.data_map.inactive_subject_retention_days)
        decision = cases.subject_active(case, active_at, cutoff, now)
        return await self.apply(tx, decision) if decision.effects else case

    async def _record_requests(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        own = [i for i in batch if inactivity.counts_as_activity(str(i.data.requested_via))]
        await self._record_activity(tx, own)

    # --- intake ---------------------------------------------------------------------------------

    async def on_erasure_requested(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        await self._record_requests(tx, batch)
        arrived = utcnow()
        for item in batch:
            data = item.data
            case = cases.new_case(
                request_id=str(data.request_id),
                subject=item.event.subject,
                right=cases.ERASURE,
                received_at=cases.receipt_time(item.event.time, arrived),
                identity_verified=data.identity_verified,
                requested_via=str(data.requested_via),
                ground=str(data.ground),
                command_secret=secrets.token_hex(16),
            )
            await self._open(tx, case, None)

    async def on_dsar_requested(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        await self._record_requests(tx, batch)
        arrived = utcnow()
        for item in batch:
            data = item.data
            details = data.details
            corrections = dict(details.corrections) if details.corrections else None
            case = cases.new_case(
                request_id=str(data.request_id),
                subject=item.event.subject,
                right=str(data.right),
                received_at=cases.receipt_time(item.event.time, arrived),
                identity_verified=data.identity_verified,
                requested_via=str(data.requested_via),
                circumstance=str(details.circumstance) if details.circumstance else None,
                processing=str(details.processing) if details.processing else None,
                export_format=str(details.format) if details.format else None,
                corrected_fields=sorted(corrections or {}),
                command_secret=secrets.token_hex(16),
            )
            await self._open(tx, case, corrections)

    async def _open(self, tx: UnitOfWork, case: Case, corrections: dict[str, str] | None) -> None:
        conn = tx.conn
        erased = await tx.keys.is_erased(case.subject)
        sealed = None
        if corrections and not erased:
            # Correction values are PII: sealed with the subject's key, shredded with it.
            sealed = await tx.keys.encrypt(
                case.subject, f"corrections:{case.request_id}", json.dumps(corrections)
            )
        if not await store.insert_case(conn, await self.texts.sealed(tx, case), sealed):
            # Same request_id again (a resubmission, or on the other request topic): nothing new.
            await tx.audit.record(
                "case_duplicate_request",
                subject=case.subject,
                ref=case.request_id,
                detail={"right": case.right},
            )
            return
        metrics.CASES_OPENED.labels(right=case.right).inc()
        opened = await self.apply(tx, cases.open_case(
            case, self.data_map, utcnow(), subject_erased=erased,
            retention_review=not self.settings.retention_erase_without_review))
        if cases.awaits_retention_review(opened):
            # The subject may have been seen between the sweep and this case (the request travels
            # through Kafka): such activity found no case to cancel then. Locked: activity committing
            # meanwhile is read here, or finds this case once it is committed.
            last = await store.last_activity(conn, opened.subject, lock=True)
            if last is not None:
                await self._apply_activity(tx, opened, last, utcnow())

    # --- acknowledgements -----------------------------------------------------------------------

    async def on_acks(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        conn = tx.conn
        acks = [item.data for item in batch]
        ids = {a.command_id for a in acks}
        exports = await store.export_commands(conn, list(ids)) if ids else {}
        # Parts first: a complete export settles its command before a repeat answer in this batch.
        answers = await self._collect_parts(tx, [a for a in acks if a.chunked], exports)
        for data in acks:
            if data.chunked:
                continue
            answer = Answer(str(data.command_id), str(data.system), str(data.status), data.detail, data.export,
                            data.retained_basis)
            command = exports.get(data.command_id)
            if command is not None and answer.status == "done" and answer.export is None:
                if await store.has_export_parts(conn, data.command_id):
                    continue  # its export is arriving in parts: this is a repeat, the parts answer
                why = "it answered done without the export"
                answer = replace(answer, status="failed", problem=why)
            answers.append(answer)
        await self._settle(tx, answers)

    async def _collect_parts(
        self, tx: UnitOfWork, parts: list[Any], exports: Mapping[uuid.UUID, store.ExportCommand]
    ) -> list[Answer]:
        """Keep the parts of exports answered in several messages (sealed); the answers now complete (or
        that can no longer be used: too large, inconsistent, digest mismatch) are returned to settle."""
        conn = tx.conn
        rows: list[tuple[uuid.UUID, str, int, int, str, str, int, bytes]] = []
        touched: dict[tuple[uuid.UUID, str], store.ExportCommand] = {}
        for data in parts:
            command = exports.get(data.command_id)
            if command is None or command.acked:
                continue  # another service's command, or answered already
            if command.system != str(data.system):
                await self._ignored_ack(tx, command.subject, str(data.command_id), str(data.system), command.system)
                continue
            sha = data.export_sha256.lower()
            try:
                sealed = await tx.keys.encrypt(
                    command.subject, f"export-part:{command.command_id}:{sha}:{data.part}", data.export_chunk)
            except SubjectErased:
                continue  # erased meanwhile: nothing of theirs is kept, nor will be exported
            assert sealed is not None
            rows.append((command.command_id, sha, data.part, data.parts, command.request_id, command.system,
                         len(data.export_chunk.encode("utf-8")), sealed))
            touched[(command.command_id, sha)] = command
        await store.put_export_parts(conn, rows)
        # Its answer is arriving: the command is not re-sent meanwhile (it would be exported again).
        await store.hold_resends(conn, sorted({command_id for command_id, _ in touched}))
        answers: list[Answer] = []
        for (command_id, sha), command in sorted(touched.items(), key=lambda item: (str(item[0][0]), item[0][1])):
            held = await store.parts_held(conn, command_id, sha)
            # Sizes and counts are known without opening the slices.
            if held.total_bytes > MAX_EXPORT_TOTAL_BYTES:
                outcome: export_chunks.Assembly = export_chunks.Unusable(
                    f"the export is over {MAX_EXPORT_TOTAL_BYTES} bytes, the limit per system")
            elif held.parts_min != held.parts_max:
                outcome = export_chunks.Unusable(export_chunks.size_problem(
                    export_chunks.Part(r["part"], r["parts"], "", sha)
                    for r in await store.export_parts(conn, command_id, sha)) or "the parts are inconsistent")
            elif held.held < held.parts_max:
                continue  # waiting for the rest
            else:
                pieces = [export_chunks.Part(r["part"], r["parts"], await tx.keys.decrypt(
                    command.subject, f"export-part:{command_id}:{sha}:{r['part']}", bytes(r["chunk_sealed"]),
                ) or "", sha) for r in await store.export_parts(conn, command_id, sha)]
                outcome = export_chunks.assemble(pieces)
            if isinstance(outcome, export_chunks.Complete):
                answers.append(Answer(str(command_id), command.system, "done", None, outcome.export, None))
            elif isinstance(outcome, export_chunks.Unusable):
                log.warning("export of %s for %s cannot be used: %s", command.system, command.request_id,
                            outcome.reason)
                answers.append(Answer(str(command_id), command.system, "failed", outcome.reason, None, None,
                                      problem=outcome.reason))
        return answers

    async def _ignored_ack(self, tx: UnitOfWork, subject: str, command_id: str, claimed: str,
                           expected: str) -> None:
        log.warning("ack for command %s names system %s, not the system it was sent to", command_id, claimed)
        await tx.audit.record("command_ack_ignored", subject=subject, ref=command_id,
                                        detail={"system": claimed, "sent_to": expected,
                                                "why": "the answer names another system than the command"})

    async def _settle(self, tx: UnitOfWork, answers: list[Answer]) -> None:
        """Record answers to commands and move their cases on (the caller holds their subjects' locks)."""
        conn = tx.conn
        acks = await self.tracker.acknowledge_many(
            tx, [AckIn(a.command_id, a.system, a.status, a.detail) for a in answers]
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
                await self._settle(tx, [Answer(str(row["command_id"]), row["system"], "failed", why, None, None,
                                                 problem=why)])

    # --- carrying out decisions ---------------------------------------------------------------

    async def apply(self, tx: UnitOfWork, decision: Decision, *, save: bool = True) -> Case:
        """Carry out a decision's effects in order; then save the case (unless the caller saves it)."""
        conn = tx.conn
        case = decision.case
        changes = [e for e in decision.effects if isinstance(e, cases.StatusChanged)]
        unsent: list[str] = []
        for effect in decision.effects:
            if isinstance(effect, cases.StatusChanged):
                # Only the last status of a decision carries the case's reason (rejection, review).
                reason = case.status_reason if effect is changes[-1] else case.extension_reason
                await self._status_changed(tx, case, effect, reason)
            elif isinstance(effect, cases.DeadlineExtended):
                await self._publish_status(tx, case, case.status, effect.reason)
                await tx.audit.record(
                    "case_extended",
                    subject=case.subject,
                    ref=case.request_id,
                    detail={
                        "months": effect.months,
                        "due_at": case.due_at.isoformat(),
                        "original_due_at": case.original_due_at.isoformat(),
                    },
                    sealed={"reason": effect.reason},  # the operator's words: shredded with the subject
                )
            elif isinstance(effect, cases.Notify):
                await self._notify(tx, case, effect)
            elif isinstance(effect, cases.IssueCommands):
                unsent += await self._issue(tx, case, effect.steps)
            elif isinstance(effect, cases.SendVerificationCode):
                await self._send_code(tx, case)
            elif isinstance(effect, cases.AssembleExport):
                await self._assemble_export(tx, case)
            elif isinstance(effect, cases.CancelOtherCases):
                await self._cancel_others(tx, case, effect.reason)
            elif isinstance(effect, cases.ShredSubject):
                # Last: the completion email and status events above are unsealed and survive this.
                await store.erase_subject_records(conn, case.subject)
                await tx.keys.shred_subject(case.subject)
                await tx.audit.record(
                    "subject_shredded",
                    subject=case.subject,
                    ref=case.request_id,
                    detail={"system": "dsar"},
                )
            elif isinstance(effect, cases.Note):
                if effect.action == "case_manual_review":  # someone has to act: say so where it is seen
                    log.warning("case %s waits for manual review: %s", case.request_id, effect.detail.get("reason"))
                await tx.audit.record(
                    effect.action, subject=case.subject, ref=case.request_id, detail=dict(effect.detail)
                )
        if unsent:
            # Commands that could not be sent would never be answered: the case decides what now.
            case = await self.apply(tx, cases.rectify_not_sent(case, unsent, utcnow()), save=False)
        if save:
            await self.save(tx, case)
        return case

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
        await tx.audit.record(
            f"case_{change.status}", subject=case.subject, ref=case.request_id, detail=detail,
            sealed=sealed,
        )
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
        await tx.audit.record(
            "notification_requested",
            subject=case.subject,
            ref=case.request_id,
            detail={"template": notify.template, "id": notification_id},
        )

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
        await tx.audit.record(
            "export_assembled",
            subject=case.subject,
            ref=case.request_id,
            detail={
                "systems": sorted(fragments),
                "media_type": built.media_type,
                "bytes": len(built.content),
            },
        )
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

    # --- cases changed outside the stream processor (HTTP, timers) -------------------------------

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

    # --- identity verification (HTTP) ---------------------------------------------------------

    async def verify_code(self, request_id: str, code: str) -> VerifyResult:
        return await self._retrying(lambda: self._verify_code(request_id, code))

    async def _verify_code(self, request_id: str, code: str) -> VerifyResult:
        contact = self.settings.privacy_contact_email
        max_attempts = self.settings.verification_max_attempts
        async with self.runtime.transaction() as tx:
            # The subject's lock also makes the per-subject count of wrong codes below exact.
            case = await self._lock_case(tx.conn, request_id)
            if case is None:
                return VerifyResult(404, {"error": "unknown request"})
            if case.status == cases.CLOSED_UNVERIFIED:
                return VerifyResult(
                    410,
                    {
                        "error": "the request was closed because identity was not verified "
                        "in time; please make a new request"
                    },
                )
            if case.status != cases.IDENTITY_PENDING:
                return VerifyResult(409, {"error": f"the request is {case.status}; there is nothing to verify"})
            verification = await store.lock_verification(tx.conn, request_id)
            window = self.settings.verification_failure_window_seconds
            if await store.recent_failed_verifications(tx.conn, case.subject, window) >= \
                    self.settings.verification_max_failures_per_subject:
                return VerifyResult(429, {"error": "too many wrong codes for this person's requests recently; "
                                                   f"try again later or contact {contact}"})
            now = utcnow()
            matches = verification is not None and self.hasher.matches(request_id, code, verification.code_hash)
            verdict = judge(verification, matches, now)
            if verdict is Verdict.MISSING:
                return VerifyResult(409, {"error": "no verification code is outstanding for this request"})
            assert verification is not None
            if verdict is Verdict.LOCKED:
                return VerifyResult(429, {"error": f"too many wrong codes: verification is locked; contact {contact}"})
            if verdict is Verdict.EXPIRED:
                if verification.codes_issued < self.settings.verification_max_codes:
                    await self._send_code(tx, case)
                    return VerifyResult(410, {"error": "the code has expired; a new code has been sent by email"})
                return VerifyResult(
                    410, {"error": f"the code has expired and no more codes can be sent; contact {contact}"}
                )
            if verdict is Verdict.VERIFIED:
                await store.mark_verified(tx.conn, request_id)
                updated = await self.apply(tx, cases.verify(case, self.data_map, now))
                return VerifyResult(200, {"request_id": request_id, "status": updated.status, "verified": True})
            attempts = await store.count_failed_attempt(
                tx.conn, request_id, lock=verification.attempts + 1 >= max_attempts
            )
            await store.record_failed_verification(tx.conn, case.subject)
            await tx.audit.record(
                "verification_failed",
                subject=case.subject,
                ref=request_id,
                detail={"attempts": attempts},
            )
        if attempts >= max_attempts:
            return VerifyResult(429, {"error": f"too many wrong codes: verification is locked; contact {contact}"})
        left = max_attempts - attempts
        return VerifyResult(
            403,
            {"error": f"wrong code; {left} attempt{'s' if left != 1 else ''} left", "attempts_left": left},
        )

    # --- operator actions (HTTP) ------------------------------------------------------------------

    async def operate(self, request_id: str, action: str, decide: Callable[[Case, datetime], Decision],
                      actor: str = "operator") -> Case:
        """Run one operator decision on a case; raises UnknownCase or CaseError. `actor` names the
        operator in the audit trail (`operator:<name>` when the office says who)."""
        return await self._operate(request_id, action, lambda case, now, _others: decide(case, now), actor=actor)

    async def lift_restriction(self, request_id: str, actor: str = "operator") -> Case:
        """Lift a completed restriction, knowing the subject's other cases (another may still hold)."""
        return await self._operate(request_id, "lift", lambda case, _now, others: cases.lift_restriction(
            case, self.data_map, others), with_others=True, actor=actor)

    async def resend(self, request_id: str, system: str, actor: str = "operator") -> tuple[Case, int]:
        """Re-send a case's unanswered commands to one system now (same command ids); audited."""
        async with self.runtime.transaction() as tx:
            case = await store.get_case(tx.conn, request_id)
            if case is None:
                raise UnknownCase(request_id)
            count = await resend_now(tx.conn, system, request_id)
            if count == 0:
                raise cases.CaseError(f"no command of this request waits for an answer from {system}")
            await tx.audit.record("operator_resend", subject=case.subject, ref=request_id,
                                            actor=actor, detail={"system": system, "commands": count})
        return case, count

    async def _operate(self, request_id: str, action: str,
                       decide: Callable[[Case, datetime, list[Case]], Decision], *, with_others: bool = False,
                       actor: str = "operator") -> Case:
        async def attempt() -> Case:
            async with self.runtime.transaction() as tx:
                case = await self._lock_case(tx.conn, request_id)
                if case is None:
                    raise UnknownCase(request_id)
                # Under the subject's lock: no other case of the subject changes until this commits.
                others = await store.cases_of(tx.conn, case.subject) if with_others else []
                decision = decide(case, utcnow(), others)
                await tx.audit.record(
                    f"operator_{action}",
                    subject=case.subject,
                    ref=request_id,
                    actor=actor,
                    detail={"status": case.status},
                )
                return await self.apply(tx, decision)

        return await self._retrying(attempt)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        for tries in range(3):
            try:
                return await attempt()
            except RETRYABLE:
                if tries == 2:
                    raise
                await asyncio.sleep(0.05 * (tries + 1))
        raise AssertionError("unreachable")

    # --- timers ---------------------------------------------------------------------------------

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

    # --- export download (HTTP) -------------------------------------------------------------------

    async def describe_export(self, token: str) -> tuple[str, store.ExportInfo | None]:
        """What the download page shows (GET/HEAD): read only, so a link scanner uses up nothing.
        ('ok', info), or ('unknown' | 'expired' | 'used_up' | 'gone', None)."""
        token_hash = sha256(token.encode()).hexdigest()
        async with self.runtime.pool.acquire() as conn:
            info = await store.peek_export(conn, token_hash)
        if info is None:
            return "unknown", None
        if info.expires_at <= utcnow():
            return "expired", None
        if info.downloads_left <= 0:
            return "used_up", None
        if info.size == 0:
            return "gone", None
        return "ok", info

    async def download(self, token: str) -> tuple[str, store.ExportRow | None, bytes | None]:
        token_hash = sha256(token.encode()).hexdigest()
        async with self.runtime.transaction() as tx:
            outcome, row = await store.take_download(tx.conn, token_hash, utcnow())
            if row is None:
                return outcome, None, None
            data_key = await tx.keys.data_key(row.subject, create=False)
            if data_key is None:
                return "erased", None, None
            content = open_sealed(data_key, row.sealed, f"export:{token_hash}".encode())
            await tx.audit.record(
                "export_downloaded",
                subject=row.subject,
                ref=row.request_id,
                detail={"downloads_left": row.downloads_left},
            )
        return "ok", row, content
