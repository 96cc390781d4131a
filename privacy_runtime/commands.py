"""Commands to downstream systems, tracked to acknowledgement.

`issue` writes a command row and its `privacy-commands.<system>` event in the caller's transaction.
Command ids are random (or, for a case's steps, keyed with the case's secret): an id is the capability
that lets the one system that received the command answer it, and an ack settles a command only when
its id and its `system` both match the command as sent.

`resend_due` re-sends every unacknowledged command whose backoff has elapsed (same `command_id`, new
event id, so a system that deduplicates by event id still sees the retry); `report_overdue` reports
commands past `respond_by` once each (metric + audit). `acknowledge` records an ack from `privacy-acks`.

What a `failed` answer means is the issuer's choice (`CommandPolicy.retry_failed`): dsar settles it and
hands the case to an operator; consent keeps the command outstanding, so an opt-out a system could not
apply is re-sent with backoff and reported past `respond_by` like one never answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from privacy_runtime import metrics
from privacy_runtime.command_codec import AckIn, Command, CommandEncoder
from privacy_runtime.outbox import queue_statement
from privacy_runtime.subject_locks import try_lock_subjects
from privacy_runtime.unit_of_work import Runtime, UnitOfWork
from schemas.enums import AckStatus, CommandAction

log = logging.getLogger(__name__)


#: Commands that set a system's answer for one purpose: the newest one for a purpose is the one that counts.
OPT_OUT_ACTIONS = (CommandAction.SUPPRESS, CommandAction.UNSUPPRESS, CommandAction.REVOKE_SHARING,
                   CommandAction.RESTORE_SHARING)


@dataclass(frozen=True)
class CommandPolicy:
    respond_within: timedelta = timedelta(days=7)
    resend_base: timedelta = timedelta(seconds=30)
    resend_max: timedelta = timedelta(hours=6)
    #: A `failed` answer leaves the command outstanding (re-sent, reported overdue) instead of settling it.
    retry_failed: bool = False

    @classmethod
    def from_settings(cls, settings: Any, *, retry_failed: bool = False) -> CommandPolicy:
        return cls(
            respond_within=timedelta(seconds=settings.command_respond_within_seconds),
            resend_base=timedelta(seconds=settings.command_resend_base_seconds),
            resend_max=timedelta(seconds=settings.command_resend_max_seconds),
            retry_failed=retry_failed,
        )

    def next_delay(self, attempts: int) -> timedelta:
        """Exponential backoff with +/-20% jitter so retries of a burst do not arrive together."""
        base = min(self.resend_base * (2 ** max(0, attempts - 1)), self.resend_max)
        return base * random.uniform(0.8, 1.2)


@dataclass(frozen=True)
class CommandSpec:
    """A command to send, before it has an id (see `CommandTracker.issue_many`)."""

    subject: str
    system: str
    action: str
    purpose: str | None = None
    request_id: str | None = None
    #: Set when the caller decided the id already (a case's step): issuing it twice sends it once.
    command_id: str | None = None


@dataclass(frozen=True)
class Ack:
    command_id: str
    system: str
    status: str
    subject: str
    request_id: str | None
    action: str
    first: bool  # False when the command was already acknowledged


#: For `issue_many`: the message at position n is queued only if the command id at position n was inserted.
_NEW_COMMANDS_ONLY = "WHERE ($1::uuid[])[m.n::int] IN (SELECT command_id FROM inserted)"


class CommandTracker:
    """Issues commands and settles them by their acks, in the caller's unit of work."""

    def __init__(self, policy: CommandPolicy):
        self.policy = policy
        self.encoder = CommandEncoder()

    async def issue(
        self,
        tx: UnitOfWork,
        *,
        subject: str,
        system: str,
        action: str,
        purpose: str | None = None,
        request_id: str | None = None,
        fields: dict[str, str] | None = None,
        respond_by: datetime | None = None,
        command_id: str | None = None,
    ) -> str:
        now = datetime.now(UTC)
        command_id = command_id or str(uuid.uuid4())
        respond_by = respond_by or now + self.policy.respond_within
        sealed = (
            await tx.keys.encrypt(subject, f"command:{command_id}", json.dumps(fields))
            if fields
            else None
        )
        inserted = await tx.conn.fetchval(
            "INSERT INTO commands (command_id, subject, system, action, purpose, request_id, fields_sealed, "
            "respond_by, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "ON CONFLICT (command_id) DO NOTHING RETURNING command_id",
            uuid.UUID(command_id), subject, system, action, purpose,
            uuid.UUID(request_id) if request_id else None, sealed, respond_by,
            now + self.policy.next_delay(1),
        )
        if inserted is None:
            return command_id
        await tx.outbox.write([self.encoder.encode(Command(
            uuid.UUID(command_id), subject, system, action, purpose, uuid.UUID(request_id) if request_id else None,
            respond_by, fields,
        ), source=tx.outbox.source)])
        metrics.COMMANDS_SENT.labels(system=system, action=action).inc()
        return command_id

    async def issue_many(self, tx: UnitOfWork, specs: list[CommandSpec]) -> list[str]:
        """Issue many field-less commands (suppress, erase, ...) in one round trip; returns their ids.

        These carry no PII, so their events are not sealed and no data key is needed. A spec whose
        `command_id` was issued before is not sent again."""
        if not specs:
            return []
        now = datetime.now(UTC)
        respond_by = now + self.policy.respond_within
        command_ids = [uuid.UUID(c.command_id) if c.command_id else uuid.uuid4() for c in specs]
        request_ids = [uuid.UUID(c.request_id) if c.request_id else None for c in specs]
        messages = [
            self.encoder.encode(
                Command(command_id, spec.subject, spec.system, spec.action, spec.purpose, request_id, respond_by),
                source=tx.outbox.source, time=now,
            )
            for command_id, request_id, spec in zip(command_ids, request_ids, specs, strict=True)
        ]
        # The commands and their events in one round trip: an event is queued only for a command new to
        # the table (the message's position picks its command id).
        inserted = {
            row["command_id"]
            for row in await tx.conn.fetch(
                "WITH inserted AS (INSERT INTO commands (command_id, subject, system, action, purpose, request_id, "
                "respond_by, next_attempt_at) SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], "
                "$5::text[], $6::uuid[], $7::timestamptz[], $8::timestamptz[]) "
                "ON CONFLICT (command_id) DO NOTHING RETURNING command_id), "
                f"queued AS ({queue_statement(9, _NEW_COMMANDS_ONLY)}) "
                "SELECT command_id FROM inserted",
                command_ids, [c.subject for c in specs], [c.system for c in specs], [c.action for c in specs],
                [c.purpose for c in specs], request_ids,
                [respond_by] * len(specs), [now + self.policy.next_delay(1) for _ in specs],
                *await tx.outbox.columns(messages),
            )
        }
        sent: Counter[tuple[str, str]] = Counter(
            (spec.system, spec.action) for command_id, spec in zip(command_ids, specs, strict=True)
            if command_id in inserted
        )
        for (system, action), count in sent.items():
            metrics.COMMANDS_SENT.labels(system=system, action=action).inc(count)
        return [str(c) for c in command_ids]

    async def resend_due(self, tx: UnitOfWork, limit: int = 500) -> int:
        """Re-send what is due; returns how many were re-sent.

        An opt-out or opt-in that a newer one for the same subject, system and purpose followed is not
        re-sent but settled as superseded: arriving after the newer one, it would turn the system back
        to the older answer. The check holds the subject's lock (a subject busy elsewhere waits for the
        next pass), so a newer command cannot be committed and published between check and re-send."""
        now = datetime.now(UTC)
        conn = tx.conn
        rows = await conn.fetch(
            "SELECT * FROM commands WHERE acked_at IS NULL AND next_attempt_at <= $1 "
            "ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            now, limit,
        )
        rows = await self._drop_superseded(conn, rows, now)
        for row in rows:
            subject = row["subject"]
            command_id = str(row["command_id"])
            fields = None
            if row["fields_sealed"] is not None:
                plain = await tx.keys.decrypt(subject, f"command:{command_id}", row["fields_sealed"])
                fields = json.loads(plain) if plain else None
            if await tx.keys.is_erased(subject) and row["action"] != "erase":
                # Nothing more to tell a system about a subject whose data no longer exists here.
                await conn.execute(
                    "UPDATE commands SET acked_at = $2, ack_status = 'superseded' WHERE command_id = $1",
                    row["command_id"], now,
                )
                continue
            await tx.outbox.write([self.encoder.encode(Command.from_row(row, fields), source=tx.outbox.source)])
            attempts = row["attempts"] + 1
            await conn.execute(
                "UPDATE commands SET attempts = $2, next_attempt_at = $3 WHERE command_id = $1",
                row["command_id"], attempts, now + self.policy.next_delay(attempts),
            )
            metrics.COMMANDS_RESENT.labels(system=row["system"]).inc()
        return len(rows)

    async def _drop_superseded(
        self, conn: asyncpg.Connection, rows: list[asyncpg.Record], now: datetime
    ) -> list[asyncpg.Record]:
        # Only the consent service's own answers (no request_id): a case's step is one of its request's
        # steps, waited for by the case, and a second request's command must not settle it.
        answers = [r for r in rows if r["action"] in OPT_OUT_ACTIONS and r["purpose"] is not None
                   and r["request_id"] is None]
        if not answers:
            return rows
        locked = await try_lock_subjects(conn, {r["subject"] for r in answers})
        busy = {r["command_id"] for r in answers if r["subject"] not in locked}
        superseded = {
            r["command_id"] for r in await conn.fetch(
                "UPDATE commands c SET acked_at = $3, ack_status = 'superseded' WHERE c.command_id = ANY($1::uuid[]) "
                "AND EXISTS (SELECT 1 FROM commands n WHERE n.subject = c.subject AND n.system = c.system "
                "AND n.purpose = c.purpose AND n.action = ANY($2::text[]) AND n.request_id IS NULL "
                "AND n.issued_seq > c.issued_seq) "
                "RETURNING c.command_id",
                [r["command_id"] for r in answers if r["subject"] in locked], list(OPT_OUT_ACTIONS), now,
            )
        }
        return [r for r in rows if r["command_id"] not in busy and r["command_id"] not in superseded]

    async def report_overdue(self, tx: UnitOfWork, limit: int = 500) -> int:
        """Report each unacknowledged command past `respond_by` once (metric + audit entry).

        Apart from re-sending: with the backoff at its cap a re-send may be hours after the deadline."""
        rows = await tx.conn.fetch(
            "UPDATE commands SET overdue_reported = true WHERE command_id IN ("
            "SELECT command_id FROM commands WHERE acked_at IS NULL AND NOT overdue_reported AND respond_by <= $1 "
            "ORDER BY respond_by LIMIT $2 FOR UPDATE SKIP LOCKED) "
            "RETURNING command_id, subject, system, action, respond_by, attempts",
            datetime.now(UTC), limit,
        )
        for row in rows:
            metrics.COMMANDS_OVERDUE_REPORTED.labels(system=row["system"]).inc()
            await tx.audit.record(
                "command_overdue", subject=row["subject"], ref=str(row["command_id"]),
                detail={"system": row["system"], "action": row["action"],
                        "respond_by": row["respond_by"].isoformat(), "attempts": row["attempts"]},
            )
        return len(rows)

    async def acknowledge_many(self, tx: UnitOfWork, acks: Sequence[AckIn]) -> list[Ack | None]:
        """Record a batch of acks in two round trips; one result per ack, in order.

        None for an ack of a command that is not ours (every service sees every ack). The first ack
        of a command is the one that counts (`first`); repeats, in this batch or later, are not."""
        if not acks:
            return []
        conn = tx.conn
        rows: dict[uuid.UUID, asyncpg.Record] = {
            row["command_id"]: row
            for row in await conn.fetch(
                "SELECT command_id, system, subject, request_id, action, acked_at FROM commands "
                "WHERE command_id = ANY($1::uuid[]) ORDER BY command_id FOR UPDATE",
                list({ack.command_id for ack in acks}),
            )
        }
        results: list[Ack | None] = []
        settled: dict[uuid.UUID, tuple[str, str]] = {}
        failed: dict[uuid.UUID, str] = {}
        for ack in acks:
            row = rows.get(ack.command_id)
            if row is None:
                results.append(None)
                continue
            if row["system"] != ack.system:
                # A command id is the capability to answer that one command, and only as the system it
                # was sent to: anything else is recorded and settles nothing.
                log.warning("ack for command %s names system %s, expected %s", ack.command_id, ack.system,
                            row["system"])
                await tx.audit.record(
                    "command_ack_ignored", subject=row["subject"], ref=str(ack.command_id),
                    detail={"system": ack.system, "sent_to": row["system"], "status": ack.status,
                            "why": "the answer names another system than the command was sent to"},
                )
                results.append(None)
                continue
            first = row["acked_at"] is None and row["command_id"] not in settled
            if first and ack.status == AckStatus.FAILED and self.policy.retry_failed:
                failed[row["command_id"]] = (ack.detail or "")[:1000]
                metrics.COMMANDS_ACKNOWLEDGED.labels(system=ack.system, status=ack.status).inc()
                await tx.audit.record(  # the system's own words stay in the commands table, sealed
                    "command_failed", subject=row["subject"], ref=str(ack.command_id),
                    detail={"system": ack.system, "action": row["action"], "outcome": "re-sent until applied"},
                )
                first = False
            elif first:
                settled[row["command_id"]] = (ack.status, (ack.detail or "")[:1000])
                metrics.COMMANDS_ACKNOWLEDGED.labels(system=ack.system, status=ack.status).inc()
            results.append(Ack(
                command_id=str(ack.command_id), system=ack.system, status=ack.status, subject=row["subject"],
                request_id=str(row["request_id"]) if row["request_id"] else None, action=row["action"],
                first=first,
            ))
        # The system's own words may name the person: kept sealed with the subject's key, shredded with it.
        details = await self._seal_details(tx, {**{c: v[1] for c, v in settled.items()}, **failed}, rows)
        if settled:
            await conn.execute(
                "UPDATE commands c SET acked_at = now(), ack_status = a.status, ack_detail_sealed = a.detail "
                "FROM unnest($1::uuid[], $2::text[], $3::bytea[]) AS a(command_id, status, detail) "
                "WHERE c.command_id = a.command_id",
                list(settled), [v[0] for v in settled.values()], [details.get(c) for c in settled],
            )
        if failed:
            await conn.execute(
                "UPDATE commands c SET ack_status = 'failed', ack_detail_sealed = a.detail "
                "FROM unnest($1::uuid[], $2::bytea[]) AS a(command_id, detail) WHERE c.command_id = a.command_id",
                list(failed), [details.get(c) for c in failed],
            )
        return results

    async def _seal_details(
        self, tx: UnitOfWork, details: dict[uuid.UUID, str], rows: dict[uuid.UUID, asyncpg.Record]
    ) -> dict[uuid.UUID, bytes | None]:
        subjects: dict[uuid.UUID, str] = {r["command_id"]: r["subject"] for r in rows.values()}
        wanted = {c: text for c, text in details.items() if text}
        if not wanted:
            return {}
        # An erased subject has no key, and nothing of theirs is kept: the words go.
        erased = await tx.keys.ensure_keys({subjects[c] for c in wanted})
        return {
            c: None if subjects[c] in erased else tx.keys.encrypt_cached(subjects[c], f"ack-detail:{c}", text)
            for c, text in wanted.items()
        }

    async def refresh_gauges(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(
            "SELECT system, count(*) AS outstanding, count(*) FILTER (WHERE respond_by < now()) AS overdue "
            "FROM commands WHERE acked_at IS NULL GROUP BY system"
        )
        seen = set()
        for row in rows:
            seen.add(row["system"])
            metrics.COMMANDS_OUTSTANDING.labels(system=row["system"]).set(row["outstanding"])
            metrics.COMMANDS_OVERDUE.labels(system=row["system"]).set(row["overdue"])
        for labels in list(metrics.COMMANDS_OUTSTANDING._metrics):  # reset systems now at zero
            if labels[0] not in seen:
                metrics.COMMANDS_OUTSTANDING.labels(system=labels[0]).set(0)
                metrics.COMMANDS_OVERDUE.labels(system=labels[0]).set(0)


async def resend_loop(runtime: Runtime, tracker: CommandTracker, interval: float = 1.0,
                      gauge_interval: float | None = None) -> None:
    """Background loop run by services that issue commands.

    Re-sends every `interval`; reports overdue commands and counts outstanding ones every
    `gauge_interval` only (COMMAND_CHECK_SECONDS, about a scrape interval): both read unacknowledged
    commands, which a system that is down for a day makes many, and each pass competes with the
    stream's transactions."""
    if gauge_interval is None:
        gauge_interval = float(getattr(runtime.settings, "command_check_seconds", 15.0))
    next_count = 0.0
    while True:
        try:
            async with runtime.transaction() as tx:
                await tracker.resend_due(tx)
            if time.monotonic() >= next_count:
                next_count = time.monotonic() + gauge_interval
                async with runtime.transaction() as tx:
                    await tracker.report_overdue(tx)
                async with runtime.pool.acquire() as conn:
                    await tracker.refresh_gauges(conn)
        except Exception as exc:
            log.warning("command resend pass failed: %s", exc)
        await asyncio.sleep(interval)


# --- operator views of the commands table (read by the office through /v1/admin/commands) ----------


async def debt_by_system(conn: asyncpg.Connection, now: datetime) -> list[asyncpg.Record]:
    """Per system: commands not yet answered, how many are past `respond_by`, and the oldest one.
    Reads only unacknowledged rows (the partial index `commands_outstanding`)."""
    return list(await conn.fetch(
        "SELECT system, count(*) AS outstanding, count(*) FILTER (WHERE respond_by < $1) AS overdue, "
        "min(created_at) AS oldest, min(respond_by) AS oldest_respond_by "
        "FROM commands WHERE acked_at IS NULL GROUP BY system ORDER BY system",
        now,
    ))


async def outstanding_of(conn: asyncpg.Connection, system: str, limit: int = 50) -> list[asyncpg.Record]:
    """A system's oldest unanswered commands (no command id: it is the system's capability to answer)."""
    return list(await conn.fetch(
        "SELECT request_id, action, purpose, created_at, respond_by, attempts, ack_status "
        "FROM commands WHERE acked_at IS NULL AND system = $1 ORDER BY created_at LIMIT $2",
        system, limit,
    ))


async def commands_of_request(conn: asyncpg.Connection, request_id: str) -> list[asyncpg.Record]:
    """Every command of a case with its answer, in the order issued."""
    return list(await conn.fetch(
        "SELECT system, action, purpose, created_at, respond_by, attempts, acked_at, ack_status "
        "FROM commands WHERE request_id = $1 ORDER BY issued_seq",
        uuid.UUID(request_id),
    ))


async def resend_now(conn: asyncpg.Connection, system: str, request_id: str | None = None) -> int:
    """Make a system's unanswered commands (of one case, or all) due now: the resend loop sends them
    on its next pass, with the same command ids, as it would after the backoff. Returns how many."""
    value = await conn.fetchval(
        "WITH r AS (UPDATE commands SET next_attempt_at = now() WHERE acked_at IS NULL AND system = $1 "
        "AND ($2::uuid IS NULL OR request_id = $2) RETURNING 1) SELECT count(*) FROM r",
        system, uuid.UUID(request_id) if request_id else None,
    )
    return int(value)
