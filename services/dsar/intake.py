"""DSAR stream handlers: open cases from the request topics, keep subject activity, collect acks.

Each runs in the batch's transaction, holding the batch's subjects' locks (see `effects`)."""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from privacy_runtime import export_chunks, metrics
from privacy_runtime.command_codec import AckIn
from privacy_runtime.crypto import SubjectErased
from privacy_runtime.processor import Inbound
from privacy_runtime.unit_of_work import UnitOfWork
from schemas.enums import AckStatus, CaseRight, Right
from schemas.fields import MAX_EXPORT_TOTAL_BYTES
from services.dsar import cases, inactivity, store
from services.dsar.cases import Case
from services.dsar.effects import Answer, CaseEffects, audit_case, utcnow

log = logging.getLogger(__name__)


def _request_case(item: Inbound, arrived: datetime, right: CaseRight | Right, **details: Any) -> Case:
    """The case a request event opens (`details`: the right's own fields), with its command secret
    drawn here (see `Case.command_secret`)."""
    data = item.data
    return cases.new_case(
        request_id=str(data.request_id), subject=item.event.subject, right=right,
        received_at=cases.receipt_time(item.event.time, arrived), identity_verified=data.identity_verified,
        requested_via=data.requested_via, command_secret=secrets.token_hex(16), **details,
    )


class StreamHandlers(CaseEffects):
    """One handler per topic (registered in `handlers.py`); each runs in its batch's unit of work."""

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
        own = [i for i in batch if inactivity.counts_as_activity(i.data.requested_via)]
        await self._record_activity(tx, own)

    async def on_erasure_requested(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        await self._record_requests(tx, batch)
        arrived = utcnow()
        for item in batch:
            case = _request_case(item, arrived, cases.ERASURE, ground=item.data.ground)
            await self._open(tx, case, None)

    async def on_dsar_requested(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        await self._record_requests(tx, batch)
        arrived = utcnow()
        for item in batch:
            details = item.data.details
            corrections = dict(details.corrections) if details.corrections else None
            case = _request_case(
                item, arrived, item.data.right, circumstance=details.circumstance, processing=details.processing,
                export_format=details.format, corrected_fields=sorted(corrections or {}),
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
            await audit_case(tx, case, "case_duplicate_request", {"right": case.right})
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
            answer = Answer.from_event(data)
            command = exports.get(data.command_id)
            if command is not None and data.status is AckStatus.DONE and data.export is None:
                if await store.has_export_parts(conn, data.command_id):
                    continue  # its export is arriving in parts: this is a repeat, the parts answer
                why = "it answered done without the export"
                answer = replace(answer, ack=replace(answer.ack, status=AckStatus.FAILED), problem=why)
            answers.append(answer)
        await self._settle(tx, answers)

    async def _collect_parts(
        self, tx: UnitOfWork, parts: list[Any], exports: Mapping[uuid.UUID, store.ExportCommand]
    ) -> list[Answer]:
        """Keep the parts of exports answered in several messages (sealed); the answers now complete (or
        that can no longer be used: too large, inconsistent, digest mismatch) are returned to settle."""
        conn = tx.conn
        rows: list[store.ExportPart] = []
        touched: dict[tuple[uuid.UUID, str], store.ExportCommand] = {}
        for data in parts:
            command = exports.get(data.command_id)
            if command is None or command.acked:
                continue  # another service's command, or answered already
            if command.system != data.system:
                await self._ignored_ack(tx, command.subject, str(data.command_id), data.system, command.system)
                continue
            sha = data.export_sha256.lower()
            try:
                sealed = await tx.keys.encrypt(
                    command.subject, f"export-part:{command.command_id}:{sha}:{data.part}", data.export_chunk)
            except SubjectErased:
                continue  # erased meanwhile: nothing of theirs is kept, nor will be exported
            assert sealed is not None
            rows.append(store.ExportPart(command.command_id, sha, data.part, data.parts, command.request_id,
                                         command.system, len(data.export_chunk.encode("utf-8")), sealed))
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
                answers.append(Answer(AckIn(command_id, command.system, AckStatus.DONE), outcome.export))
            elif isinstance(outcome, export_chunks.Unusable):
                log.warning("export of %s for %s cannot be used: %s", command.system, command.request_id,
                            outcome.reason)
                answers.append(Answer.unusable(command_id, command.system, outcome.reason))
        return answers

    async def _ignored_ack(self, tx: UnitOfWork, subject: str, command_id: str, claimed: str,
                           expected: str) -> None:
        log.warning("ack for command %s names system %s, not the system it was sent to", command_id, claimed)
        await tx.audit.record("command_ack_ignored", subject=subject, ref=command_id,
                              detail={"system": claimed, "sent_to": expected,
                                      "why": "the answer names another system than the command"})
