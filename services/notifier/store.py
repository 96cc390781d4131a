"""Notifier storage: SQL through asyncpg, nothing else."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from privacy_runtime.db import inline_text

#: NOTIFY channels: sent inside the writing transaction, so they arrive when it commits.
EMAILS_CHANNEL = "notifier_emails"
FANOUT_CHANNEL = "notifier_fanout"


# --- directory ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DirectoryRow:
    subject: str
    email_sealed: bytes
    name_sealed: bytes | None
    email_hash: str
    locale: str
    country: str | None
    registered_at: datetime
    #: The registration's ordering time (`privacy_runtime.ordering`); None: its stated time.
    ordered_at: datetime | None = None


async def upsert_recipients(conn: asyncpg.Connection, rows: Sequence[DirectoryRow]) -> None:
    """Newer registration (ordering time: event time, capped at arrival) wins; a registration older than
    a rectification never undoes it."""
    if not rows:
        return
    await conn.execute(
        """
        INSERT INTO recipients AS r (subject, email_sealed, name_sealed, email_hash, locale, country,
                                     registered_at, registration_ordered_at)
        SELECT subject, email_sealed, name_sealed, email_hash, locale, country, registered_at,
               coalesce(ordered_at, registered_at)
        FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[], $5::text[], $6::text[],
                    $7::timestamptz[], $8::timestamptz[])
             AS u(subject, email_sealed, name_sealed, email_hash, locale, country, registered_at, ordered_at)
        ON CONFLICT (subject) DO UPDATE SET
            email_sealed = excluded.email_sealed, name_sealed = excluded.name_sealed,
            email_hash = excluded.email_hash, locale = excluded.locale, country = excluded.country,
            registered_at = excluded.registered_at, registration_ordered_at = excluded.registration_ordered_at,
            updated_at = now()
        WHERE coalesce(r.registration_ordered_at, r.registered_at) < excluded.registration_ordered_at
          AND (r.rectified_at IS NULL OR r.rectified_at < excluded.registration_ordered_at)
        """,
        [r.subject for r in rows],
        [r.email_sealed for r in rows],
        [r.name_sealed for r in rows],
        [r.email_hash for r in rows],
        [r.locale for r in rows],
        [r.country for r in rows],
        [r.registered_at for r in rows],
        [r.ordered_at for r in rows],
    )


async def recipients(conn: asyncpg.Connection, subjects: Sequence[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch("SELECT * FROM recipients WHERE subject = ANY($1::text[])", list(subjects))
    return {r["subject"]: r for r in rows}


async def recipient(conn: asyncpg.Connection, subject: str, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM recipients WHERE subject = $1" + (" FOR UPDATE" if lock else ""), subject)


async def lock_recipients(conn: asyncpg.Connection, subjects: Sequence[str]) -> None:
    """Share-lock directory entries: an erasure of one of them waits for this transaction, or it for that."""
    await conn.execute(
        "SELECT 1 FROM recipients WHERE subject = ANY($1::text[]) ORDER BY subject FOR SHARE", list(subjects)
    )


async def erased_digests(conn: asyncpg.Connection, digests: Sequence[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT subject_digest FROM erased_subjects WHERE subject_digest = ANY($1::text[])", list(digests)
    )
    return {r["subject_digest"] for r in rows}


async def subjects_by_email_hash(conn: asyncpg.Connection, email_hash: str) -> list[str]:
    rows = await conn.fetch("SELECT subject FROM recipients WHERE email_hash = $1 ORDER BY subject", email_hash)
    return [r["subject"] for r in rows]


async def rectify_recipient(conn: asyncpg.Connection, subject: str, changes: dict[str, Any]) -> bool:
    """changes: column -> new value, columns among email_sealed, email_hash, name_sealed, locale, country."""
    allowed = {"email_sealed", "email_hash", "name_sealed", "locale", "country"}
    assert set(changes) <= allowed, set(changes) - allowed
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=2))
    sets = f"{assignments}, " if assignments else ""
    done = await conn.fetchval(
        f"UPDATE recipients SET {sets}rectified_at = now(), updated_at = now() WHERE subject = $1 RETURNING 1",
        subject,
        *changes.values(),
    )
    return done is not None


async def set_restricted(conn: asyncpg.Connection, subject: str, restricted: bool) -> bool:
    done = await conn.fetchval(
        "UPDATE recipients SET restricted = $2, updated_at = now() WHERE subject = $1 RETURNING 1",
        subject,
        restricted,
    )
    return done is not None


async def delete_recipient(conn: asyncpg.Connection, subject: str) -> bool:
    done = await conn.fetchval("DELETE FROM recipients WHERE subject = $1 RETURNING 1", subject)
    await conn.execute("DELETE FROM erasure_holds WHERE subject = $1", subject)
    return done is not None


async def hold_for_erasure(conn: asyncpg.Connection, holds: Sequence[tuple[str, str]]) -> None:
    """(subject, request_id) of verified erasure cases: nothing but their own emails from now on."""
    if holds:
        await conn.execute(
            "INSERT INTO erasure_holds (subject, request_id) SELECT * FROM unnest($1::text[], $2::text[]) "
            "ON CONFLICT DO NOTHING",
            [s for s, _ in holds], [r for _, r in holds],
        )


async def release_erasure_holds(conn: asyncpg.Connection, releases: Sequence[tuple[str, str]]) -> None:
    if releases:
        await conn.execute(
            "DELETE FROM erasure_holds h USING unnest($1::text[], $2::text[]) AS r(subject, request_id) "
            "WHERE h.subject = r.subject AND h.request_id = r.request_id",
            [s for s, _ in releases], [r for _, r in releases],
        )


async def erasure_holds(conn: asyncpg.Connection, subjects: Sequence[str]) -> dict[str, frozenset[str]]:
    """Per subject with any, the request ids of its verified erasure cases."""
    rows = await conn.fetch(
        "SELECT subject, array_agg(request_id) AS ids FROM erasure_holds WHERE subject = ANY($1::text[]) "
        "GROUP BY subject", list(subjects),
    )
    return {r["subject"]: frozenset(r["ids"]) for r in rows}


async def recipient_page(conn: asyncpg.Connection, after: str, limit: int) -> list[str]:
    """Keyset pagination over the directory: the next `limit` subjects after `after`."""
    rows = await conn.fetch("SELECT subject FROM recipients WHERE subject > $1 ORDER BY subject LIMIT $2", after, limit)
    return [r["subject"] for r in rows]


async def directory_size(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM recipients"))


# --- email outbox ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailRow:
    notification_id: str
    subject: str
    template: str
    category: str
    locale: str | None
    params_sealed: bytes | None
    message_id: str
    origin: str
    status: str = "queued"
    last_error: str | None = None
    priority: int = 0
    final_notice: bool = False


async def insert_emails(conn: asyncpg.Connection, rows: Sequence[EmailRow]) -> list[str]:
    """Queue emails; a notification_id already present is left alone. Returns the ids inserted."""
    if not rows:
        return []
    inserted = await conn.fetch(
        """
        INSERT INTO emails (notification_id, subject, template, category, locale, params_sealed, message_id,
                            origin, status, last_error, priority, final_notice)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[],
                             $7::text[], $8::text[], $9::text[], $10::text[], $11::smallint[], $12::bool[])
        ON CONFLICT (notification_id) DO NOTHING
        RETURNING notification_id
        """,
        [r.notification_id for r in rows],
        [r.subject for r in rows],
        [r.template for r in rows],
        [r.category for r in rows],
        [r.locale for r in rows],
        [r.params_sealed for r in rows],
        [r.message_id for r in rows],
        [r.origin for r in rows],
        [r.status for r in rows],
        [r.last_error for r in rows],
        [r.priority for r in rows],
        [r.final_notice for r in rows],
    )
    return [r["notification_id"] for r in inserted]


async def notify(conn: asyncpg.Connection, channel: str) -> None:
    await conn.execute(f"NOTIFY {channel}")


async def claim_due(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Claim due rows for this sender: `sending`, stamped with the claim time, attempts counted.

    Notices to one person go before fanned-out notices, so a verification code never waits for a
    merger notice to reach the whole directory. Within a priority the oldest go first, by when they
    were queued, not by when they became due: an email retried after a temporary refusal (or handed
    back by a crashed or cut round) keeps its place, instead of going behind every email queued
    after it (a relay refusing for a few seconds during a big fan-out would otherwise send each
    email it refused to the back of the whole backlog)."""
    return await conn.fetch(
        """
        WITH due AS (
            SELECT notification_id FROM emails
            WHERE status = 'queued' AND next_attempt_at <= now()
            ORDER BY priority, created_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        )
        UPDATE emails e SET status = 'sending', claimed_at = clock_timestamp(), attempts = e.attempts + 1,
                            updated_at = now()
        FROM due WHERE e.notification_id = due.notification_id
        RETURNING e.*
        """,
        limit,
    )


