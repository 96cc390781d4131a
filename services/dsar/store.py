"""DSAR persistence: SQL only. Cases are stored as their JSON value plus columns for queries."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
import orjson

from services.dsar.cases import ENUM_FIELDS, Case, Step
from services.dsar.verification import Verification

# --- case <-> row -------------------------------------------------------------------------------

_TIMES = ("received_at", "due_at", "closed_at", "identity_requested_at")


def case_to_json(case: Case) -> str:
    """The case as stored in `cases.state` (jsonb, which keeps no key order). orjson writes dataclasses
    and timezone-aware times (RFC 3339, as `isoformat`) itself: a case is saved on every batch of
    acks, so this is on a hot path."""
    return orjson.dumps(case).decode()


def case_from_json(raw: str | dict[str, Any]) -> Case:
    value = dict(orjson.loads(raw) if isinstance(raw, str) else raw)
    for name in _TIMES:
        if value.get(name) is not None:
            value[name] = datetime.fromisoformat(value[name])
    for name, kind in ENUM_FIELDS.items():
        if value.get(name) is not None:
            value[name] = kind(value[name])
    value["steps"] = tuple(Step(**s) for s in value.get("steps", ()))
    value["corrected_fields"] = tuple(value.get("corrected_fields", ()))
    value["fields_not_held"] = tuple(value.get("fields_not_held", ()))
    # A case stored before reviews had codes has only the sentence (`review_code` stays None).
    value["review_params"] = dict(value.get("review_params") or {})
    return Case(**value)


async def insert_case(conn: asyncpg.Connection, case: Case, corrections_sealed: bytes | None) -> bool:
    """Insert a new case; False when the request_id is already known (a duplicate request)."""
    inserted = await conn.fetchval(
        "INSERT INTO cases (request_id, subject, case_right, status, received_at, due_at, closed_at, "
        "manual_review, state, corrections_sealed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10) "
        "ON CONFLICT (request_id) DO NOTHING RETURNING 1",
        uuid.UUID(case.request_id),
        case.subject,
        case.right,
        case.status,
        case.received_at,
        case.due_at,
        case.closed_at,
        case.manual_review,
        case_to_json(case),
        corrections_sealed,
    )
    return inserted is not None


async def save_case(conn: asyncpg.Connection, case: Case) -> None:
    # A new due date (an extension) re-arms the reminder and the escalation for it; SET reads the old
    # row, so `due_at = $3` compares the stored date with the new one.
    await conn.execute(
        "UPDATE cases SET status = $2, due_at = $3, closed_at = $4, manual_review = $5, state = $6::jsonb, "
        "due_soon_reported = due_soon_reported AND due_at = $3, "
        "overdue_reported = overdue_reported AND due_at = $3, "
        "updated_at = now() WHERE request_id = $1",
        uuid.UUID(case.request_id),
        case.status,
        case.due_at,
        case.closed_at,
        case.manual_review,
        case_to_json(case),
    )


async def lock_case(conn: asyncpg.Connection, request_id: str) -> Case | None:
    """The case, locked for this transaction (acks, HTTP and timers may touch it at once)."""
    row = await conn.fetchrow("SELECT state FROM cases WHERE request_id = $1 FOR UPDATE", uuid.UUID(request_id))
    return case_from_json(row["state"]) if row else None


async def case_subject(conn: asyncpg.Connection, request_id: str) -> str | None:
    """The case's subject, read without a lock (a case's subject never changes)."""
    value = await conn.fetchval("SELECT subject FROM cases WHERE request_id = $1", uuid.UUID(request_id))
    return str(value) if value is not None else None


async def get_case(conn: asyncpg.Connection, request_id: str) -> Case | None:
    row = await conn.fetchrow("SELECT state FROM cases WHERE request_id = $1", uuid.UUID(request_id))
    return case_from_json(row["state"]) if row else None


async def corrections_sealed(conn: asyncpg.Connection, request_id: str) -> bytes | None:
    value = await conn.fetchval("SELECT corrections_sealed FROM cases WHERE request_id = $1", uuid.UUID(request_id))
    return bytes(value) if value is not None else None


async def open_cases_of(conn: asyncpg.Connection, subject: str, *, except_request: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT request_id FROM cases WHERE subject = $1 AND closed_at IS NULL AND request_id <> $2 "
        "ORDER BY request_id",
        subject,
        uuid.UUID(except_request),
    )
    return [str(r["request_id"]) for r in rows]


async def cases_of(conn: asyncpg.Connection, subject: str) -> list[Case]:
    rows = await conn.fetch("SELECT state FROM cases WHERE subject = $1 ORDER BY received_at", subject)
    return [case_from_json(r["state"]) for r in rows]


async def list_cases(
    conn: asyncpg.Connection,
    *,
    status: str | None,
    right: str | None,
    overdue: bool | None,
    now: datetime,
    limit: int,
    review: bool | None = None,
    search: str | None = None,
    offset: int = 0,
) -> list[tuple[Case, datetime]]:
    """Cases by due date. `search`: a request id (exact) or a subject id (exact). Each filter maps
    onto an index (status, subject, open cases by due date, cases in review), so a page stays quick
    with many thousands of cases."""
    where, args = _case_filter(status=status, right=right, overdue=overdue, now=now, review=review, search=search)
    rows = await conn.fetch(
        f"SELECT state, opened_at FROM cases WHERE {where} ORDER BY due_at, request_id "
        f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
        *args, limit, offset,
    )
    return [(case_from_json(r["state"]), r["opened_at"]) for r in rows]


async def count_cases(
    conn: asyncpg.Connection, *, status: str | None, right: str | None, overdue: bool | None, now: datetime,
    review: bool | None = None, search: str | None = None,
) -> int:
    where, args = _case_filter(status=status, right=right, overdue=overdue, now=now, review=review, search=search)
    return int(await conn.fetchval(f"SELECT count(*) FROM cases WHERE {where}", *args))


def _case_filter(*, status: str | None, right: str | None, overdue: bool | None, now: datetime,
                 review: bool | None, search: str | None) -> tuple[str, list[Any]]:
    """A WHERE clause with only the filters given (a planner sees plain predicates, not `$1 IS NULL OR`)."""
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if status is not None:
        clauses.append(f"status = {arg(status)}")
    if right is not None:
        clauses.append(f"case_right = {arg(right)}")
    if overdue is True:
        clauses.append(f"closed_at IS NULL AND due_at < {arg(now)}")
    elif overdue is False:
        clauses.append(f"(closed_at IS NOT NULL OR due_at >= {arg(now)})")
    if review is True:
        clauses.append("manual_review")
    elif review is False:
        clauses.append("NOT manual_review")
    if search:
        try:
            clauses.append(f"request_id = {arg(uuid.UUID(search))}")
        except ValueError:
            clauses.append(f"subject = {arg(search)}")
    return (" AND ".join(clauses) or "true"), args


async def status_counts(conn: asyncpg.Connection, now: datetime, soon: datetime) -> dict[str, int]:
    """The office's overview: open cases by status, due before `soon`, overdue, awaiting review."""
    rows = await conn.fetch("SELECT status, count(*) AS n FROM cases WHERE closed_at IS NULL GROUP BY status")
    counts = {f"open_{r['status']}": int(r["n"]) for r in rows}
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE due_at < $1) AS overdue, "
        "count(*) FILTER (WHERE due_at >= $1 AND due_at < $2) AS due_soon FROM cases WHERE closed_at IS NULL",
        now, soon,
    )
    counts["overdue"] = int(row["overdue"])
    counts["due_soon"] = int(row["due_soon"])
    counts["awaiting_review"] = int(await conn.fetchval("SELECT count(*) FROM cases WHERE manual_review"))
    return counts


