"""Seals on the consent ledger: proof that the record of every consent is as it was written.

Every batch appended to the ledger is sealed by the statement that appends it (`store.append_ledger`:
each row's content hash, and a seal over the batch's hashes). `anchor` ties the seals made since the
last anchor into the hash-chained audit trail, one entry for all of them; the consent service runs it
every `LEDGER_ANCHOR_SECONDS`. `verify` walks all three: a row whose content changed, a batch that lost
or gained rows, a seal that changed, each named. Erasure keeps the removed rows' hashes, so erased
subjects leave their batches verifiable.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from privacy_runtime.unit_of_work import UnitOfWork
from services.consent import store

ANCHOR_ACTION = "consent_ledger_anchored"


@dataclass(frozen=True)
class LedgerProblem:
    #: The audit entry that anchors what is wrong, 0 for a row or a seal not anchored yet.
    seq: int
    problem: str


@dataclass(frozen=True)
class LedgerReport:
    rows_checked: int
    seals_checked: int
    not_anchored_yet: int
    unsealed_rows: int
    problems: list[LedgerProblem]


def seal_digest(hashes: Sequence[bytes]) -> bytes:
    """What a seal holds for its rows' hashes: the SQL of `store.append_ledger`, in Python."""
    return hashlib.sha256(b"".join(sorted(hashes))).digest()


def anchor_digest(seals: Sequence[tuple[uuid.UUID, int, bytes]]) -> str:
    """What an anchor's audit entry holds for its seals (batch, entries, digest)."""
    lines = sorted(f"{batch}:{entries}:{digest.hex()}" for batch, entries, digest in seals)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


async def anchor(tx: UnitOfWork) -> int:
    """Anchor the seals made since the last anchor in the audit chain (inside the caller's transaction);
    returns how many were anchored."""
    conn = tx.conn
    anchor_id = uuid.uuid4()
    rows = await store.claim_unanchored_seals(conn, anchor_id)
    if not rows:
        return 0
    digest = anchor_digest([(r["batch"], r["entries"], bytes(r["digest"])) for r in rows])
    await tx.audit.record(ANCHOR_ACTION, ref=str(anchor_id), detail={"seals": len(rows), "digest": digest})
    return len(rows)


async def verify(conn: asyncpg.Connection) -> LedgerReport:
    """Check every sealed row against its hash, every batch against its seal, every anchored seal
    against its anchor. Rows from before sealing existed are counted, not judged.

    One snapshot for all of it: a batch committed between two of the reads would otherwise look like
    rows without a seal, or a seal without its rows."""
    if conn.is_in_transaction():
        return await _verify(conn)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _verify(conn)


async def _verify(conn: asyncpg.Connection) -> LedgerReport:
    problems: list[LedgerProblem] = []
    for row in await store.altered_ledger_rows(conn):
        problems.append(LedgerProblem(0, f"ledger row {row['id']} ({row['entry_id']}): its content no longer "
                                         "matches its hash"))
    hashes = await store.ledger_hashes_by_batch(conn)
    seals = await store.ledger_seals(conn)
    anchors = {str(row["ref"]): row for row in await store.seal_anchors(conn)}
    sealed_batches = {row["batch"] for row in seals}
    by_anchor: dict[str, list[tuple[uuid.UUID, int, bytes]]] = {}
    for seal in seals:
        batch, digest = seal["batch"], bytes(seal["digest"])
        anchored = str(seal["anchored_in"]) if seal["anchored_in"] else None
        seq = anchors[anchored]["seq"] if anchored in anchors else 0
        found = hashes.get(batch, [])
        if len(found) != seal["entries"] or seal_digest(found) != digest:
            problems.append(LedgerProblem(seq, f"ledger batch {batch} (sealed {seal['sealed_at'].isoformat()}): "
                                               f"{len(found)} rows where {seal['entries']} were sealed, or rows "
                                               "changed since"))
        if anchored is not None:
            by_anchor.setdefault(anchored, []).append((batch, seal["entries"], digest))
            if anchored not in anchors:
                problems.append(LedgerProblem(0, f"ledger batch {batch}: anchored by {anchored}, which the audit "
                                                 "trail does not have"))
    for batch in sorted(set(hashes) - sealed_batches, key=str):
        problems.append(LedgerProblem(0, f"ledger batch {batch}: {len(hashes[batch])} rows without a seal"))
    for ref, entry in anchors.items():
        detail = entry["detail"] if isinstance(entry["detail"], dict) else json.loads(entry["detail"])
        sealed = by_anchor.get(ref, [])
        if len(sealed) != detail.get("seals") or anchor_digest(sealed) != detail.get("digest"):
            problems.append(LedgerProblem(entry["seq"], f"ledger anchor {ref}: its seals are not the ones it "
                                                        f"anchored ({len(sealed)} of {detail.get('seals')})"))
    return LedgerReport(
        rows_checked=sum(len(found) for found in hashes.values()),
        seals_checked=len(seals),
        not_anchored_yet=sum(1 for seal in seals if seal["anchored_in"] is None),
        unsealed_rows=await store.unsealed_ledger_rows(conn),
        problems=problems,
    )
