"""An erasure reaches the privacy center: what a person wrote here is shredded and deleted.

The privacy center is not a downstream system (the contract's system ids are fixed) and reads no
topic, so it learns of an erasure from the dsar service, which runs every erasure as a case and, in
the transaction that completes it, shreds its own key of the subject and leaves a tombstone. Every
`ERASURE_CHECK_SECONDS` the privacy center asks dsar which of the subjects it holds a key for are
erased (`POST /v1/internal/subjects/erased`), and for each it deletes their forms (with the notes),
sessions and sign-in links and shreds its own key of them (a tombstone stays), so the notes are
unreadable in backups too (the shred horizon of docs/operations.md). The person's page does the same
at once when dsar lists a completed erasure of theirs, so a note is never shown after it.

Sealing the notes with another service's key instead would tie this schema to dsar's key table; an
internal call from dsar would need dsar to know and retry this app. Asking keeps both where they are.
"""

from __future__ import annotations

import logging

from privacy_runtime.pages.runtime import PageRuntime
from services.privacy_center import store
from services.privacy_center.clients import Services

log = logging.getLogger(__name__)

#: Subjects read from the key table per page (each page is one question to dsar).
PAGE = 200


async def forget(runtime: PageRuntime, subject: str) -> None:
    """Delete what is held of an erased subject and shred their key here (idempotent)."""
    async with runtime.transaction() as tx:
        removed = await store.forget_subject(tx.conn, subject)
        had_key = await tx.keys.shred_subject(subject)
        if removed or had_key:
            await tx.audit.record("subject_shredded", subject=subject,
                                       detail={"system": "privacy_center", "rows": removed})


async def shred_erased(runtime: PageRuntime, services: Services) -> int:
    """One pass over every subject holding a key here; the number of erased subjects forgotten.

    Raises `clients.Unavailable` when dsar does not answer (the next pass tries again)."""
    after = ""
    forgotten = 0
    while True:
        async with runtime.pool.acquire() as conn:
            subjects = await runtime.keyring.subjects_with_keys(conn, after, PAGE)
        if not subjects:
            return forgotten
        for subject in sorted(await services.erased_among(subjects)):
            await forget(runtime, subject)
            forgotten += 1
        after = subjects[-1]