async def weekly_counts(conn: asyncpg.Connection, since: datetime) -> list[asyncpg.Record]:
    """Per ISO week since `since`: cases received, completed, and the days each completed one took."""
    return list(await conn.fetch(
        """
        WITH received AS (
            SELECT date_trunc('week', received_at) AS week, count(*) AS n FROM cases
            WHERE received_at >= $1 GROUP BY 1),
        completed AS (
            SELECT date_trunc('week', closed_at) AS week, count(*) AS n,
                   avg(extract(epoch FROM closed_at - received_at) / 86400.0) AS avg_days,
                   max(extract(epoch FROM closed_at - received_at) / 86400.0) AS max_days
            FROM cases WHERE status = 'completed' AND closed_at >= $1 GROUP BY 1)
        SELECT coalesce(r.week, c.week) AS week, coalesce(r.n, 0) AS received, coalesce(c.n, 0) AS completed,
               c.avg_days, c.max_days
        FROM received r FULL JOIN completed c ON r.week = c.week ORDER BY 1
        """,
        since,
    ))


async def days_to_complete(conn: asyncpg.Connection, since: datetime) -> list[int]:
    """How many cases completed since `since` took 0, 1, 2, ... whole days (index = days, capped at 90)."""
    rows = await conn.fetch(
        "SELECT least(floor(extract(epoch FROM closed_at - received_at) / 86400.0), 90)::int AS days, "
        "count(*) AS n FROM cases WHERE status = 'completed' AND closed_at >= $1 GROUP BY 1 ORDER BY 1",
        since,
    )
    counts = dict.fromkeys(range(max([r["days"] for r in rows], default=0) + 1), 0)
    for r in rows:
        counts[r["days"]] = int(r["n"])
    return [counts[d] for d in sorted(counts)]


