"""The wire form of commands and their answers: one encoder for `privacy-commands.<system>`, one
builder of the answers a service sends on `privacy-acks` (`ack_events`), and one decoder of those
answers into what the tracker needs (`AckIn.from_event`).

A command is encoded the same way when it is issued, issued in a batch, or re-sent: only the event's
`id` and `time` differ between a command and its re-send (a system that deduplicates by event id still
sees the retry; one that deduplicates by `command_id` answers it once).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from privacy_runtime import export_chunks
from privacy_runtime.outbox import OutboxMessage
from schemas.enums import AckStatus
from schemas.envelope import dump_checked_event
from schemas.events import PrivacyAck, PrivacyCommand
from schemas.topics import command_topic


@dataclass(frozen=True)
class Command:
    """One command as the `commands` table holds it (the fields in plain text)."""

    command_id: uuid.UUID
    subject: str
    system: str
    action: str
    purpose: str | None
    request_id: uuid.UUID | None
    respond_by: datetime
    #: Rectify's corrected fields: personal data, so the event is sealed with the subject's key.
    fields: dict[str, str] | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], fields: dict[str, str] | None) -> Command:
        """A row of `commands`, with its fields opened by the caller (they are stored sealed)."""
        return cls(_uuid(row["command_id"]), row["subject"], row["system"], row["action"], row["purpose"],
                   _uuid(row["request_id"]) if row["request_id"] is not None else None, row["respond_by"], fields)


def _uuid(value: uuid.UUID) -> uuid.UUID:
    # asyncpg's UUID subclass, which the encoder's JSON writer does not take, as the standard one.
    return value if type(value) is uuid.UUID else uuid.UUID(bytes=value.bytes)


class CommandEncoder:
    """Encodes commands as events, each kind checked against the contract model once.

    Validating every command costs several times its encoding, and a burst of opt-outs is thousands of
    commands of a handful of kinds; a command with fields (rectify) is checked every time, as the
    fields are its own."""

    def __init__(self) -> None:
        #: (system, action, purpose, has request_id) of field-less commands checked already.
        self._checked: set[tuple[str, str, str | None, bool]] = set()

    def encode(self, command: Command, *, source: str, event_id: str | None = None,
               time: datetime | None = None) -> OutboxMessage:
        # The model's fields in its order, as JSON-ready values (see `dump_checked_event`).
        data = {"command_id": command.command_id, "system": command.system, "action": command.action,
                "purpose": command.purpose, "request_id": command.request_id, "fields": command.fields,
                "respond_by": command.respond_by}
        shape = (command.system, command.action, command.purpose, command.request_id is not None)
        if command.fields is not None or shape not in self._checked:
            PrivacyCommand.model_validate(data)
            if command.fields is None:
                self._checked.add(shape)
        topic = command_topic(command.system)
        value = dump_checked_event(topic, data, source=source, subject=command.subject,
                                   id=event_id or str(uuid.uuid4()), time=time or datetime.now(UTC))
        return OutboxMessage(topic, command.subject.encode(), value,
                             command.subject if command.fields is not None else None)


@dataclass(frozen=True)
class AckIn:
    """An answer from `privacy-acks`, as far as the tracker cares."""

    command_id: uuid.UUID
    system: str
    status: AckStatus
    detail: str | None = None

    @classmethod
    def from_event(cls, data: PrivacyAck) -> AckIn:
        return cls(data.command_id, data.system, data.status, data.detail)


def ack_events(command_id: uuid.UUID, system: str, status: str, *, detail: str | None = None,
               retained_basis: str | None = None, export: dict[str, Any] | None = None) -> list[PrivacyAck]:
    """A system's answer to a command as it goes on `privacy-acks`: one event, or, for an export too
    large for one message, its parts (`export_chunks`), the detail with the first."""
    text = export_chunks.export_text(export) if export is not None else None
    if text is None or not export_chunks.needs_parts(text):
        return [PrivacyAck.model_validate(dict(command_id=command_id, system=system, status=status,
                                               retained_basis=retained_basis, export=export, detail=detail))]
    return [PrivacyAck.model_validate(dict(
        command_id=command_id, system=system, status=status, detail=detail if part.part == 1 else None,
        part=part.part, parts=part.parts, export_chunk=part.chunk, export_sha256=part.sha256,
    )) for part in export_chunks.split(text)]
