"""The notifier as a downstream system: its answers to `privacy-commands.notifier`."""

from __future__ import annotations

from typing import Any

from privacy_runtime.inbox import Action, Outcome
from privacy_runtime.unit_of_work import UnitOfWork
from services.notifier import rules, store, templates
from services.notifier.final_notices import FINAL_TEMPLATES, Contact, FinalNoticeKeys
from services.notifier.intake import params_field
from services.notifier.settings import NotifierSettings

#: Fields of a rectify command the directory holds.
RECTIFIABLE = ("email", "name", "locale", "country")


class NotifierActions:
    """The notifier's answer to each command action, each in the command's unit of work."""

    def __init__(self, settings: NotifierSettings):
        self.settings = settings
        self.final_keys = FinalNoticeKeys(settings.master_key(), settings.previous_master_key())


    async def erase(self, tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        """Delete the directory entry, cancel what is queued, and (after the ack) shred the key.

        For an erasure request (command with request_id) the contact is first set aside as a final
        notice, so the erasure confirmation can still reach the subject (see final_notices).
        """
        conn = tx.conn
        entry = await store.recipient(conn, subject, lock=True)  # waits for an intake queueing for them
        kept = 0
        if entry is not None and command.request_id is not None:
            kept = await self._set_final_notice_aside(tx, subject, entry, command.request_id)
        found = await store.delete_recipient(conn, subject)
        cancelled = await store.cancel_emails_of(conn, subject, "erased")

        async def shred(after: UnitOfWork) -> None:
            await after.keys.shred_subject(subject)

        detail = f"directory entry {'removed' if found else 'not held'}; {cancelled} queued emails cancelled"
        if kept:
            detail += f"; {kept} erasure confirmation kept until sent"
        return Outcome("done" if found or cancelled else "not_found", detail=detail, after_ack=[shred])

    async def _set_final_notice_aside(self, tx: UnitOfWork, subject: str, entry: Any, request_id: Any) -> int:
        # Locked, so a sender finishing one of these emails right now waits for this decision.
        conn = tx.conn
        finals = await store.lock_emails_of(conn, subject, sorted(FINAL_TEMPLATES))
        if any(row["status"] == "sent" for row in finals):
            return 0  # the confirmation already went out: keep nothing
        email = await tx.keys.decrypt(subject, "email", entry["email_sealed"])
        if email is None:
            return 0
        name = await tx.keys.decrypt(subject, "name", entry["name_sealed"])
        sealed = self.final_keys.seal_contact(subject, Contact(email=email, name=name, locale=entry["locale"]))
        await store.save_final_notice(
            conn,
            subject=subject,
            request_id=request_id,
            wrapped_key=sealed.wrapped_key,
            master_key_id=sealed.master_key_id,
            contact_sealed=sealed.contact_sealed,
            keep_seconds=self.settings.final_notice_retention_seconds,
        )
        waiting = [r for r in finals if r["status"] in ("queued", "sending") and not r["final_notice"]]
        for row in waiting:
            nid = row["notification_id"]
            plain = await tx.keys.decrypt(subject, params_field(nid), row["params_sealed"])
            resealed = self.final_keys.seal_params(sealed.key, nid, plain) if plain is not None else None
            await store.make_final(conn, nid, resealed)
        return len(waiting)

    async def restrict(self, tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        conn = tx.conn
        found = await store.set_restricted(conn, subject, True)
        return Outcome(
            "done" if found else "not_found",
            detail="only notices about the subject's own rights requests are sent" if found else None,
        )

    async def lift_restriction(self, tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        conn = tx.conn
        found = await store.set_restricted(conn, subject, False)
        return Outcome("done" if found else "not_found")

    async def rectify(self, tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        conn = tx.conn
        fields = {k: v for k, v in (command.fields or {}).items() if k in RECTIFIABLE}
        if not fields:
            return Outcome("done", detail="no field held by the notifier")
        if await store.recipient(conn, subject) is None:
            return Outcome("not_found")
        await tx.keys.ensure_keys({subject})
        changes: dict[str, Any] = {}
        if "email" in fields:
            if not isinstance(fields["email"], str) or not rules.is_email_address(fields["email"]):
                # A line break here would put headers of the sender's choosing into our emails.
                return Outcome("failed", detail="email must be one email address (no spaces or line breaks)")
            changes["email_sealed"] = tx.keys.encrypt_cached(subject, "email", fields["email"])
            changes["email_hash"] = tx.keys.keyed_hash("email", fields["email"])
        if "name" in fields:
            changes["name_sealed"] = tx.keys.encrypt_cached(subject, "name", fields["name"] or None)
        if "locale" in fields:
            changes["locale"] = templates.locale_of(fields["locale"])
        if "country" in fields:
            changes["country"] = (fields["country"] or "").upper() or None
        await store.rectify_recipient(conn, subject, changes)
        return Outcome("done", detail=f"rectified {', '.join(sorted(fields))}")

    async def export(self, tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        conn = tx.conn
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
                    "email": await tx.keys.decrypt(subject, "email", entry["email_sealed"]),
                    "name": await tx.keys.decrypt(subject, "name", entry["name_sealed"]),
                    "locale": entry["locale"],
                    "country": entry["country"],
                    "restricted": entry["restricted"],
                    "registered_at": entry["registered_at"].isoformat(),
                },
                "emails": history,
            },
        )


def notifier_actions(settings: NotifierSettings) -> dict[str, Action]:
    actions = NotifierActions(settings)
    return {
        "erase": actions.erase,
        "restrict": actions.restrict,
        "lift_restriction": actions.lift_restriction,
        "rectify": actions.rectify,
        "export": actions.export,
    }