async def audit_of_case(conn: asyncpg.Connection, request_id: str, limit: int = 500) -> list[asyncpg.Record]:
    """The case's audit entries in chain order (its timeline: who did what, when)."""
    return list(await conn.fetch(
        "SELECT seq, at, action, actor, detail FROM audit_log WHERE ref = $1 ORDER BY seq LIMIT $2",
        request_id, limit,
    ))


async def unverified_before(conn: asyncpg.Connection, cutoff: datetime, limit: int = 500) -> list[str]:
    """Cases waiting for identity since before `cutoff` (since the first code; cases stored without
    that time: since receipt)."""
    rows = await conn.fetch(
        "SELECT request_id FROM cases WHERE status = 'identity_pending' "
        "AND COALESCE((state->>'identity_requested_at')::timestamptz, received_at) <= $1 "
        "ORDER BY received_at LIMIT $2",
        cutoff,
        limit,
    )
    return [str(r["request_id"]) for r in rows]


async def claim_overdue(conn: asyncpg.Connection, now: datetime) -> list[asyncpg.Record]:
    """Open cases past due not reported yet; marks them reported (escalated once)."""
    return list(
        await conn.fetch(
            "UPDATE cases SET overdue_reported = true WHERE closed_at IS NULL AND due_at < $1 "
            "AND NOT overdue_reported RETURNING request_id, subject, case_right, due_at",
            now,
        )
    )


async def claim_due_soon(conn: asyncpg.Connection, now: datetime, horizon: datetime) -> list[asyncpg.Record]:
    """Open cases due before `horizon` not reminded yet; marks them reminded."""
    return list(
        await conn.fetch(
            "UPDATE cases SET due_soon_reported = true WHERE closed_at IS NULL "
            "AND due_at >= $1 AND due_at < $2 AND NOT due_soon_reported"
            " RETURNING request_id, subject, case_right, due_at",
            now,
            horizon,
        )
    )


async def deadline_counts(conn: asyncpg.Connection, now: datetime, horizon: datetime) -> list[asyncpg.Record]:
    """Per right: open, overdue, due soon, and awaiting review (open or not: a completed restriction
    whose lift failed waits for an operator too)."""
    return list(
        await conn.fetch(
            "SELECT case_right, count(*) FILTER (WHERE closed_at IS NULL) AS open, "
            "count(*) FILTER (WHERE closed_at IS NULL AND due_at < $1) AS overdue, "
            "count(*) FILTER (WHERE closed_at IS NULL AND due_at >= $1 AND due_at < $2) AS due_soon, "
            "count(*) FILTER (WHERE manual_review) AS awaiting_review "
            "FROM cases WHERE closed_at IS NULL OR manual_review GROUP BY case_right",
            now,
            horizon,
        )
    )


