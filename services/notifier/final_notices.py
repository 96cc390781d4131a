"""The last email after an erasure: keep the address just long enough to confirm the erasure.

The dsar service asks for the `erasure_completed` email and then tells the notifier to erase; the two
arrive on different topics, in either order. When the notifier erases a directory entry it therefore
keeps the contact (email, name, locale) under a key of its own, wrapped by the master key like a
subject key, and re-seals any final notice already queued with it. A final notice that arrives after
the erasure is addressed from there. Once that email is sent (or failed), or after
FINAL_NOTICE_RETENTION_SECONDS, the row and its key are deleted: crypto-shredding as for any subject.
Nothing but the final notice templates may use it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import asyncpg

from privacy_runtime.crypto import DecryptionFailed, master_key_id, open_sealed, seal
from services.notifier import store

log = logging.getLogger(__name__)

#: The wrapping key id of a final notice found damaged during a rotation: no key opens it.
UNOPENABLE = "unopenable"

#: Templates that may still be sent to a subject whose directory entry was erased.
FINAL_TEMPLATES: frozenset[str] = frozenset({"erasure_completed"})


@dataclass(frozen=True)
class Contact:
    email: str
    name: str | None
    locale: str


@dataclass(frozen=True)
class Sealed:
    wrapped_key: bytes
    master_key_id: str
    contact_sealed: bytes
    key: bytes


class FinalNoticeKeys:
    def __init__(self, master_key: bytes, previous_master_key: bytes | None = None):
        self._master = master_key
        self._master_id = master_key_id(master_key)
        self._masters = {self._master_id: master_key}
        if previous_master_key is not None:
            self._masters[master_key_id(previous_master_key)] = previous_master_key

    def seal_contact(self, subject: str, contact: Contact) -> Sealed:
        key = os.urandom(32)
        wrapped = seal(self._master, key, b"final-notice-key:" + subject.encode())
        plain = json.dumps({"email": contact.email, "name": contact.name, "locale": contact.locale}).encode()
        return Sealed(wrapped, self._master_id, seal(key, plain, b"final-notice:" + subject.encode()), key)

    def unwrap(self, subject: str, wrapped_key: bytes, wrapped_by: str) -> bytes:
        master = self._masters.get(wrapped_by)
        if master is None:
            raise DecryptionFailed(f"final notice key wrapped by unknown master key {wrapped_by}")
        return open_sealed(master, wrapped_key, b"final-notice-key:" + subject.encode())

    @property
    def master_id(self) -> str:
        return self._master_id

    @property
    def other_master_ids(self) -> list[str]:
        """The master keys besides the current one that this process can still unwrap with."""
        return [m for m in self._masters if m != self._master_id]

    def rewrap(self, subject: str, wrapped_key: bytes, wrapped_by: str) -> bytes:
        """The same key wrapped by the current master key (master key rotation)."""
        key = self.unwrap(subject, wrapped_key, wrapped_by)
        return seal(self._master, key, b"final-notice-key:" + subject.encode())

    @staticmethod
    def open_contact(subject: str, key: bytes, contact_sealed: bytes) -> Contact:
        data = json.loads(open_sealed(key, contact_sealed, b"final-notice:" + subject.encode()))
        return Contact(email=data["email"], name=data["name"], locale=data["locale"])

    @staticmethod
    def seal_params(key: bytes, notification_id: str, params: str) -> bytes:
        return seal(key, params.encode(), b"final-notice-params:" + notification_id.encode())

    @staticmethod
    def open_params(key: bytes, notification_id: str, sealed: bytes) -> str:
        return open_sealed(key, sealed, b"final-notice-params:" + notification_id.encode()).decode()


class FinalNoticeRotation:
    """The final notices' keys in a master key rotation (see `ServiceRuntime.rotate_with_master_key`)."""

    def __init__(self, keys: FinalNoticeKeys):
        self.keys = keys

    async def rewrap(self, conn: asyncpg.Connection) -> int:
        rows = await store.final_notices_under_masters(conn, self.keys.other_master_ids)
        moved = 0
        for row in rows:
            try:
                wrapped = self.keys.rewrap(row["subject"], row["wrapped_key"], row["master_key_id"])
            except DecryptionFailed:
                # Damaged: marked, so the rotation does not wait for it; its email fails alone when sent.
                log.warning("a final notice does not open under master key %s; marked unopenable",
                            row["master_key_id"])
                await store.rewrap_final_notice(conn, row["subject"], row["wrapped_key"], UNOPENABLE)
                continue
            await store.rewrap_final_notice(conn, row["subject"], wrapped, self.keys.master_id)
            moved += 1
        return moved

    async def left(self, conn: asyncpg.Connection) -> int:
        """Still under the previous master key. One under a key this process does not have, or marked
        unopenable, can never move (its email fails when its turn comes) and does not hold it up."""
        return await store.count_final_notices_under_masters(conn, self.keys.other_master_ids)