async def release_expired_leases(conn: asyncpg.Connection, lease_seconds: float) -> list[str]:
    """Rows left in `sending` past the lease (their sender died) go back to the queue, keeping their
    place in it (they are the oldest work, not the newest)."""
    rows = await conn.fetch(
        """
        UPDATE emails SET status = 'queued', next_attempt_at = least(next_attempt_at, now()), updated_at = now(),
                          last_error = 'lease expired while sending; retried'
        WHERE notification_id IN (
            SELECT notification_id FROM emails
            WHERE status = 'sending' AND claimed_at < now() - make_interval(secs => $1)
            FOR UPDATE SKIP LOCKED
        )
        RETURNING notification_id
        """,
        lease_seconds,
    )
    return [r["notification_id"] for r in rows]


async def lock_for_sending(
    conn: asyncpg.Connection, claims: Sequence[tuple[str, datetime]], send_within_seconds: float
) -> dict[str, asyncpg.Record]:
    """Right before a lane sends a group of emails, in the transaction that will mark them sent: for
    each (notification_id, claimed_at), share-lock the recipient's directory entry, then lock the email
    row (the order an erasure takes them in: a row's entry is always locked before the row), and read
    both fresh. One round trip for the group; by notification_id, a row that no longer exists missing.

    Columns: claimed (still `sending` by this claim: `claimed_at` is the claim's token), in_time (by
    the database's clock, less than `send_within_seconds` since the claim), final_notice, listed (a
    directory entry exists), restricted, holds (request ids of the subject's verified erasure cases)."""
    rows = await conn.fetch(
        """
        SELECT e.notification_id,
               e.status = 'sending'
                   AND e.claimed_at = ($2::timestamptz[])[array_position($1::text[], e.notification_id)] AS claimed,
               clock_timestamp() < e.claimed_at + make_interval(secs => $3) AS in_time, e.final_notice,
               r.subject IS NOT NULL AS listed, coalesce(r.restricted, false) AS restricted,
               array(SELECT h.request_id FROM erasure_holds h WHERE h.subject = e.subject) AS holds
        FROM emails e
        LEFT JOIN LATERAL (
            SELECT subject, restricted FROM recipients WHERE subject = e.subject FOR SHARE
        ) r ON true
        WHERE e.notification_id = ANY($1::text[])  -- the primary key's index, whatever the plan's guess
        FOR UPDATE OF e
        """,
        [notification_id for notification_id, _ in claims],
        [claimed_at for _, claimed_at in claims],
        send_within_seconds,
    )
    return {row["notification_id"]: row for row in rows}