async def supersede_commands(conn: asyncpg.Connection, request_ids: Sequence[str]) -> None:
    """Stop re-sending the outstanding commands of closed cases (the runtime's `commands` table)."""
    if request_ids:
        await conn.execute(
            "UPDATE commands SET acked_at = now(), ack_status = 'superseded' "
            "WHERE request_id = ANY($1::uuid[]) AND acked_at IS NULL",
            [uuid.UUID(r) for r in request_ids],
        )


# --- identity verification ------------------------------------------------------------------------


async def put_code(conn: asyncpg.Connection, request_id: str, code_hash: str, expires_at: datetime) -> int:
    """Store a (new) code hash with fresh attempts; returns how many codes this request has had."""
    value = await conn.fetchval(
        "INSERT INTO verifications (request_id, code_hash, expires_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (request_id) DO UPDATE SET code_hash = excluded.code_hash, "
        "expires_at = excluded.expires_at, attempts = 0, locked_at = NULL, "
        "codes_issued = verifications.codes_issued + 1 RETURNING codes_issued",
        uuid.UUID(request_id),
        code_hash,
        expires_at,
    )
    return int(value)


async def lock_verification(conn: asyncpg.Connection, request_id: str) -> Verification | None:
    row = await conn.fetchrow("SELECT * FROM verifications WHERE request_id = $1 FOR UPDATE", uuid.UUID(request_id))
    if row is None:
        return None
    return Verification(
        row["code_hash"],
        row["expires_at"],
        row["attempts"],
        row["codes_issued"],
        row["locked_at"] is not None,
        row["verified_at"] is not None,
    )


async def count_failed_attempt(conn: asyncpg.Connection, request_id: str, lock: bool) -> int:
    value = await conn.fetchval(
        "UPDATE verifications SET attempts = attempts + 1, "
        "locked_at = CASE WHEN $2 THEN now() ELSE locked_at END WHERE request_id = $1 RETURNING attempts",
        uuid.UUID(request_id),
        lock,
    )
    return int(value)


async def recent_failed_verifications(conn: asyncpg.Connection, subject: str, window_seconds: float) -> int:
    """Wrong codes for any of the subject's requests within the window (older ones are deleted).
    The caller holds the subject's lock (`subject_locks.lock_subjects`), so that two requests of one
    subject verified at once cannot both pass the count."""
    await conn.execute("DELETE FROM failed_verifications WHERE subject = $1 "
                       "AND failed_at < now() - make_interval(secs => $2)", subject, window_seconds)
    return int(await conn.fetchval("SELECT count(*) FROM failed_verifications WHERE subject = $1", subject))


async def record_failed_verification(conn: asyncpg.Connection, subject: str) -> None:
    await conn.execute("INSERT INTO failed_verifications (subject) VALUES ($1)", subject)


async def mark_verified(conn: asyncpg.Connection, request_id: str) -> None:
    await conn.execute(
        "UPDATE verifications SET verified_at = now(), code_hash = '' WHERE request_id = $1",
        uuid.UUID(request_id),
    )


# --- exports ----------------------------------------------------------------------------------------


async def put_fragment(
    conn: asyncpg.Connection, request_id: str, system: str, status: str, sealed: bytes | None
) -> None:
    """A system's export answer. A `failed` one is replaced by a later answer (the operator-approved
    retry); any other is kept: a repeated or late answer never overwrites data already received."""
    await conn.execute(
        "INSERT INTO export_fragments (request_id, system, status, fragment_sealed) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (request_id, system) DO UPDATE SET status = excluded.status, "
        "fragment_sealed = excluded.fragment_sealed, received_at = now() "
        "WHERE export_fragments.status = 'failed'",
        uuid.UUID(request_id),
        system,
        status,
        sealed,
    )


async def fragments(conn: asyncpg.Connection, request_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT system, status, fragment_sealed FROM export_fragments WHERE request_id = $1 ORDER BY system",
            uuid.UUID(request_id),
        )
    )


async def drop_fragments(conn: asyncpg.Connection, request_id: str) -> None:
    await conn.execute("DELETE FROM export_fragments WHERE request_id = $1", uuid.UUID(request_id))


# --- exports answered in parts ---------------------------------------------------------------------


