"""Consent storage: SQL through asyncpg, nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg

from services.consent.rules import ConsentRecord, Registration, SubjectProfile


class RegistrationRow(NamedTuple):
    """One user-registered event as kept: the subject's profile moves to it and it is kept as sent."""

    event_id: str
    subject: str
    country: str | None
    minor: bool
    source: str | None
    parent_account: str | None
    registered_at: datetime
    ordered_at: datetime


class OptOutProof(NamedTuple):
    """A withdrawal kept after erasure: a keyed hash of the subject, no subject id."""

    subject_digest: str
    purpose: str
    channel: str
    policy_version: str | None
    effective_at: datetime


class LedgerLine(NamedTuple):
    record: ConsentRecord
    jurisdiction: str | None
    recorded_at: datetime


def _record(row: asyncpg.Record) -> ConsentRecord:
    return ConsentRecord(
        event_id=row["entry_id"], purpose=row["purpose"], granted=row["granted"],
        effective_at=row["effective_at"], channel=row["channel"], policy_version=row["policy_version"],
        ordered_at=row["ordered_at"],
    )


def _profile(row: asyncpg.Record) -> SubjectProfile:
    return SubjectProfile(
        subject=row["subject"], country=row["country"], minor=row["minor"], restricted=row["restricted"],
        objections=frozenset(row["objections"] or ()),
    )


async def upsert_registrations(conn: asyncpg.Connection, rows: Sequence[RegistrationRow]) -> dict[str, str | None]:
    """Move each subject's profile to its registration. The newer
    registration in ordering time wins (`privacy_runtime.ordering`: a time stated too far ahead counts as
    its arrival); rows from before ordering time was kept compare by their stated time.

    Returns the subjects registered before whose country a newer registration changed, each with the
    country it had (a profile created by an early consent change, country unknown, is not a move)."""
    if not rows:
        return {}
    moved = await conn.fetch(
        """
        WITH before AS (
            SELECT subject, country, registered_at FROM subjects WHERE subject = ANY($1::text[])
        ), upserted AS (
            INSERT INTO subjects (subject, country, minor, registration_source, parent_account, registered_at,
                                  registration_ordered_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::text[], $6::timestamptz[],
                                 $7::timestamptz[])
            ON CONFLICT (subject) DO UPDATE SET
                country = excluded.country, minor = subjects.minor OR excluded.minor,
                registration_source = excluded.registration_source, parent_account = excluded.parent_account,
                registered_at = excluded.registered_at, registration_ordered_at = excluded.registration_ordered_at
            WHERE subjects.registered_at IS NULL
               OR coalesce(subjects.registration_ordered_at, subjects.registered_at) <= excluded.registration_ordered_at
            RETURNING subject, country
        )
        SELECT u.subject, b.country AS before FROM upserted u JOIN before b USING (subject)
        WHERE b.registered_at IS NOT NULL AND b.country IS DISTINCT FROM u.country
        """,
        [r.subject for r in rows], [r.country for r in rows], [r.minor for r in rows], [r.source for r in rows],
        [r.parent_account for r in rows], [r.registered_at for r in rows], [r.ordered_at for r in rows],
    )
    return {r["subject"]: r["before"] for r in moved}


async def append_registrations(conn: asyncpg.Connection, rows: Sequence[RegistrationRow]) -> None:
    """Keep each registration as sent; a re-delivery adds nothing."""
    if not rows:
        return
    await conn.execute(
        """
        INSERT INTO registrations (event_id, subject, source, country, parent_account, registered_at)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
        ON CONFLICT (event_id) DO NOTHING
        """,
        [r.event_id for r in rows], [r.subject for r in rows], [r.source for r in rows], [r.country for r in rows],
        [r.parent_account for r in rows], [r.registered_at for r in rows],
    )


async def registrations_of(conn: asyncpg.Connection, subject: str) -> list[Registration]:
    rows = await conn.fetch(
        "SELECT source, country, parent_account, registered_at FROM registrations "
        "WHERE subject = $1 ORDER BY registered_at, event_id", subject,
    )
    return [Registration(r["source"], r["country"], r["parent_account"], r["registered_at"]) for r in rows]


async def ensure_subjects(conn: asyncpg.Connection, subjects: Sequence[str]) -> None:
    """A consent change may arrive before its registration: keep a strict (country unknown) profile."""
    await conn.execute(
        "INSERT INTO subjects (subject) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", list(subjects)
    )


