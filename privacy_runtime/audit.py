"""Append-only, hash-chained audit trail, written in the same transaction as the effect it records.

Each entry's hash covers its content and the previous entry's hash, so changing or removing any row
breaks the chain from that row on; `verify_chain` names the first row that does not match. Entries are
also published on `privacy-audit` through the outbox, each with its place in the chain (CloudEvents
extensions `auditseq`, `audithash`): a copy outside the database, so that removing the chain's newest
rows, or rewriting it and hashing it again, is caught by comparing the two (`privacyctl audit verify`).
No plaintext PII goes into `detail`: free text that may name a person (an operator's reason) is passed
as `sealed`, sealed with the subject's key into `sealed_notes`, and the entry keeps only the SHA-256 of
the ciphertext, so erasure shreds the text while the chain (and its copy on `privacy-audit`) still
verifies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

import asyncpg

from privacy_runtime import metrics
from privacy_runtime.crypto import SubjectErased
from privacy_runtime.outbox import Outbox
from schemas.events import PrivacyAudit
from schemas.topics import PRIVACY_AUDIT

GENESIS = "0" * 64
#: CloudEvents extension attributes of a published entry: its place in the chain, and which chain (the
#: hash of its first entry: two databases of one service, say staging and production, have two chains).
AUDIT_SEQ = "auditseq"
AUDIT_HASH = "audithash"
AUDIT_CHAIN = "auditchain"
# One lock per schema (the second key: the schema's hash) serialises appends so the chain has no forks;
# the services' chains, in their own schemas of one database, do not wait for each other.
_LOCK_KEY = 0x5A0D17


def entry_hash(prev_hash: str, seq: int, at: datetime, action: str, actor: str, subject: str | None,
               ref: str | None, detail: dict[str, Any]) -> str:
    canonical = json.dumps(
        [prev_hash, seq, at.astimezone(UTC).isoformat(), action, actor, subject, ref, detail],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class EntryFields(TypedDict, total=False):
    """What an entry may say besides its action (every way of recording one takes these)."""

    subject: str | None
    ref: str | None
    detail: dict[str, Any] | None
    #: Who did it, when not the service itself (an operator).
    actor: str | None
    #: False: kept in the chain only, not published on `privacy-audit` (default True).
    publish: bool
    #: Detail fields of free text that may name a person: each is kept sealed with the subject's key
    #: and the entry names it by the SHA-256 of its ciphertext (`{"sealed_sha256": ...}`).
    sealed: Mapping[str, str | None] | None


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    action: str
    actor: str
    subject: str | None
    ref: str | None
    detail: dict[str, Any]
    publish: bool


class AuditTrail:
    """Appends entries to the chain.

    In a unit of work (`Transaction.audit`) entries are collected and appended together just before
    the commit: one lock, one read of the chain's head and one insert per transaction instead of per
    entry, and the chain's lock is held only at the very end. `record` on a bare connection appends
    at once. Either way it commits or rolls back with the effect it records."""

    def __init__(self, outbox: Outbox, actor: str):
        self.outbox = outbox
        self.actor = actor
        self._chain_id: str | None = None

    async def entry(
        self, conn: asyncpg.Connection, action: str, *, pending: dict[str, bytes] | None = None,
        **fields: Unpack[EntryFields],
    ) -> AuditEntry:
        """One entry, not appended yet (`pending`: the data keys the caller's transaction created)."""
        subject = fields.get("subject")
        detail = dict(fields.get("detail") or {})
        for name, text in (fields.get("sealed") or {}).items():
            if text:
                detail[name] = await self._seal(conn, subject, name, text, pending)
        # Microsecond precision is what PostgreSQL stores, so the hash survives the round trip.
        return AuditEntry(datetime.now(UTC), action, fields.get("actor") or self.actor, subject, fields.get("ref"),
                          detail, fields.get("publish", True))

    async def record(self, conn: asyncpg.Connection, action: str, **fields: Unpack[EntryFields]) -> None:
        """Append one entry at once inside the caller's transaction (a unit of work's `audit` batches)."""
        await self.append(conn, [await self.entry(conn, action, **fields)])

    async def _seal(self, conn: asyncpg.Connection, subject: str | None, name: str, text: str,
                    pending: dict[str, bytes] | None) -> dict[str, str]:
        if subject is None:
            raise ValueError("free text is sealed with a subject's key: the entry needs a subject")
        try:
            blob = await self.outbox.keyring.encrypt(conn, subject, f"note:{name}", text, pending)
        except SubjectErased:  # nothing of theirs may be kept now: the text is not kept at all
            return {"sealed_sha256": "", "not_kept": "the subject's data was erased"}
        assert blob is not None
        digest = hashlib.sha256(blob).hexdigest()
        await conn.execute(
            "INSERT INTO sealed_notes (sha256, subject, sealed) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            digest, subject, blob,
        )
        return {"sealed_sha256": digest}

    async def open_note(
        self, conn: asyncpg.Connection, subject: str, name: str, reference: Mapping[str, str]
    ) -> str | None:
        """The text an entry's sealed field names, or None once the subject's key is gone."""
        row = await conn.fetchrow("SELECT sealed FROM sealed_notes WHERE sha256 = $1 AND subject = $2",
                                  reference.get("sealed_sha256", ""), subject)
        if row is None:
            return None
        return await self.outbox.keyring.decrypt(conn, subject, f"note:{name}", bytes(row["sealed"]))

    async def append(self, conn: asyncpg.Connection, entries: list[AuditEntry]) -> None:
        if not entries:
            return
        await conn.execute("SELECT pg_advisory_xact_lock($1::int, hashtext(current_schema()))", _LOCK_KEY)
        last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        seq = 0 if last is None else last["seq"]
        prev = GENESIS if last is None else last["hash"]
        chain_id = self._chain_id if last is not None else None
        if last is not None and chain_id is None:
            chain_id = await conn.fetchval("SELECT hash FROM audit_log WHERE seq = 1")
        rows = []
        positions: list[dict[str, str]] = []
        for entry in entries:
            seq += 1
            digest = entry_hash(prev, seq, entry.at, entry.action, entry.actor, entry.subject, entry.ref, entry.detail)
            rows.append((seq, entry.at, entry.action, entry.actor, entry.subject, entry.ref,
                         json.dumps(entry.detail), prev, digest))
            chain_id = chain_id or digest
            positions.append({AUDIT_SEQ: str(seq), AUDIT_HASH: digest, AUDIT_CHAIN: chain_id})
            prev = digest
            metrics.AUDIT_ENTRIES.labels(action=entry.action).inc()
        await conn.execute(
            "INSERT INTO audit_log (seq, at, action, actor, subject, ref, detail, prev_hash, hash) "
            "SELECT seq, at, action, actor, subject, ref, detail::jsonb, prev_hash, hash FROM unnest("
            "$1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], "
            "$8::text[], $9::text[]) AS e(seq, at, action, actor, subject, ref, detail, prev_hash, hash)",
            *zip(*rows, strict=True),
        )
        # privacy-audit events are keyed by subject: an entry without one stays in the chain only.
        published = [(e, at) for e, at in zip(entries, positions, strict=True) if e.publish and e.subject is not None]
        await self.outbox.write(conn, [self.outbox.encode(
            PRIVACY_AUDIT, PrivacyAudit(
                action=e.action, actor=e.actor, ref=e.ref or e.subject or e.action,
                detail=json.dumps(e.detail, sort_keys=True, ensure_ascii=False)[:4000],
            ), subject=e.subject, seal=False, extensions=at,
        )[1] for e, at in published])
        if last is not None:  # read from committed rows (a first entry written here may yet roll back)
            self._chain_id = chain_id


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    problem: str


async def verify_chain(conn: asyncpg.Connection) -> tuple[int, list[ChainProblem]]:
    """Walk the whole chain; returns (entries checked, problems naming each bad row)."""
    problems: list[ChainProblem] = []
    prev = GENESIS
    expected_seq = 1
    count = 0
    async with conn.transaction():
        async for row in conn.cursor(
            "SELECT seq, at, action, actor, subject, ref, detail, prev_hash, hash FROM audit_log ORDER BY seq",
            prefetch=5000,  # a long chain in few round trips
        ):
            count += 1
            if row["seq"] != expected_seq:
                problems.append(ChainProblem(row["seq"], f"sequence gap: expected {expected_seq}"))
            if row["prev_hash"] != prev:
                problems.append(ChainProblem(row["seq"], "prev_hash does not match the previous entry"))
            detail = json.loads(row["detail"]) if isinstance(row["detail"], str) else row["detail"]
            recomputed = entry_hash(
                row["prev_hash"], row["seq"], row["at"], row["action"], row["actor"], row["subject"],
                row["ref"], detail,
            )
            if recomputed != row["hash"]:
                problems.append(ChainProblem(row["seq"], "content does not match its hash (row was altered)"))
            prev = row["hash"]
            expected_seq = row["seq"] + 1
    return count, problems


async def compare_with_published(
    conn: asyncpg.Connection, published: list[tuple[int, str]]
) -> list[ChainProblem]:
    """Problems for entries published on privacy-audit (seq, hash) that the chain no longer holds as
    published: removed (the chain cut short, or rows deleted) or different (rewritten)."""
    if not published:
        return []
    stored = {r["seq"]: r["hash"] for r in await conn.fetch(
        "SELECT seq, hash FROM audit_log WHERE seq = ANY($1::bigint[])", [seq for seq, _ in published])}
    problems = []
    for seq, digest in published:
        if seq not in stored:
            problems.append(ChainProblem(seq, "published on privacy-audit but missing here (rows removed or the "
                                              "chain cut short)"))
        elif stored[seq] != digest:
            problems.append(ChainProblem(seq, "differs from the entry published on privacy-audit (rewritten)"))
    return problems


async def entry_summary(conn: asyncpg.Connection, seq: int) -> dict[str, Any] | None:
    """One entry as an operator may see it: where and what, never its `detail` (free text lives there)."""
    row = await conn.fetchrow("SELECT seq, at, action, actor, ref FROM audit_log WHERE seq = $1", seq)
    if row is None:
        return None
    return {"seq": row["seq"], "at": row["at"].isoformat(), "action": row["action"], "actor": row["actor"],
            "ref": row["ref"]}


async def verification_report(conn: asyncpg.Connection, service: str) -> dict[str, Any]:
    """The chain verified, for the operator endpoint `/v1/admin/audit/verify` (and the office)."""
    verified_at = datetime.now(UTC)
    checked, problems = await verify_chain(conn)
    first = await entry_summary(conn, problems[0].seq) if problems else None
    return {
        "service": service,
        "entries": checked,
        "ok": not problems,
        "problems": [{"seq": p.seq, "problem": p.problem} for p in problems[:20]],
        "problem_count": len(problems),
        "first_broken": {**first, "problem": problems[0].problem} if first and problems else None,
        "verified_at": verified_at.isoformat(),
    }