@dataclass(frozen=True)
class ExportCommand:
    """An export command of ours, as an arriving part needs it."""

    command_id: uuid.UUID
    system: str
    subject: str
    request_id: str
    acked: bool


async def export_commands(conn: asyncpg.Connection, command_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ExportCommand]:
    rows = await conn.fetch(
        "SELECT command_id, system, subject, request_id, acked_at IS NOT NULL AS acked FROM commands "
        "WHERE command_id = ANY($1::uuid[]) AND action = 'export' AND request_id IS NOT NULL",
        list(command_ids),
    )
    return {r["command_id"]: ExportCommand(r["command_id"], r["system"], r["subject"], str(r["request_id"]),
                                           r["acked"]) for r in rows}


class ExportPart(NamedTuple):
    """One slice of an export answered in several messages, sealed with the subject's key."""

    command_id: uuid.UUID
    sha256: str
    part: int
    parts: int
    request_id: str
    system: str
    chunk_bytes: int
    sealed: bytes


async def put_export_parts(conn: asyncpg.Connection, rows: Sequence[ExportPart]) -> None:
    """A repeated part is kept as first received."""
    if rows:
        await conn.executemany(
            "INSERT INTO export_parts (command_id, export_sha256, part, parts, request_id, system, chunk_bytes, "
            "chunk_sealed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            [(r.command_id, r.sha256, r.part, r.parts, uuid.UUID(r.request_id), r.system, r.chunk_bytes, r.sealed)
             for r in rows],
        )


@dataclass(frozen=True)
class PartsHeld:
    held: int
    parts_min: int
    parts_max: int
    part_max: int
    total_bytes: int


async def parts_held(conn: asyncpg.Connection, command_id: uuid.UUID, sha256: str) -> PartsHeld:
    row = await conn.fetchrow(
        "SELECT count(*) AS held, min(parts) AS parts_min, max(parts) AS parts_max, max(part) AS part_max, "
        "coalesce(sum(chunk_bytes), 0) AS total FROM export_parts WHERE command_id = $1 AND export_sha256 = $2",
        command_id, sha256,
    )
    return PartsHeld(row["held"], row["parts_min"] or 0, row["parts_max"] or 0, row["part_max"] or 0,
                     int(row["total"]))


async def export_parts(conn: asyncpg.Connection, command_id: uuid.UUID, sha256: str) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT part, parts, chunk_sealed FROM export_parts WHERE command_id = $1 AND export_sha256 = $2 "
        "ORDER BY part",
        command_id, sha256,
    ))


async def hold_resends(conn: asyncpg.Connection, command_ids: Sequence[uuid.UUID]) -> None:
    """Commands whose answer is arriving in parts are not re-sent (a re-send would be exported again):
    the next attempt waits for `respond_by`, when parts still missing send the case to review."""
    if command_ids:
        await conn.execute(
            "UPDATE commands SET next_attempt_at = greatest(next_attempt_at, respond_by) "
            "WHERE command_id = ANY($1::uuid[]) AND acked_at IS NULL",
            list(command_ids),
        )


async def drop_export_parts(conn: asyncpg.Connection, command_ids: Sequence[uuid.UUID]) -> None:
    if command_ids:
        await conn.execute("DELETE FROM export_parts WHERE command_id = ANY($1::uuid[])", list(command_ids))


async def has_export_parts(conn: asyncpg.Connection, command_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM export_parts WHERE command_id = $1)", command_id))


async def incomplete_exports_due(conn: asyncpg.Connection, now: datetime, limit: int = 100) -> list[asyncpg.Record]:
    """Export commands still unanswered at `respond_by` of which some parts arrived: their answer can no
    longer be completed in time."""
    return list(await conn.fetch(
        "SELECT c.command_id, c.system, c.request_id, "
        "(SELECT string_agg(DISTINCT p.parts::text, ',') FROM export_parts p WHERE p.command_id = c.command_id) "
        "AS parts, (SELECT count(DISTINCT p.part) FROM export_parts p WHERE p.command_id = c.command_id) AS held "
        "FROM commands c WHERE c.acked_at IS NULL AND c.action = 'export' AND c.respond_by <= $1 "
        "AND EXISTS (SELECT 1 FROM export_parts p WHERE p.command_id = c.command_id) "
        "ORDER BY c.respond_by LIMIT $2",
        now, limit,
    ))