class Appended(NamedTuple):
    """What `append_ledger` did, and what the step after it needs to know."""

    #: The entry ids new to the ledger (the others are a re-delivered event's).
    entry_ids: set[str]
    #: The stored current state, from before this append, of every (subject, purpose) it was given.
    states: dict[tuple[str, str], ConsentRecord]
    #: The digests (of those given) found erased: their subjects' entries were not appended.
    erased: set[str]


async def append_ledger(
    conn: asyncpg.Connection, entries: Sequence[tuple[str, ConsentRecord]],
    digests: Sequence[str | None] | None = None,
) -> Appended:
    """Append (subject, record) entries, each with its subject's jurisdiction at the time, and read the
    current state of the purposes they touch, in one round trip (the withdrawal's latency is mostly
    round trips).

    `digests`: per entry, its subject's tombstone digest, or None; an entry whose digest is in
    `erased_subjects` is not appended (a late event must not bring an erased subject back), and the
    digest is returned. The caller holds the subjects' locks, taken in an earlier statement, so this
    statement's snapshot sees every erasure committed before them.

    A subject not seen yet gets a strict profile (country unknown), since a consent change may arrive
    before its registration; its entries get no jurisdiction, as before it existed. The rows appended
    are sealed by the same statement: each with its content's hash, the batch with a seal over those
    hashes (migration 0004; `anchor_seals` ties the seals into the audit chain)."""
    if not entries:
        return Appended(set(), {}, set())
    rows = await conn.fetch(
        """
        WITH erased AS MATERIALIZED (
            SELECT subject_digest FROM erased_subjects WHERE subject_digest = ANY($10::text[])
        ), created AS (
            INSERT INTO subjects (subject)
            SELECT DISTINCT u.subject FROM unnest($2::text[], $10::text[]) AS u(subject, digest)
            WHERE u.digest IS NULL OR u.digest NOT IN (SELECT subject_digest FROM erased)
            ON CONFLICT DO NOTHING
        ), appended AS (
            INSERT INTO consent_ledger (entry_id, subject, purpose, granted, channel, policy_version,
                                        jurisdiction, effective_at, ordered_at, row_hash, sealed_in)
            SELECT e.entry_id, e.subject, e.purpose, e.granted, e.channel, e.policy_version, p.country,
                   e.effective_at, e.ordered_at,
                   consent_ledger_row_hash(e.entry_id, e.subject, e.purpose, e.granted, e.channel,
                                           e.policy_version, p.country, e.effective_at), $8
            FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::text[], $6::text[], $7::timestamptz[],
                        $9::timestamptz[], $10::text[])
                 WITH ORDINALITY AS e(entry_id, subject, purpose, granted, channel, policy_version, effective_at,
                                      ordered_at, digest, n)
            LEFT JOIN subjects p ON p.subject = e.subject
            WHERE e.digest IS NULL OR e.digest NOT IN (SELECT subject_digest FROM erased)
            ORDER BY e.n
            ON CONFLICT (entry_id) DO NOTHING
            RETURNING entry_id, row_hash
        ), sealed AS (
            INSERT INTO ledger_seals (batch, entries, digest)
            SELECT $8, count(*), sha256(string_agg(row_hash, ''::bytea ORDER BY row_hash)) FROM appended
            HAVING count(*) > 0
        )
        SELECT 'appended' AS row_kind, entry_id, NULL AS subject, NULL AS purpose, NULL::bool AS granted,
               NULL AS channel, NULL AS policy_version, NULL::timestamptz AS effective_at,
               NULL::timestamptz AS ordered_at
        FROM appended
        UNION ALL
        SELECT 'state', s.entry_id, s.subject, s.purpose, s.granted, s.channel, s.policy_version, s.effective_at,
               s.ordered_at
        FROM consent_state s JOIN (SELECT DISTINCT * FROM unnest($2::text[], $3::text[])) AS k(subject, purpose)
          ON s.subject = k.subject AND s.purpose = k.purpose
        UNION ALL
        SELECT 'erased', subject_digest, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM erased
        """,
        [r.event_id for _, r in entries], [s for s, _ in entries], [r.purpose for _, r in entries],
        [r.granted for _, r in entries], [r.channel for _, r in entries],
        [r.policy_version for _, r in entries], [r.effective_at for _, r in entries], uuid.uuid4(),
        [r.order_time for _, r in entries], list(digests) if digests is not None else [None] * len(entries),
    )
    appended: set[str] = set()
    states: dict[tuple[str, str], ConsentRecord] = {}
    erased: set[str] = set()
    for row in rows:
        kind = row["row_kind"]
        if kind == "appended":
            appended.add(row["entry_id"])
        elif kind == "state":
            states[(row["subject"], row["purpose"])] = _record(row)
        else:
            erased.add(row["entry_id"])
    return Appended(appended, states, erased)


