"""A service as a downstream system: act on `privacy-commands.<self>` and answer on `privacy-acks`.

Each service supplies one coroutine per action (erase, restrict, lift_restriction, rectify, export).
A command is applied once per `command_id`; a re-sent command (the sender missed our ack) is
answered again with the recorded status and basis, without being applied again. An `export` is a read:
a re-sent one is exported again, since the data travels only in the ack the sender missed (a sender
whose answer arrived, or is arriving in parts, does not re-send it). An export too large for one
message is answered in parts (`export_chunks`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from privacy_runtime import export_chunks
from privacy_runtime.command_codec import ack_events
from privacy_runtime.crypto import SubjectErased
from privacy_runtime.processor import Inbound
from privacy_runtime.unit_of_work import UnitOfWork
from schemas.fields import MAX_EXPORT_TOTAL_BYTES
from schemas.topics import PRIVACY_ACKS

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    status: str  # done | failed | not_found | retained
    detail: str | None = None
    retained_basis: str | None = None
    export: dict[str, Any] | None = None
    #: Called after the ack is queued, in the same transaction (e.g. shred the subject's key last).
    after_ack: list[Callable[[UnitOfWork], Awaitable[None]]] = field(default_factory=list)


Action = Callable[[UnitOfWork, str, Any], Awaitable[Outcome]]


class CommandInbox:
    def __init__(self, system: str, actions: dict[str, Action]):
        self.system = system
        self.actions = actions

    async def handle(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        for item in batch:
            await self.handle_one(tx, item)

    async def handle_one(self, tx: UnitOfWork, item: Inbound) -> None:
        conn = tx.conn
        command = item.data
        subject = item.event.subject
        previous = await conn.fetchrow(
            "SELECT status, retained_basis FROM handled_commands WHERE command_id = $1", command.command_id
        )
        action = self.actions.get(str(command.action)) if str(command.system) == self.system else None
        if previous is not None:
            if str(command.action) == "export" and action is not None and previous["status"] != "failed":
                again = await action(tx, subject, command)
                if again.export is not None and again.status != "not_found":
                    again = _sized(again)
                await self._ack(tx, subject, command, Outcome(
                    again.status, detail="already handled; exported again", export=again.export))
            else:
                await self._ack(tx, subject, command, Outcome(
                    previous["status"], detail="already handled", retained_basis=previous["retained_basis"]))
            return
        if str(command.system) != self.system:
            outcome = Outcome("failed", detail=f"command for {command.system} arrived at {self.system}")
        elif action is None:
            outcome = Outcome("failed", detail=f"{self.system} does not support {command.action}")
        else:
            outcome = await action(tx, subject, command)
            if outcome.export is not None and outcome.status != "not_found":
                outcome = _sized(outcome)
        await conn.execute(
            "INSERT INTO handled_commands (command_id, action, status, retained_basis) VALUES ($1, $2, $3, $4)",
            command.command_id, str(command.action), outcome.status, outcome.retained_basis,
        )
        await tx.audit.record(
            f"command_{command.action}", subject=subject, ref=str(command.command_id),
            detail={"system": self.system, "status": outcome.status,
                    "request_id": str(command.request_id) if command.request_id else None},
        )
        await self._ack(tx, subject, command, outcome)
        for step in outcome.after_ack:
            await step(tx)

    async def _ack(self, tx: UnitOfWork, subject: str, command: Any, outcome: Outcome) -> None:
        # Nothing held, nothing exported: a not_found answer carries no export (and so makes no data key).
        export = outcome.export if outcome.status != "not_found" else None
        acks = ack_events(command.command_id, self.system, outcome.status, detail=outcome.detail,
                          retained_basis=outcome.retained_basis, export=export)
        # An export carries PII: seal it with the subject's key. Plain acks carry none.
        try:
            for ack in acks:
                await tx.outbox.add(PRIVACY_ACKS, ack, subject=subject, seal=export is not None)
        except SubjectErased:  # erased here since: there is no key to seal with, and nothing left to export
            (erased,) = ack_events(command.command_id, self.system, "not_found",
                                   detail="the subject's data was erased here")
            await tx.outbox.add(PRIVACY_ACKS, erased, subject=subject, seal=False)


def _sized(outcome: Outcome) -> Outcome:
    """The outcome as it can be sent: an export over the contract's 64 MiB per system is not sent at all
    but answered `failed` with the reason, so the case goes to an operator rather than wait."""
    assert outcome.export is not None
    size = len(export_chunks.export_text(outcome.export).encode("utf-8"))
    if size <= MAX_EXPORT_TOTAL_BYTES:
        return outcome
    log.warning("export of %d bytes is over the limit of %d", size, MAX_EXPORT_TOTAL_BYTES)
    return Outcome("failed", detail=f"the export is {size} bytes; the limit is {MAX_EXPORT_TOTAL_BYTES} bytes per "
                                    "system", after_ack=outcome.after_ack)