async def drop_settled_export_parts(conn: asyncpg.Connection) -> int:
    """Parts of commands settled otherwise (superseded, case cancelled): never to be assembled."""
    return int(await conn.fetchval(
        "WITH d AS (DELETE FROM export_parts p USING commands c WHERE p.command_id = c.command_id "
        "AND c.acked_at IS NOT NULL RETURNING 1) SELECT count(*) FROM d"))


async def put_export(
    conn: asyncpg.Connection,
    *,
    token_hash: str,
    request_id: str,
    subject: str,
    media_type: str,
    filename: str,
    sealed: bytes,
    expires_at: datetime,
    downloads: int,
) -> None:
    await conn.execute(
        "INSERT INTO exports (token_hash, request_id, subject, media_type, filename, package_sealed, "
        "expires_at, downloads_left) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        token_hash,
        uuid.UUID(request_id),
        subject,
        media_type,
        filename,
        sealed,
        expires_at,
        downloads,
    )


@dataclass(frozen=True)
class ExportRow:
    request_id: str
    subject: str
    media_type: str
    filename: str
    sealed: bytes
    expires_at: datetime
    downloads_left: int


async def take_download(conn: asyncpg.Connection, token_hash: str, now: datetime) -> tuple[str, ExportRow | None]:
    """Count one download: ('ok', row), ('expired', None), ('used_up', None) or ('unknown', None)."""
    row = await conn.fetchrow("SELECT * FROM exports WHERE token_hash = $1 FOR UPDATE", token_hash)
    if row is None:
        return "unknown", None
    if row["expires_at"] <= now:
        return "expired", None
    if row["downloads_left"] <= 0:
        return "used_up", None
    await conn.execute(
        "UPDATE exports SET downloads_left = downloads_left - 1, last_download_at = $2 WHERE token_hash = $1",
        token_hash,
        now,
    )
    return "ok", ExportRow(
        str(row["request_id"]),
        row["subject"],
        row["media_type"],
        row["filename"],
        bytes(row["package_sealed"]),
        row["expires_at"],
        row["downloads_left"] - 1,
    )


@dataclass(frozen=True)
class ExportInfo:
    """What the download page says about a package, read without counting a download."""

    request_id: str
    right: str | None
    export_format: str | None
    media_type: str
    size: int
    expires_at: datetime
    downloads_left: int


async def peek_export(conn: asyncpg.Connection, token_hash: str) -> ExportInfo | None:
    row = await conn.fetchrow(
        "SELECT e.request_id, e.media_type, octet_length(e.package_sealed) AS size, e.expires_at, "
        "e.downloads_left, c.case_right, c.state->>'export_format' AS export_format "
        "FROM exports e LEFT JOIN cases c ON c.request_id = e.request_id WHERE e.token_hash = $1",
        token_hash,
    )
    if row is None:
        return None
    return ExportInfo(str(row["request_id"]), row["case_right"], row["export_format"], row["media_type"],
                      int(row["size"] or 0), row["expires_at"], int(row["downloads_left"]))


async def purge_expired_exports(conn: asyncpg.Connection, now: datetime) -> int:
    """Packages hold PII: wipe their content once their link can no longer be used. The row (hash of
    the token, expiry) stays for a while so the link answers 410 "expired" rather than 404."""
    wiped = await conn.fetchval(
        "WITH w AS (UPDATE exports SET package_sealed = ''::bytea "
        "WHERE (expires_at <= $1 OR downloads_left <= 0) AND octet_length(package_sealed) > 0 RETURNING 1) "
        "SELECT count(*) FROM w",
        now,
    )
    await conn.execute("DELETE FROM exports WHERE expires_at <= $1::timestamptz - interval '30 days'", now)
    return int(wiped)


# --- the dsar service's own records of a subject (as a downstream system) ------------------------


