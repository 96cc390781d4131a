"""Free text of a case that may name a person, sealed at rest with the subject's key.

An operator's reason (a rejection, an extension) is whatever the operator typed: it may name the
subject, a relative, a case number at the police. It is kept in the stored case only sealed with the
subject's key, so erasure shreds it with everything else (DESIGN.md, "Storage and security"). The
case value in memory holds the plain text (the domain, the status event and the email need it); the
workflow seals it on the way to `store` and opens it on the way back.
"""

from __future__ import annotations

import base64
from dataclasses import replace

import asyncpg

from privacy_runtime.crypto import KeyRing, SubjectErased
from privacy_runtime.unit_of_work import UnitOfWork
from services.dsar.cases import REJECTED, Case

#: Marks a sealed value in the stored case (the JSON keeps strings).
SEALED = "sealed:v1:"
#: What a sealed reason reads as once the subject's key is gone (or when it could not be sealed).
SHREDDED = "(not readable: the subject's data was erased)"
FIELDS = ("reason", "extension_reason")


def operator_words(case: Case) -> set[str]:
    """The case's free text an operator wrote: an extension's reason, a rejection's reason. The services'
    own reasons (a cancellation, a review, an unverified close) name no one and stay as they are."""
    words = {case.extension_reason} if case.extension_reason else set()
    if case.status == REJECTED and case.reason:
        words.add(case.reason)
    return {w for w in words if not w.startswith(SEALED)}


def _context(case: Case, name: str) -> str:
    return f"case:{case.request_id}:{name}"


class CaseTexts:
    def __init__(self, keyring: KeyRing):
        self.keyring = keyring

    async def sealed(self, tx: UnitOfWork, case: Case) -> Case:
        """The case as it is stored: its free text sealed (a subject erased already keeps none)."""
        changes: dict[str, str] = {}
        words = operator_words(case)
        for name in FIELDS:
            value = getattr(case, name)
            if not value or value not in words or value == SHREDDED:
                continue
            try:
                blob = await tx.keys.encrypt(case.subject, _context(case, name), value)
            except SubjectErased:
                changes[name] = SHREDDED
                continue
            assert blob is not None
            changes[name] = SEALED + base64.b64encode(blob).decode()
        return replace(case, **changes) if changes else case  # type: ignore[arg-type]

    async def opened(self, conn: asyncpg.Connection, case: Case | None) -> Case | None:
        if case is None:
            return None
        changes: dict[str, str] = {}
        for name in FIELDS:
            value = getattr(case, name)
            if value and value.startswith(SEALED):
                plain = await self.keyring.decrypt(conn, case.subject, _context(case, name),
                                                   base64.b64decode(value[len(SEALED):]))
                changes[name] = plain if plain is not None else SHREDDED
        return replace(case, **changes) if changes else case  # type: ignore[arg-type]

    async def opened_all(self, conn: asyncpg.Connection, found: list[Case]) -> list[Case]:
        return [c for c in [await self.opened(conn, case) for case in found] if c is not None]