async def mark_sent(conn: asyncpg.Connection, notification_id: str, claimed_at: datetime) -> bool:
    """Only the claim that sent it may mark it (a row re-taken after its lease is not overwritten)."""
    done = await conn.fetchval(
        """
        UPDATE emails SET status = 'sent', sent_at = now(), updated_at = now(), last_error = NULL
        WHERE notification_id = $1 AND status = 'sending' AND claimed_at = $2
        RETURNING 1
        """,
        notification_id,
        claimed_at,
    )
    return done is not None


def mark_sent_statement(claims: Sequence[tuple[str, datetime]]) -> str:
    """`mark_sent` for each (notification_id, claimed_at) as one statement without parameters, for the
    COMMIT of the transaction that holds the rows' locks (the send's, which read them `sending` by
    these claims: the update cannot miss). The ids are inlined by `inline_text`, the claim times as
    ISO timestamps formatted here: nothing else reaches the SQL text."""
    pairs = []
    for notification_id, claimed_at in claims:
        stamp = claimed_at.isoformat()
        assert claimed_at.tzinfo is not None and all(c in "0123456789-:.+T" for c in stamp), stamp
        pairs.append(f"({inline_text(notification_id)}, '{stamp}'::timestamptz)")
    return (
        "UPDATE emails SET status = 'sent', sent_at = now(), updated_at = now(), last_error = NULL "
        f"WHERE status = 'sending' AND (notification_id, claimed_at) IN ({', '.join(pairs)})"
    )


