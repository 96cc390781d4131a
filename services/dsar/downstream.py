"""The dsar service as a downstream system: its answers to `privacy-commands.dsar`.

It holds case records, one-time code hashes, export fragments and packages. Erasure removes all but
the case records (kept as proof the request was handled, with nothing readable once the key is gone).
When the erase belongs to one of our own open erasure cases the key is shredded when that case
completes (it still has to send the notifier its erase command, sealed with that key); otherwise it
is shredded right after the ack.
"""

from __future__ import annotations

from typing import Any

from privacy_runtime.crypto import KeyRing
from privacy_runtime.inbox import Action, Outcome
from privacy_runtime.unit_of_work import UnitOfWork
from services.dsar import cases, store
from services.dsar.sealing import CaseTexts


def dsar_actions(keyring: KeyRing) -> dict[str, Action]:
    texts = CaseTexts(keyring)

    async def erase(tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        conn = tx.conn
        removed = await store.erase_subject_records(conn, subject)
        own = await store.get_case(conn, str(command.request_id)) if command.request_id else None
        detail = f"removed {removed} records; case records kept without readable personal data"
        if own is not None and own.subject == subject and own.right == cases.ERASURE and not own.terminal:
            return Outcome("done", detail=detail + "; key shredded when the case completes")

        async def shred(after: UnitOfWork) -> None:
            await after.keys.shred_subject(subject)

        return Outcome("done", detail=detail, after_ack=[shred])

    async def export(tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        conn = tx.conn
        records = await texts.opened_all(conn, await store.cases_of(conn, subject))
        restricted = await conn.fetchval("SELECT 1 FROM restrictions WHERE subject = $1", subject) is not None
        return Outcome(
            "done",
            export={
                "system": "dsar",
                "restricted": restricted,
                "requests": [
                    {
                        "request_id": c.request_id,
                        "right": c.right,
                        "status": c.status,
                        "received_at": c.received_at.isoformat(),
                        "due_at": c.due_at.isoformat(),
                        "extended": c.extended,
                        "extension_reason": c.extension_reason,
                        "reason": c.reason,
                        "closed_at": c.closed_at.isoformat() if c.closed_at else None,
                        "systems_told": c.told,
                    }
                    for c in records
                ],
            },
        )

    async def restrict(tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        # Case records stay usable for handling the subject's own requests (Art. 18(2): legal claims).
        conn = tx.conn
        await store.set_restricted(conn, subject, True)
        return Outcome("done", detail="case records kept for handling requests only")

    async def lift_restriction(tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        conn = tx.conn
        await store.set_restricted(conn, subject, False)
        return Outcome("done")

    async def rectify(tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        return Outcome("done", detail="the dsar service holds none of these fields")

    return {
        "erase": erase,
        "export": export,
        "restrict": restrict,
        "lift_restriction": lift_restriction,
        "rectify": rectify,
    }