async def erase_subject_records(conn: asyncpg.Connection, subject: str) -> int:
    """Delete what the dsar service holds beyond case records: packages, fragments, codes, corrections."""
    removed = 0
    removed += int(
        await conn.fetchval(
            "WITH d AS (DELETE FROM exports WHERE subject = $1 RETURNING 1) SELECT count(*) FROM d", subject
        )
    )
    removed += int(
        await conn.fetchval(
            "WITH d AS (DELETE FROM export_fragments f USING cases c WHERE f.request_id = c.request_id "
            "AND c.subject = $1 RETURNING 1) SELECT count(*) FROM d",
            subject,
        )
    )
    removed += int(
        await conn.fetchval(
            "WITH d AS (DELETE FROM export_parts p USING cases c WHERE p.request_id = c.request_id "
            "AND c.subject = $1 RETURNING 1) SELECT count(*) FROM d",
            subject,
        )
    )
    removed += int(
        await conn.fetchval(
            "WITH d AS (DELETE FROM verifications v USING cases c WHERE v.request_id = c.request_id "
            "AND c.subject = $1 RETURNING 1) SELECT count(*) FROM d",
            subject,
        )
    )
    removed += int(
        await conn.fetchval(
            "WITH d AS (UPDATE cases SET corrections_sealed = NULL WHERE subject = $1 "
            "AND corrections_sealed IS NOT NULL RETURNING 1) SELECT count(*) FROM d",
            subject,
        )
    )
    await conn.execute("DELETE FROM restrictions WHERE subject = $1", subject)
    await conn.execute("DELETE FROM subject_activity WHERE subject = $1", subject)
    await conn.execute("DELETE FROM failed_verifications WHERE subject = $1", subject)
    return removed


# --- subject activity (retention of inactive subjects, see services/dsar/inactivity.py) -------------


async def record_activity(conn: asyncpg.Connection, latest: Mapping[str, tuple[datetime, str]]) -> list[str]:
    """Move each subject's last activity forward: `latest` maps subject -> (newest time, subject digest).
    Returns the subjects whose last activity moved (a replayed batch moves none).

    One statement per batch. An older time never moves it back; a newer one clears a pending erasure
    mark (the subject came back). Erased subjects (tombstoned by digest) are not recorded again, or
    a late event would have them swept a second time."""
    if not latest:
        return []
    subjects = sorted(latest)  # a fixed order: two lanes touching one subject lock alike
    rows = await conn.fetch(
        """
        INSERT INTO subject_activity AS a (subject, last_activity_at)
        SELECT u.subject, u.at FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS u(subject, at, digest)
        WHERE NOT EXISTS (SELECT 1 FROM erased_subjects e WHERE e.subject_digest = u.digest)
        ON CONFLICT (subject) DO UPDATE
            SET last_activity_at = excluded.last_activity_at, erasure_requested_at = NULL
            WHERE a.last_activity_at < excluded.last_activity_at
        RETURNING a.subject
        """,
        subjects,
        [latest[s][0] for s in subjects],
        [latest[s][1] for s in subjects],
    )
    return sorted(r["subject"] for r in rows)


async def retention_reviews(conn: asyncpg.Connection, subjects: Sequence[str]) -> list[tuple[str, str]]:
    """(subject, request_id) of the subjects' retention erasures waiting in manual review, by request_id
    (the order every worker locks cases in). Reads the partial index of cases in review."""
    if not subjects:
        return []
    rows = await conn.fetch(
        "SELECT subject, request_id FROM cases WHERE subject = ANY($1::text[]) AND manual_review "
        "AND closed_at IS NULL AND case_right = 'erasure' AND state->>'ground' = 'retention_expired' "
        "ORDER BY request_id",
        list(subjects),
    )
    return [(r["subject"], str(r["request_id"])) for r in rows]


async def last_activity(conn: asyncpg.Connection, subject: str, *, lock: bool = False) -> datetime | None:
    """`lock`: hold the row until the transaction ends, so activity being recorded at this moment is
    either seen here or sees what this transaction writes once it commits."""
    sql = "SELECT last_activity_at FROM subject_activity WHERE subject = $1" + (" FOR UPDATE" if lock else "")
    value = await conn.fetchval(sql, subject)
    return value  # type: ignore[no-any-return]


