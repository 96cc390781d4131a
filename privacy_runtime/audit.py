"""Append-only, hash-chained audit trail, written in the same transaction as the effect it records.

Each entry's hash covers its content and the previous entry's hash, so changing or removing any row
breaks the chain from that row on; `verify_chain` names the first row that does not match. Entries are
also published on `privacy-audit` through the outbox. No plaintext PII goes into `detail`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from privacy_runtime import metrics
from privacy_runtime.outbox import Outbox
from schemas.events import PrivacyAudit
from schemas.topics import PRIVACY_AUDIT

GENESIS = "0" * 64
# One lock per schema serialises appends so the chain has no forks.
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


class AuditTrail:
    def __init__(self, outbox: Outbox, actor: str):
        self.outbox = outbox
        self.actor = actor

    async def record(
        self,
        conn: asyncpg.Connection,
        action: str,
        *,
        subject: str | None = None,
        ref: str | None = None,
        detail: dict[str, Any] | None = None,
        actor: str | None = None,
        publish: bool = True,
    ) -> int:
        """Append one entry inside the caller's transaction; returns its sequence number."""
        detail = detail or {}
        actor = actor or self.actor
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        seq = 1 if last is None else last["seq"] + 1
        prev = GENESIS if last is None else last["hash"]
        # Microsecond precision is what PostgreSQL stores, so the hash survives the round trip.
        at = datetime.now(UTC)
        digest = entry_hash(prev, seq, at, action, actor, subject, ref, detail)
        await conn.execute(
            "INSERT INTO audit_log (seq, at, action, actor, subject, ref, detail, prev_hash, hash) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)",
            seq, at, action, actor, subject, ref, json.dumps(detail), prev, digest,
        )
        metrics.AUDIT_ENTRIES.labels(action=action).inc()
        if publish:
            await self.outbox.add(
                conn,
                PRIVACY_AUDIT,
                PrivacyAudit(
                    action=action, actor=actor, ref=ref or subject or action,
                    detail=json.dumps(detail, sort_keys=True, ensure_ascii=False)[:4000],
                ),
                subject=subject,
                key=subject or ref or action,
                seal=False,
            )
        return seq


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
            "SELECT seq, at, action, actor, subject, ref, detail, prev_hash, hash FROM audit_log ORDER BY seq"
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
