"""The notifier as a downstream system: its answers to `privacy-commands.notifier`."""

from __future__ import annotations

from typing import Any

import asyncpg

from privacy_runtime.inbox import Action, Outcome
from services.notifier import rules, store, templates
from services.notifier.final_notices import FINAL_TEMPLATES, Contact, FinalNoticeKeys
from services.notifier.intake import params_field

#: Fields of a rectify command the directory holds.
RECTIFIABLE = ("email", "name", "locale", "country")


def notifier_actions(runtime: Any) -> dict[str, Action]:
    keyring = runtime.keyring
    final_keys = FinalNoticeKeys(runtime.settings.master_key(), runtime.settings.previous_master_key())

    async def erase(conn: asyncpg.Connection, subject: str, command: Any) -> Outcome:
        """Delete the directory entry, cancel what is queued, and (after the ack) shred the key.

        For an erasure request (command with request_id) the contact is first set aside as a final
        notice, so the erasure confirmation can still reach the subject (see final_notices).
        """
        entry = await store.recipient(conn, subject, lock=True)  # waits for an intake queueing for them
        kept = 0
        if entry is not None and command.request_id is not None:
            kept = await _set_final_notice_aside(conn, subject, entry, command.request_id)
        found = await store.delete_recipient(conn, subject)
        cancelled = await store.cancel_emails_of(conn, subject, "erased")

        async def shred(c: asyncpg.Connection) -> None:
            await keyring.shred_subject(c, subject)

        detail = f"directory entry {'removed' if found else 'not held'}; {cancelled} queued emails cancelled"
        if kept:
            detail += f"; {kept} erasure confirmation kept until sent"
        return Outcome("done" if found or cancelled else "not_found", detail=detail, after_ack=[shred])

    async def _set_final_notice_aside(conn: asyncpg.Connection, subject: str, entry: Any, request_id: Any) -> int:
        # Locked, so a sender finishing one of these emails right now waits for this decision.
        finals = await store.lock_emails_of(conn, subject, sorted(FINAL_TEMPLATES))
        if any(row["status"] == "sent" for row in finals):
            return 0  # the confirmation already went out: keep nothing
        email = await keyring.decrypt(conn, subject, "email", entry["email_sealed"])
        if email is None:
            return 0
        name = await keyring.decrypt(conn, subject, "name", entry["name_sealed"])
        sealed = final_keys.seal_contact(subject, Contact(email=email, name=name, locale=entry["locale"]))
        await store.save_final_notice(
            conn,
            subject=subject,
            request_id=request_id,
            wrapped_key=sealed.wrapped_key,
            master_key_id=sealed.master_key_id,
            contact_sealed=sealed.contact_sealed,
            keep_seconds=runtime.settings.final_notice_retention_seconds,
        )
        waiting = [r for r in finals if r["status"] in ("queued", "sending") and not r["final_notice"]]
        for row in waiting:
            nid = row["notification_id"]
            plain = await keyring.decrypt(conn, subject, params_field(nid), row["params_sealed"])
            resealed = final_keys.seal_params(sealed.key, nid, plain) if plain is not None else None
            await store.make_final(conn, nid, resealed)
        return len(waiting)

    async def restrict(conn: asyncpg.Connection, subject: str, command: Any) -> Outcome:
        found = await store.set_restricted(conn, subject, True)
        return Outcome(
            "done" if found else "not_found",
            detail="only notices about the subject's own rights requests are sent" if found else None,
        )

    async def lift_restriction(conn: asyncpg.Connection, subject: str, command: Any) -> Outcome:
        found = await store.set_restricted(conn, subject, False)
        return Outcome("done" if found else "not_found")

    async def rectify(conn: asyncpg.Connection, subject: str, command: Any) -> Outcome:
        fields = {k: v for k, v in (command.fields or {}).items() if k in RECTIFIABLE}
        if not fields:
            return Outcome("done", detail="no field held by the notifier")
        if await store.recipient(conn, subject) is None:
            return Outcome("not_found")
        await keyring.ensure_keys(conn, {subject})
        changes: dict[str, Any] = {}
        if "email" in fields:
            if not isinstance(fields["email"], str) or not rules.is_email_address(fields["email"]):
                # A line break here would put headers of the sender's choosing into our emails.
                return Outcome("failed", detail="email must be one email address (no spaces or line breaks)")
            changes["email_sealed"] = keyring.encrypt_cached(subject, "email", fields["email"])
            changes["email_hash"] = keyring.keyed_hash("email", fields["email"])
        if "name" in fields:
            changes["name_sealed"] = keyring.encrypt_cached(subject, "name", fields["name"] or None)
        if "locale" in fields:
            changes["locale"] = templates.locale_of(fields["locale"])
        if "country" in fields:
            changes["country"] = (fields["country"] or "").upper() or None
        await store.rectify_recipient(conn, subject, changes)
        return Outcome("done", detail=f"rectified {', '.join(sorted(fields))}")

    async def export(conn: asyncpg.Connection, subject: str, command: Any) -> Outcome:
        entry = await store.recipient(conn, subject)
        emails = await store.emails_of(conn, subject)
        history = [
            {
                "template": e["template"],
                "category": e["category"],
                "status": e["status"],
                "queued_at": e["created_at"].isoformat(),
                "sent_at": e["sent_at"].isoformat() if e["sent_at"] else None,
            }
            for e in emails
        ]
        if entry is None:
            return Outcome("not_found", export={"system": "notifier", "directory": None, "emails": history})
        return Outcome(
            "done",
            export={
                "system": "notifier",
                "directory": {
                    "email": await keyring.decrypt(conn, subject, "email", entry["email_sealed"]),
                    "name": await keyring.decrypt(conn, subject, "name", entry["name_sealed"]),
                    "locale": entry["locale"],
                    "country": entry["country"],
                    "restricted": entry["restricted"],
                    "registered_at": entry["registered_at"].isoformat(),
                },
                "emails": history,
            },
        )

    return {
        "erase": erase,
        "restrict": restrict,
        "lift_restriction": lift_restriction,
        "rectify": rectify,
        "export": export,
    }