async def claim_inactive(
    conn: asyncpg.Connection, cutoff: datetime, now: datetime, limit: int
) -> list[tuple[str, datetime]]:
    """Up to `limit` subjects last active before `cutoff`, oldest first, marked as requested for erasure.

    Left out: subjects already requested for this activity, with an open case (it decides their
    fate), or restricted (Art. 18(1)(c): kept for the subject's legal claims). SKIP LOCKED lets
    replicas sweep side by side without taking the same subject."""
    rows = await conn.fetch(
        """
        WITH due AS (
            SELECT a.subject FROM subject_activity a
            WHERE a.erasure_requested_at IS NULL AND a.last_activity_at < $1
              AND NOT EXISTS (SELECT 1 FROM cases c WHERE c.subject = a.subject AND c.closed_at IS NULL)
              AND NOT EXISTS (SELECT 1 FROM restrictions r WHERE r.subject = a.subject)
            ORDER BY a.last_activity_at, a.subject
            LIMIT $3
            FOR UPDATE OF a SKIP LOCKED
        )
        UPDATE subject_activity a SET erasure_requested_at = $2 FROM due WHERE a.subject = due.subject
        RETURNING a.subject, a.last_activity_at
        """,
        cutoff,
        now,
        limit,
    )
    return sorted(((r["subject"], r["last_activity_at"]) for r in rows), key=lambda r: (r[1], r[0]))


async def set_restricted(conn: asyncpg.Connection, subject: str, restricted: bool) -> None:
    if restricted:
        await conn.execute("INSERT INTO restrictions (subject) VALUES ($1) ON CONFLICT DO NOTHING", subject)
    else:
        await conn.execute("DELETE FROM restrictions WHERE subject = $1", subject)


async def purge_expired(
    conn: asyncpg.Connection, now: datetime, closed_before: datetime, failures_before: datetime | None = None
) -> dict[str, int]:
    """Delete what retention no longer allows (see services/dsar/retention.py); returns counts.
    `failures_before`: wrong identity codes older than this no longer count (default: a day ago)."""

    async def count(sql: str, *args: object) -> int:
        return int(await conn.fetchval(f"WITH d AS ({sql} RETURNING 1) SELECT count(*) FROM d", *args))

    closed = "SELECT request_id FROM cases WHERE closed_at IS NOT NULL"
    return {
        "exports": await purge_expired_exports(conn, now),
        "export_fragments": await count(f"DELETE FROM export_fragments WHERE request_id IN ({closed})"),
        "verifications": await count(f"DELETE FROM verifications WHERE request_id IN ({closed})"),
        "corrections": await count(
            "UPDATE cases SET corrections_sealed = NULL WHERE closed_at IS NOT NULL AND corrections_sealed IS NOT NULL"
        ),
        # Kept however old: a restriction still in force (lifting it needs the case, and the subject's
        # other restrictions are judged against it) and a case waiting for an operator.
        "cases": await count(
            "DELETE FROM cases WHERE closed_at < $1 AND request_id NOT IN (SELECT request_id FROM exports) "
            "AND NOT manual_review AND NOT (case_right = 'restriction' AND status = 'completed' "
            "AND NOT COALESCE((state->>'restriction_lifted')::boolean, false))",
            closed_before,
        ),
        "failed_verifications": await count(
            "DELETE FROM failed_verifications WHERE failed_at < $1", failures_before or now - timedelta(days=1)
        ),
    }


async def timelines_of(conn: asyncpg.Connection, subject: str) -> dict[str, list[tuple[datetime, str]]]:
    """Each of the subject's cases' status changes and extensions, in order (from the audit trail,
    which records every one), for the privacy center's timeline."""
    rows = await conn.fetch(
        "SELECT ref, at, action FROM audit_log WHERE subject = $1 AND ref IS NOT NULL "
        "AND action LIKE 'case\\_%' ORDER BY seq",
        subject,
    )
    timelines: dict[str, list[tuple[datetime, str]]] = {}
    for row in rows:
        timelines.setdefault(str(row["ref"]), []).append((row["at"], str(row["action"])))
    return timelines