async def claim_unanchored_seals(conn: asyncpg.Connection, anchor: uuid.UUID) -> list[asyncpg.Record]:
    """Mark the seals not anchored yet as anchored by `anchor`; returns them (batch, entries, digest)."""
    return list(await conn.fetch(
        "UPDATE ledger_seals SET anchored_in = $1 WHERE batch IN (SELECT batch FROM ledger_seals "
        "WHERE anchored_in IS NULL FOR UPDATE SKIP LOCKED) RETURNING batch, entries, digest", anchor))


async def altered_ledger_rows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Sealed rows whose content no longer hashes to their `row_hash`."""
    return list(await conn.fetch(
        "SELECT id, entry_id FROM consent_ledger WHERE row_hash IS NOT NULL AND row_hash IS DISTINCT FROM "
        "consent_ledger_row_hash(entry_id, subject, purpose, granted, channel, policy_version, jurisdiction, "
        "effective_at) ORDER BY id"))


async def ledger_hashes_by_batch(conn: asyncpg.Connection) -> dict[uuid.UUID, list[bytes]]:
    """The row hashes of every batch: rows in the ledger and rows erasure removed."""
    rows = await conn.fetch(
        "SELECT sealed_in, array_agg(row_hash) AS hashes FROM (SELECT sealed_in, row_hash FROM consent_ledger "
        "WHERE sealed_in IS NOT NULL UNION ALL SELECT sealed_in, row_hash FROM erased_ledger_rows) t "
        "GROUP BY sealed_in")
    return {r["sealed_in"]: [bytes(h) for h in r["hashes"]] for r in rows}


async def unsealed_ledger_rows(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM consent_ledger WHERE sealed_in IS NULL"))


async def ledger_seals(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT batch, entries, digest, sealed_at, anchored_in FROM ledger_seals"))


async def seal_anchors(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The audit entries that anchor seals (ref: the anchor id; detail: seals, digest)."""
    return list(await conn.fetch(
        "SELECT seq, ref, detail FROM audit_log WHERE action = 'consent_ledger_anchored' ORDER BY seq"))


async def save_states(conn: asyncpg.Connection, entry_ids: Sequence[str]) -> None:
    """Make these ledger entries (appended in this transaction) the current state of their purpose.

    Copied inside the database by entry id: one array over the wire instead of every column again."""
    if not entry_ids:
        return
    await conn.execute(
        """
        INSERT INTO consent_state (subject, purpose, granted, channel, policy_version, effective_at, ordered_at,
                                   entry_id)
        SELECT subject, purpose, granted, channel, policy_version, effective_at, ordered_at, entry_id
        FROM consent_ledger WHERE entry_id = ANY($1::text[])
        ON CONFLICT (subject, purpose) DO UPDATE SET
            granted = excluded.granted, channel = excluded.channel, policy_version = excluded.policy_version,
            effective_at = excluded.effective_at, ordered_at = excluded.ordered_at, entry_id = excluded.entry_id
        """,
        list(entry_ids),
    )


async def profile(conn: asyncpg.Connection, subject: str) -> SubjectProfile | None:
    row = await conn.fetchrow("SELECT * FROM subjects WHERE subject = $1", subject)
    return _profile(row) if row else None


async def profiles(conn: asyncpg.Connection, subjects: Sequence[str]) -> dict[str, SubjectProfile]:
    rows = await conn.fetch("SELECT * FROM subjects WHERE subject = ANY($1::text[])", list(subjects))
    return {r["subject"]: _profile(r) for r in rows}


async def denying_profiles(conn: asyncpg.Connection, subjects: Sequence[str]) -> dict[str, SubjectProfile]:
    """The profiles among `subjects` that can deny a purpose whatever the consent says (restricted,
    a minor, an objection); the others are left out, so the common case reads no rows."""
    rows = await conn.fetch(
        "SELECT * FROM subjects WHERE subject = ANY($1::text[]) "
        "AND (restricted OR minor OR cardinality(objections) > 0)",
        list(subjects),
    )
    return {r["subject"]: _profile(r) for r in rows}