async def mark_retry(
    conn: asyncpg.Connection,
    notification_id: str,
    claimed_at: datetime,
    delay_seconds: float,
    error: str,
    *,
    count_attempt: bool = True,
) -> None:
    """Back to the queue: due again after `delay_seconds`; with no delay (handed back untried, or held
    while the relay fails) it keeps the time it became due, so its wait shows in the oldest-due age."""
    await conn.execute(
        """
        UPDATE emails SET status = 'queued',
                          next_attempt_at = CASE WHEN $3::float8 > 0 THEN now() + make_interval(secs => $3::float8)
                                                 ELSE least(next_attempt_at, now()) END,
                          last_error = $4, updated_at = now(),
                          attempts = CASE WHEN $5 THEN attempts ELSE greatest(0, attempts - 1) END
        WHERE notification_id = $1 AND status = 'sending' AND claimed_at = $2
        """,
        notification_id,
        claimed_at,
        delay_seconds,
        error[:1000],
        count_attempt,
    )


async def mark_final(
    conn: asyncpg.Connection, notification_id: str, claimed_at: datetime | None, status: str, error: str
) -> bool:
    """failed or suppressed. Params are dropped: they are needed no more."""
    done = await conn.fetchval(
        """
        UPDATE emails SET status = $3, last_error = $4, params_sealed = NULL, updated_at = now()
        WHERE notification_id = $1 AND status = 'sending' AND ($2::timestamptz IS NULL OR claimed_at = $2)
        RETURNING 1
        """,
        notification_id,
        claimed_at,
        status,
        error[:1000],
    )
    return done is not None


async def cancel_emails_of(conn: asyncpg.Connection, subject: str, reason: str) -> int:
    """Erasure: nothing still waiting for this subject may go out."""
    count = await conn.fetchval(
        """
        WITH c AS (
            UPDATE emails SET status = 'suppressed', last_error = $2, params_sealed = NULL, updated_at = now()
            WHERE subject = $1 AND status IN ('queued', 'sending') AND NOT final_notice RETURNING 1
        ) SELECT count(*) FROM c
        """,
        subject,
        reason,
    )
    await conn.execute("UPDATE emails SET params_sealed = NULL WHERE subject = $1 AND NOT final_notice", subject)
    return int(count)


async def emails_of(conn: asyncpg.Connection, subject: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT notification_id, template, category, status, created_at, sent_at FROM emails "
        "WHERE subject = $1 ORDER BY created_at",
        subject,
    )


async def queue_counts(conn: asyncpg.Connection, status: str | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT status, template, count(*) AS n, min(created_at) AS oldest FROM emails "
        "WHERE $1::text IS NULL OR status = $1 GROUP BY status, template ORDER BY status, template",
        status,
    )


async def oldest_due(conn: asyncpg.Connection) -> dict[int, float]:
    """priority -> seconds since the oldest email of that priority became due, of those not sent yet.

    A row backed off after its own temporary failure is not due until its next attempt; rows held back
    while the relay fails keep their time (see delivery.py), so their age shows the outage."""
    rows = await conn.fetch(
        """
        SELECT priority, extract(epoch FROM now() - min(next_attempt_at))::float8 AS age FROM emails
        WHERE status IN ('queued', 'sending') AND next_attempt_at <= now()
        GROUP BY priority
        """
    )
    return {r["priority"]: max(0.0, r["age"]) for r in rows}


