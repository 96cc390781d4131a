"""Consent HTTP API: current consents, purpose decisions, and the unsubscribe link target."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from faust.web import Request, Response

from privacy_runtime import metrics
from privacy_runtime.tokens import InvalidToken
from privacy_runtime.web import ApiView, HttpError, route
from schemas.enums import ConsentChannel, Purpose
from schemas.events import ConsentChanged
from schemas.topics import CONSENT_CHANGED
from services.consent import rules, store
from services.consent.app import app, decision_cache, runtime, settings, unsubscribe_tokens
from services.consent.decision_cache import SubjectView

SUBJECT_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNSUBSCRIBE_NAMESPACE = uuid.UUID("0b9b7e0e-6d2c-4f57-8d0e-9a3d3f3c2a11")
CURRENT_POLICY_VERSION = "2021-10-30"


def _subject(value: str | None) -> str:
    if not value:
        raise HttpError(400, "query parameter 'subject' is required")
    if not SUBJECT_RE.match(value):
        raise HttpError(400, "subject must match ^[A-Za-z0-9._:-]{1,128}$")
    return value


def _purpose(value: str | None) -> str:
    if not value:
        raise HttpError(400, "query parameter 'purpose' is required")
    if value not in rules.PURPOSES:
        raise HttpError(400, f"unknown purpose {value[:64]!r}; known: {', '.join(rules.PURPOSES)}")
    return value


def _record_json(record: rules.ConsentRecord) -> dict[str, Any]:
    return {"purpose": record.purpose, "granted": record.granted, "channel": record.channel,
            "policy_version": record.policy_version, "effective_at": record.effective_at.isoformat()}


@route(app, runtime, "/v1/subjects/{subject_id}/consents", "subject_consents")
class SubjectConsents(ApiView):
    async def get(self, request: Request, subject_id: str) -> Response:
        subject = _subject(subject_id)
        async with runtime.pool.acquire() as conn:
            profile = await store.profile(conn, subject)
            if profile is None:
                raise HttpError(404, f"unknown subject {subject}")
            current = {r.purpose: r for r in await store.states_of(conn, subject)}
            history = await store.history_of(conn, subject)
            registrations = await store.registrations_of(conn, subject)
        return self.json({
            "subject": subject,
            "jurisdiction": profile.country,
            "restricted": profile.restricted,
            "objections": sorted(profile.objections),
            "under_18_at_registration": profile.minor,
            "purposes": [
                {"purpose": p, **rules.decide(p, profile, current.get(p)).as_dict(),
                 "consent": _record_json(current[p]) if p in current else None}
                for p in rules.PURPOSES
            ],
            "history": [{**_record_json(r), "jurisdiction": j, "recorded_at": at.isoformat()}
                        for r, j, at in history],
            "registrations": [r.as_dict() for r in registrations],
        })


@route(app, runtime, "/v1/decisions", "decisions")
class Decisions(ApiView):
    async def get(self, request: Request) -> Response:
        query = request.query  # type: ignore[attr-defined]
        subject = _subject(query.get("subject"))
        purpose = _purpose(query.get("purpose"))
        system = query.get("system")
        system_purposes = None
        if system is not None:
            entry = runtime.data_map.get(system)
            if entry is None:
                known = ", ".join(runtime.data_map.system_ids())
                raise HttpError(400, f"unknown system {system[:64]!r}; known: {known}")
            system_purposes = entry.purposes
        view = await _subject_view(subject)
        if view.profile is None:
            raise HttpError(404, f"unknown subject {subject}")
        decision = rules.decide(purpose, view.profile, view.states.get(purpose), system=system,
                                system_purposes=system_purposes)
        metrics.decision_counter(purpose, decision.allowed).inc()
        return self.json({"subject": subject, "purpose": purpose, "system": system, **decision.as_dict()})


async def _subject_view(subject: str) -> SubjectView:
    """From memory when the cache has it (see decision_cache.py for how fresh that is), else from SQL."""
    view = decision_cache.get(subject)
    if view is not None:
        metrics.DECISION_FROM_MEMORY.inc()
        return view
    metrics.DECISION_FROM_DATABASE.inc()
    started = decision_cache.begin_read()  # before the read: a change notified meanwhile wins
    async with runtime.pool.acquire() as conn:
        profile, states = await store.subject_view(conn, subject)
    view = SubjectView(profile, states)
    decision_cache.store(subject, view, started)
    return view


PAGES = {
    "sv": ("Du har avregistrerats", "Vi har noterat att du inte längre samtycker till {purpose} hos ISOPARTNER AB.",
           "Frågor? Kontakta {contact}."),
    "en": ("You are unsubscribed", "We have recorded that you no longer consent to {purpose} by ISOPARTNER AB.",
           "Questions? Contact {contact}."),
}
#: What a person reads for a purpose id (the same words as the notifier's emails).
PURPOSE_NAMES = {
    "sv": {"analytics": "användningsanalys", "marketing_email": "marknadsföring via e-post",
           "third_party_marketing": "marknadsföring från tredje part", "partner_sharing": "delning med partner",
           "group_sharing": "delning inom IPCOM-koncernen", "profiling": "profilering",
           "personalization": "anpassat innehåll", "service_improvement": "förbättring av tjänsterna"},
    "en": {"analytics": "usage analytics", "marketing_email": "marketing by email",
           "third_party_marketing": "marketing by third parties", "partner_sharing": "sharing with partners",
           "group_sharing": "sharing within the IPCOM group", "profiling": "profiling",
           "personalization": "tailoring content", "service_improvement": "improving the services"},
}
INVALID = {
    "sv": ("Länken är ogiltig", "Länken kunde inte användas. Kontakta {contact} så hjälper vi dig."),
    "en": ("This link is not valid", "The link could not be used. Contact {contact} and we will help."),
}


def _language(request: Request) -> str:
    lang = request.query.get("lang") or ""  # type: ignore[attr-defined]
    if lang in PAGES:
        return lang
    accept = request.headers.get("Accept-Language", "")
    return "en" if accept.lower().startswith("en") else "sv"


def _page(lang: str, title: str, body: str) -> str:
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width"></head><body><h1>{html.escape(title)}</h1>'
            f"<p>{html.escape(body)}</p></body></html>")


@route(app, runtime, "/v1/unsubscribe/{token}", "unsubscribe")
class Unsubscribe(ApiView):
    """The footer link (GET) and the RFC 8058 one-click target (POST); both withdraw consent."""

    async def get(self, request: Request, token: str) -> Response:
        return await self._unsubscribe(request, token)

    async def post(self, request: Request, token: str) -> Response:
        return await self._unsubscribe(request, token)

    async def _unsubscribe(self, request: Request, token: str) -> Response:
        lang = _language(request)
        contact = settings.privacy_contact_email
        try:
            claims = unsubscribe_tokens.verify(token)
            subject, purpose = str(claims["s"]), str(claims["p"])
            if not SUBJECT_RE.match(subject) or purpose not in rules.PURPOSES:
                raise InvalidToken("link is not valid")
        except (InvalidToken, KeyError):
            title, body = INVALID[lang]
            return self.html(_page(lang, title, body.format(contact=contact)), status=400)
        await withdraw_from_footer(subject, purpose, token)
        title, body, footer = PAGES[lang]
        name = PURPOSE_NAMES[lang].get(purpose, purpose.replace("_", " "))
        return self.html(_page(lang, title, body.format(purpose=name) + " " + footer.format(contact=contact)))


async def withdraw_from_footer(subject: str, purpose: str, token: str) -> None:
    """Publish the withdrawal; a repeated click while nothing changed publishes the same event id."""
    async with runtime.transaction() as conn:
        _, current = await store.profile_and_state(conn, subject, purpose)
        basis = current.event_id if current is not None else "none"
        event_id = str(uuid.uuid5(UNSUBSCRIBE_NAMESPACE, f"{token}:{basis}"))
        await runtime.outbox.add(
            conn, CONSENT_CHANGED,
            ConsentChanged(purpose=Purpose(purpose), granted=False, channel=ConsentChannel.EMAIL_FOOTER,
                           policy_version=CURRENT_POLICY_VERSION),
            subject=subject, event_id=event_id, seal=False,
            time=rules.withdrawal_time(datetime.now(UTC), current),
        )
        await runtime.audit.record(conn, "unsubscribe_clicked", subject=subject, ref=event_id,
                                   detail={"purpose": purpose})
