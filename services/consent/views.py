"""Consent HTTP API: current consents, purpose decisions, and the unsubscribe link's page."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privacy_runtime import metrics
from privacy_runtime.pages.linkpages import LinkPages, PageView, register_stylesheet
from privacy_runtime.tokens import InvalidToken
from privacy_runtime.web import ApiView, HttpError, Request, Response, Routes
from schemas.enums import ConsentChannel, Purpose
from schemas.events import ConsentChanged
from schemas.topics import CONSENT_CHANGED
from services.consent import rules, store
from services.consent.decision_cache import SubjectView
from services.consent.page_texts import UNSUBSCRIBE_MESSAGES

if TYPE_CHECKING:
    from services.consent.app import ConsentService
    from services.consent.settings import ConsentSettings

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


class ConsentApi(ApiView):
    service: ConsentService


class SubjectConsents(ConsentApi):
    async def get(self, request: Request, subject_id: str) -> Response:
        subject = _subject(subject_id)
        async with self.runtime.pool.acquire() as conn:
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


class Decisions(ConsentApi):
    async def get(self, request: Request) -> Response:
        query = request.query
        subject = _subject(query.get("subject"))
        purpose = _purpose(query.get("purpose"))
        system = query.get("system")
        system_purposes = None
        if system is not None:
            entry = self.runtime.data_map.get(system)
            if entry is None:
                known = ", ".join(self.runtime.data_map.system_ids())
                raise HttpError(400, f"unknown system {system[:64]!r}; known: {known}")
            system_purposes = entry.purposes
        view = await _subject_view(self.service, subject)
        if view.profile is None:
            raise HttpError(404, f"unknown subject {subject}")
        decision = rules.decide(purpose, view.profile, view.states.get(purpose), system=system,
                                system_purposes=system_purposes)
        metrics.decision_counter(purpose, decision.allowed).inc()
        return self.json({"subject": subject, "purpose": purpose, "system": system, **decision.as_dict()})


async def _subject_view(service: ConsentService, subject: str) -> SubjectView:
    """From memory when the cache has it (see decision_cache.py for how fresh that is), else from SQL."""
    decision_cache = service.decision_cache
    view = decision_cache.get(subject)
    if view is not None:
        metrics.DECISION_FROM_MEMORY.inc()
        return view
    metrics.DECISION_FROM_DATABASE.inc()
    started = decision_cache.begin_read()  # before the read: a change notified meanwhile wins
    async with service.runtime.pool.acquire() as conn:
        profile, states = await store.subject_view(conn, subject)
    view = SubjectView(profile, states)
    decision_cache.store(subject, view, started)
    return view


def unsubscribe_pages(settings: ConsentSettings) -> LinkPages:
    return LinkPages(
        Path(__file__).with_name("templates"),
        UNSUBSCRIBE_MESSAGES,
        contact_email=settings.privacy_contact_email,
        public_url=settings.public_base_url,
        privacy_center_url=settings.privacy_center_url,
    )


class Unsubscribe(PageView):
    """The footer link and the RFC 8058 one-click target. GET (and HEAD) only ask: a link scanner that
    fetches every URL in a message must change nothing. POST (the page's button, or a mail client's
    `List-Unsubscribe=One-Click`) withdraws, once: a repeated POST writes nothing more."""

    service: ConsentService

    async def get(self, request: Request, token: str) -> Response:
        claims = _claims(self.service, token)
        if claims is None:
            return self._invalid(request)
        subject, purpose, lang = claims
        lang = self.pages.language(request, lang)
        async with self.runtime.pool.acquire() as conn:
            _, current = await store.profile_and_state(conn, subject, purpose)
        state = "already" if current is not None and not current.granted else "ask"
        return self._answer(lang, state, purpose)

    async def post(self, request: Request, token: str) -> Response:
        claims = _claims(self.service, token)
        if claims is None:
            return self._invalid(request)
        subject, purpose, lang = claims
        await withdraw_from_footer(self.service, subject, purpose, token)
        return self._answer(self.pages.language(request, lang), "done", purpose)

    def _answer(self, lang: str, state: str, purpose: str) -> Response:
        key = "unsubscribe.title" if state == "ask" else "unsubscribe.done.title"
        body = self.pages.render("unsubscribe.html.j2", lang, state=state, purpose=purpose,
                                 heading=self.pages.text(lang, key))
        return self.page(body)

    def _invalid(self, request: Request) -> Response:
        lang = self.pages.language(request)
        body = self.pages.render("unsubscribe.html.j2", lang, state="invalid", purpose="",
                                 heading=self.pages.text(lang, "unsubscribe.invalid.title"))
        return self.page(body, status=400)


def _claims(service: ConsentService, token: str) -> tuple[str, str, str | None] | None:
    """(subject, purpose, language of the email) from a valid token, else None."""
    try:
        claims = service.unsubscribe_tokens.verify(token)
        subject, purpose = str(claims["s"]), str(claims["p"])
    except (InvalidToken, KeyError):
        return None
    if not SUBJECT_RE.match(subject) or purpose not in rules.PURPOSES:
        return None
    lang = claims.get("l")
    return subject, purpose, lang if isinstance(lang, str) else None


async def withdraw_from_footer(service: ConsentService, subject: str, purpose: str, token: str) -> bool:
    """Publish the withdrawal, once. Nothing is written when the purpose is already withdrawn, nor for
    a repeated or concurrent click before the ledger has applied the first (the same event id, claimed
    once); a click after the person granted again withdraws again (a new basis, a new event id).
    Returns whether a withdrawal was published."""
    # Clicks on one subject's links one at a time (the lock is taken with the BEGIN).
    async with service.runtime.transaction(locking=[subject]) as tx:
        _, current = await store.profile_and_state(tx.conn, subject, purpose)
        if current is not None and not current.granted:
            return False
        basis = current.event_id if current is not None else "none"
        event_id = str(uuid.uuid5(UNSUBSCRIBE_NAMESPACE, f"{token}:{basis}"))
        if not await store.claim_footer_withdrawal(tx.conn, event_id):
            return False
        await tx.outbox.add(
            CONSENT_CHANGED,
            ConsentChanged(purpose=Purpose(purpose), granted=False, channel=ConsentChannel.EMAIL_FOOTER,
                           policy_version=CURRENT_POLICY_VERSION),
            subject=subject, event_id=event_id, seal=False,
            time=rules.withdrawal_time(datetime.now(UTC), current),
        )
        await tx.audit.record("unsubscribe_clicked", subject=subject, ref=event_id, detail={"purpose": purpose})
        return True


def add_routes(routes: Routes, service: ConsentService) -> None:
    """The service's endpoints; each view answers from `service` (its runtime, settings, use cases)."""
    for path, name, view in (
        ("/v1/subjects/{subject_id}/consents", "subject_consents", SubjectConsents),
        ("/v1/decisions", "decisions", Decisions),
    ):
        routes.add(path, name, view, runtime=service.runtime, service=service)
    routes.add("/v1/unsubscribe/{token}", "unsubscribe", Unsubscribe, runtime=service.runtime, service=service,
               pages=unsubscribe_pages(service.settings))
    register_stylesheet(routes, service.runtime, "/v1/unsubscribe")
