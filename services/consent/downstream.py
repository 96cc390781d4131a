"""The consent service as a downstream system: its answers to `privacy-commands.consent`."""

from __future__ import annotations

from typing import Any

from privacy_runtime.inbox import Action, Outcome
from privacy_runtime.unit_of_work import UnitOfWork
from schemas.fields import ISO_COUNTRIES
from services.consent import rules, store
from services.consent.ledger import Ledger
from services.consent.settings import ConsentSettings


def consent_actions(settings: ConsentSettings, ledger: Ledger) -> dict[str, Action]:
    policy_url = settings.policy_url

    async def suppress(tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        # From dsar only for an upheld objection to legitimate-interest processing (one per such purpose).
        found = await ledger.uphold_objection(tx, subject, str(command.request_id or command.command_id))
        return Outcome("done" if found else "not_found",
                       detail="objection to legitimate-interest processing recorded" if found else None)

    async def erase(tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        conn = tx.conn
        removed = await store.erase_subject(conn, subject, tx.keys.subject_digest(subject))

        async def shred(after: UnitOfWork) -> None:
            await after.keys.shred_subject(subject)

        return Outcome("done", detail=f"removed {removed} ledger entries; opt-outs kept as keyed hashes",
                       after_ack=[shred])

    async def restrict(tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        conn = tx.conn
        found = await store.set_restriction(conn, subject, True, "requested")
        return Outcome("done" if found else "not_found")

    async def lift_restriction(tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        conn = tx.conn
        found = await store.set_restriction(conn, subject, False, None)
        return Outcome("done" if found else "not_found")

    async def rectify(tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        fields = command.fields or {}
        if "country" not in fields:
            return Outcome("done", detail="no field held by the consent service")
        country = str(fields["country"] or "").strip().upper() or None  # empty: unknown, treated as strict
        if country is not None and country not in ISO_COUNTRIES:
            # The country decides which purposes need opt-in: a guess could loosen them. Say so instead.
            return Outcome("failed", detail="country must be an ISO 3166-1 alpha-2 code (such as SE)")
        found = await ledger.correct_country(tx, subject, country)
        return Outcome("done" if found else "not_found")

    async def export(tx: UnitOfWork, subject: str, command: Any) -> Outcome:
        conn = tx.conn
        profile = await store.profile(conn, subject)
        if profile is None:
            return Outcome("not_found", export={"system": "consent", "records": []})
        current = await store.states_of(conn, subject)
        history = await store.history_of(conn, subject)
        registrations = await store.registrations_of(conn, subject)
        contact = settings.privacy_contact_email
        return Outcome("done", export={
            "system": "consent",
            "profile": {"country": profile.country, "restricted": profile.restricted,
                        "objections": sorted(profile.objections), "under_18_at_registration": profile.minor},
            "registrations": [r.as_dict() for r in registrations],  # the source of the data
            "current_consents": [
                {"purpose": r.purpose, "granted": r.granted, "channel": r.channel,
                 "policy_version": r.policy_version, "effective_at": r.effective_at.isoformat()}
                for r in current
            ],
            "consent_history": [
                {"purpose": r.purpose, "granted": r.granted, "channel": r.channel,
                 "policy_version": r.policy_version, "effective_at": r.effective_at.isoformat(),
                 "recorded_at": recorded.isoformat()}
                for r, _, recorded in history
            ],
            "consent_receipts": [
                rules.consent_receipt(subject=subject, record=r, country=jurisdiction, policy_url=policy_url,
                                      contact_email=contact)
                for r, jurisdiction, _ in history
            ],
        })

    return {"erase": erase, "restrict": restrict, "lift_restriction": lift_restriction,
            "rectify": rectify, "export": export, "suppress": suppress}
