"""The privacy center's SQL: sign-in links, sessions, submitted forms."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg


async def add_sign_in_link(conn: asyncpg.Connection, token_hash: str, subject: str, expires_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO sign_in_links (token_hash, subject, expires_at) VALUES ($1, $2, $3)",
        token_hash, subject, expires_at,
    )


async def sign_in_link_state(conn: asyncpg.Connection, token_hash: str, now: datetime) -> str:
    """'valid', 'used', 'expired' or 'unknown', without using it up (a link scanner's GET changes nothing)."""
    row = await conn.fetchrow("SELECT expires_at, used_at FROM sign_in_links WHERE token_hash = $1", token_hash)
    if row is None:
        return "unknown"
    if row["used_at"] is not None:
        return "used"
    return "expired" if row["expires_at"] <= now else "valid"


async def use_sign_in_link(conn: asyncpg.Connection, token_hash: str, now: datetime) -> str | None:
    """The link's subject, marking it used; None when it is unknown, used or expired (once, atomically)."""
    value = await conn.fetchval(
        "UPDATE sign_in_links SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 "
        "RETURNING subject",
        token_hash, now,
    )
    return str(value) if value is not None else None


async def open_session(conn: asyncpg.Connection, sid_hash: str, subject: str, via: str, now: datetime) -> None:
    await conn.execute(
        "INSERT INTO sessions (sid_hash, subject, via, created_at, last_seen) VALUES ($1, $2, $3, $4, $4) "
        "ON CONFLICT (sid_hash) DO NOTHING",
        sid_hash, subject, via, now,
    )


async def touch_session(conn: asyncpg.Connection, sid_hash: str, now: datetime, idle: timedelta) -> str | None:
    """The session's subject when it is open and was used within `idle`, restarting its idle time."""
    value = await conn.fetchval(
        "UPDATE sessions SET last_seen = $2 WHERE sid_hash = $1 AND ended_at IS NULL "
        "AND last_seen > $2::timestamptz - $3::interval "
        "RETURNING subject",
        sid_hash, now, idle,
    )
    return str(value) if value is not None else None


async def end_session(conn: asyncpg.Connection, sid_hash: str, now: datetime) -> None:
    await conn.execute("UPDATE sessions SET ended_at = $2 WHERE sid_hash = $1 AND ended_at IS NULL", sid_hash, now)


async def claim_submission(conn: asyncpg.Connection, submission: uuid.UUID, subject: str, kind: str,
                           request_id: str | None, note_sealed: bytes | None) -> bool:
    """Record a submitted form; False when this form was submitted before (then nothing more is done)."""
    inserted = await conn.fetchval(
        "INSERT INTO submissions (submission_id, subject, kind, request_id, note_sealed) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (submission_id) DO NOTHING RETURNING true",
        submission, subject, kind, uuid.UUID(request_id) if request_id else None, note_sealed,
    )
    return bool(inserted)


async def notes_of(conn: asyncpg.Connection, subject: str) -> dict[str, bytes]:
    """request id -> the sealed note the person wrote with it."""
    rows = await conn.fetch(
        "SELECT request_id, note_sealed FROM submissions WHERE subject = $1 AND note_sealed IS NOT NULL "
        "AND request_id IS NOT NULL",
        subject,
    )
    return {str(r["request_id"]): bytes(r["note_sealed"]) for r in rows}


async def purge(conn: asyncpg.Connection, now: datetime, notes_older_than: datetime) -> int:
    """Forget what is no longer needed: spent links and ended sessions after a day, notes after their
    retention (the submission row stays: a late re-submit must still publish nothing)."""
    day = now - timedelta(days=1)
    links = await conn.execute("DELETE FROM sign_in_links WHERE expires_at < $1", day)
    sessions = await conn.execute("DELETE FROM sessions WHERE last_seen < $1", day)
    notes = await conn.execute(
        "UPDATE submissions SET note_sealed = NULL WHERE note_sealed IS NOT NULL AND created_at < $1",
        notes_older_than)
    return sum(int(status.split()[-1]) for status in (links, sessions, notes))


async def forget_subject(conn: asyncpg.Connection, subject: str) -> int:
    """Delete everything held of an erased subject: their forms (and the notes in them), sessions, links."""
    total = 0
    for table in ("submissions", "sessions", "sign_in_links"):
        status = await conn.execute(f"DELETE FROM {table} WHERE subject = $1", subject)  # the three fixed names above
        total += int(status.split()[-1])
    return total