async def profile_and_state(
    conn: asyncpg.Connection, subject: str, purpose: str
) -> tuple[SubjectProfile | None, ConsentRecord | None]:
    """One round trip for the decision API's hot path."""
    row = await conn.fetchrow(
        """
        SELECT p.*, s.entry_id, s.purpose, s.granted, s.channel, s.policy_version, s.effective_at, s.ordered_at
        FROM subjects p LEFT JOIN consent_state s ON s.subject = p.subject AND s.purpose = $2
        WHERE p.subject = $1
        """,
        subject, purpose,
    )
    if row is None:
        return None, None
    return _profile(row), (_record(row) if row["entry_id"] is not None else None)


async def subject_view(
    conn: asyncpg.Connection, subject: str
) -> tuple[SubjectProfile | None, dict[str, ConsentRecord]]:
    """A subject's profile and every current consent, in one round trip (the decision cache's miss)."""
    rows = await conn.fetch(
        """
        SELECT p.*, s.entry_id, s.purpose, s.granted, s.channel, s.policy_version, s.effective_at, s.ordered_at
        FROM subjects p LEFT JOIN consent_state s ON s.subject = p.subject
        WHERE p.subject = $1
        """,
        subject,
    )
    if not rows:
        return None, {}
    return _profile(rows[0]), {r["purpose"]: _record(r) for r in rows if r["entry_id"] is not None}


async def states_of(conn: asyncpg.Connection, subject: str) -> list[ConsentRecord]:
    rows = await conn.fetch("SELECT * FROM consent_state WHERE subject = $1 ORDER BY purpose", subject)
    return [_record(r) for r in rows]


async def history_of(conn: asyncpg.Connection, subject: str) -> list[LedgerLine]:
    rows = await conn.fetch(
        "SELECT * FROM consent_ledger WHERE subject = $1 ORDER BY coalesce(ordered_at, effective_at), id", subject
    )
    return [LedgerLine(_record(r), r["jurisdiction"], r["recorded_at"]) for r in rows]


async def set_restriction(conn: asyncpg.Connection, subject: str, restricted: bool, circumstance: str | None) -> bool:
    done = await conn.fetchval(
        "UPDATE subjects SET restricted = $2, restriction_circumstance = $3 WHERE subject = $1 RETURNING 1",
        subject, restricted, circumstance,
    )
    return done is not None


async def add_objection(conn: asyncpg.Connection, subject: str, processing: str) -> None:
    await conn.execute(
        "UPDATE subjects SET objections = array(SELECT DISTINCT unnest(objections || $2::text)) "
        "WHERE subject = $1",
        subject, processing,
    )


async def rectify(conn: asyncpg.Connection, subject: str, country: str | None) -> bool:
    done = await conn.fetchval(
        "UPDATE subjects SET country = $2 WHERE subject = $1 RETURNING 1", subject, country
    )
    return done is not None


async def erase_subject(conn: asyncpg.Connection, subject: str, subject_digest: str) -> int:
    """Keep only proof of opt-outs (keyed hash, no subject id); remove everything else (see 0002)."""
    return int(await conn.fetchval("SELECT erase_consent_subject($1, $2)", subject, subject_digest))


async def add_opt_out_proofs(conn: asyncpg.Connection, proofs: Sequence[OptOutProof]) -> None:
    if not proofs:
        return
    await conn.execute(
        """
        INSERT INTO opt_out_proofs (subject_digest, purpose, channel, policy_version, effective_at)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
        ON CONFLICT DO NOTHING
        """,
        *zip(*proofs, strict=True),
    )


async def has_opt_out_proof(conn: asyncpg.Connection, subject_digest: str) -> bool:
    found = await conn.fetchval("SELECT 1 FROM opt_out_proofs WHERE subject_digest = $1 LIMIT 1", subject_digest)
    return found is not None


async def claim_footer_withdrawal(conn: asyncpg.Connection, event_id: str) -> bool:
    """Take one unsubscribe click's withdrawal (by its event id); False: it was taken already."""
    claimed = await conn.fetchval(
        "INSERT INTO footer_withdrawals (event_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true",
        uuid.UUID(event_id),
    )
    return bool(claimed)