async def queue_depth(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM emails WHERE status IN ('queued', 'sending')"))


# --- fan-out jobs ------------------------------------------------------------------------------


async def create_fanout_job(
    conn: asyncpg.Connection,
    *,
    job_id: str,
    notice: str,
    notice_id: str,
    template: str,
    params: dict[str, Any],
) -> bool:
    created = await conn.fetchval(
        "INSERT INTO fanout_jobs (job_id, notice, notice_id, template, params) "
        "VALUES ($1, $2, $3, $4, $5::jsonb) "
        "ON CONFLICT (job_id) DO NOTHING RETURNING 1",
        job_id,
        notice,
        notice_id,
        template,
        json.dumps(params),
    )
    return created is not None


async def next_fanout_job(conn: asyncpg.Connection) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM fanout_jobs WHERE NOT done ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED"
    )


async def advance_fanout(conn: asyncpg.Connection, job_id: str, last_subject: str, queued: int, done: bool) -> None:
    await conn.execute(
        "UPDATE fanout_jobs SET last_subject = $2, queued = queued + $3, done = $4, "
        "finished_at = CASE WHEN $4 THEN now() END WHERE job_id = $1",
        job_id,
        last_subject,
        queued,
        done,
    )


async def fanout_jobs(conn: asyncpg.Connection, limit: int = 50) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT job_id, notice, notice_id, template, queued, done, created_at, finished_at FROM fanout_jobs "
        "ORDER BY created_at DESC LIMIT $1",
        limit,
    )


async def open_fanouts(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM fanout_jobs WHERE NOT done"))


# --- final notices after an erasure ------------------------------------------------------------


async def lock_emails_of(conn: asyncpg.Connection, subject: str, templates: Sequence[str]) -> list[asyncpg.Record]:
    """Lock a subject's emails of these templates: a sender marking one of them waits for this transaction."""
    return await conn.fetch(
        "SELECT * FROM emails WHERE subject = $1 AND template = ANY($2::text[]) ORDER BY notification_id FOR UPDATE",
        subject,
        list(templates),
    )


async def make_final(conn: asyncpg.Connection, notification_id: str, params_sealed: bytes | None) -> None:
    await conn.execute(
        "UPDATE emails SET final_notice = true, params_sealed = $2, updated_at = now() WHERE notification_id = $1",
        notification_id,
        params_sealed,
    )


async def save_final_notice(
    conn: asyncpg.Connection,
    *,
    subject: str,
    request_id: Any,
    wrapped_key: bytes,
    master_key_id: str,
    contact_sealed: bytes,
    keep_seconds: float,
) -> None:
    await conn.execute(
        """
        INSERT INTO final_notices (subject, request_id, wrapped_key, master_key_id, contact_sealed, expires_at)
        VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
        ON CONFLICT (subject) DO NOTHING
        """,
        subject,
        request_id,
        wrapped_key,
        master_key_id,
        contact_sealed,
        keep_seconds,
    )


async def final_notices(conn: asyncpg.Connection, subjects: Sequence[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT * FROM final_notices WHERE subject = ANY($1::text[]) AND expires_at > now()", list(subjects)
    )
    return {r["subject"]: r for r in rows}


async def delete_final_notice(conn: asyncpg.Connection, subject: str) -> None:
    await conn.execute("DELETE FROM final_notices WHERE subject = $1", subject)


async def final_notices_under_masters(conn: asyncpg.Connection, master_ids: Sequence[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT subject, wrapped_key, master_key_id FROM final_notices WHERE master_key_id = ANY($1::text[]) "
        "FOR UPDATE SKIP LOCKED", list(master_ids))


async def count_final_notices_under_masters(conn: asyncpg.Connection, master_ids: Sequence[str]) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM final_notices WHERE master_key_id = ANY($1::text[])", list(master_ids)))


async def rewrap_final_notice(conn: asyncpg.Connection, subject: str, wrapped_key: bytes, master_id: str) -> None:
    await conn.execute("UPDATE final_notices SET wrapped_key = $2, master_key_id = $3 WHERE subject = $1",
                       subject, wrapped_key, master_id)


async def purge_final_notices(conn: asyncpg.Connection) -> int:
    count = await conn.fetchval(
        "WITH d AS (DELETE FROM final_notices WHERE expires_at <= now() RETURNING 1) SELECT count(*) FROM d"
    )
    return int(count)
