"""The privacy center's pages: the handlers read the form and the services, ask `domain` what it
means, and change things only by writing events to the outbox (or, for a code, calling dsar's verify).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web

from privacy_runtime import summary
from privacy_runtime.crypto import SubjectErased
from privacy_runtime.datamap import DataMap
from privacy_runtime.notice_secrets import NoticeSecrets
from privacy_runtime.pages.app import (
    PageError,
    form_of,
    lang_of,
    render,
    see_other,
    session_of,
    text,
)
from privacy_runtime.pages.ratelimit import SharedRateLimiter
from privacy_runtime.pages.runtime import PageRuntime
from privacy_runtime.tokens import MANAGE_MAX_AGE_SECONDS, InvalidToken, TokenSigner
from schemas.enums import NotificationCategory
from schemas.events import NotificationRequested
from schemas.topics import NOTIFICATION_REQUESTED
from services.privacy_center import domain, erasure, store
from services.privacy_center.clients import Services, Unavailable
from services.privacy_center.settings import PrivacyCenterSettings

log = logging.getLogger(__name__)

SUBJECT_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
CODE_RE = re.compile(r"^[0-9]{6}$")
HOUR = 3600.0


@dataclass
class Center:
    settings: PrivacyCenterSettings
    runtime: PageRuntime
    services: Services
    manage_tokens: TokenSigner
    notice_secrets: NoticeSecrets
    email_per_address: SharedRateLimiter
    email_per_client: SharedRateLimiter
    code_per_client: SharedRateLimiter
    data_map: DataMap


CENTER: web.AppKey[Center] = web.AppKey("privacy_center", Center)


def center_of(request: web.Request) -> Center:
    return request.app[CENTER]


def _now() -> datetime:
    return datetime.now(UTC)


def _client(request: web.Request) -> str:
    center = center_of(request)
    return domain.client_of(request.remote, request.headers.get("X-Forwarded-For"),
                            center.settings.trust_forwarded_for)


def _sid_hash(sid: str) -> str:
    return hashlib.sha256(b"privacy-center-session:" + sid.encode()).hexdigest()


async def signed_in(request: web.Request) -> str | None:
    """The signed-in subject: the cookie's session must be open in the database and not idle too long."""
    session = session_of(request)
    if not session.get("in"):
        return None
    center = center_of(request)
    idle = timedelta(minutes=center.settings.session_idle_minutes)
    async with center.runtime.pool.acquire() as conn:
        return await store.touch_session(conn, _sid_hash(session.sid), _now(), idle)


async def _require_subject(request: web.Request) -> str:
    subject = await signed_in(request)
    if subject is None:
        session_of(request).pop("in")
        raise PageError(401, "session.ended")
    return subject


async def _open_session(request: web.Request, subject: str, via: str) -> None:
    session = session_of(request)
    session.renew()  # a new id at sign-in: an id planted before it is worth nothing
    session.data.clear()
    session["in"] = True
    runtime = center_of(request).runtime
    async with runtime.transaction() as tx:
        await store.open_session(tx.conn, _sid_hash(session.sid), subject, via, _now())
        await tx.audit.record("privacy_center_signed_in", subject=subject, detail={"via": via})


def _unavailable(exc: Unavailable) -> PageError:
    log.warning("a service did not answer: %s", exc)
    return PageError(503)


# --- start page and the sign-in email ----------------------------------------------------------


async def start(request: web.Request) -> web.Response:
    return render(request, "start.html.j2", signed_in=await signed_in(request) is not None)


async def ask_for_link(request: web.Request) -> web.StreamResponse:
    """The email form: the same answer, after about the same time, whether the address is known or not."""
    center = center_of(request)
    started = time.monotonic()
    email = domain.normalise_email(form_of(request).get("email"))
    if email is None:
        return render(request, "start.html.j2", status=400, error=text(request, "start.email.invalid"),
                      signed_in=False)
    if not await center.email_per_client.allow(domain.rate_key("client", _client(request))) or \
            not await center.email_per_address.allow(domain.rate_key("email", email)):
        raise PageError(429)
    try:
        subjects = [s for s in await center.services.subjects_with_email(email) if SUBJECT_RE.match(s)]
    except Unavailable as exc:
        raise _unavailable(exc) from None
    if subjects:
        await _send_links(center, subjects, lang_of(request))
    # Whatever happened, answer no sooner than the floor: a known address must not be slower.
    await asyncio.sleep(max(0.0, center.settings.email_answer_floor_seconds - (time.monotonic() - started)))
    raise see_other("/sent")


async def _send_links(center: Center, subjects: list[str], lang: str) -> None:
    minutes = center.settings.sign_in_link_minutes
    base = center.settings.privacy_center_url.rstrip("/")
    async with center.runtime.transaction() as tx:
        for subject in subjects:
            token = domain.new_token()
            hashed = domain.token_hash(token)
            await store.add_sign_in_link(tx.conn, hashed, subject, _now() + timedelta(minutes=minutes))
            notification_id = domain.sign_in_notification_id(hashed)
            params = center.notice_secrets.seal(notification_id, {"link": f"{base}/s/{token}?lang={lang}",
                                                                  "expires_minutes": minutes})
            await tx.outbox.add(
                NOTIFICATION_REQUESTED,
                NotificationRequested(notification_id=notification_id, template="privacy_center_link",
                                      category=NotificationCategory.TRANSACTIONAL, locale=lang,  # type: ignore[arg-type]
                                      params=params),
                subject=subject, event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, notification_id)), seal=False)


async def sent(request: web.Request) -> web.Response:
    return render(request, "sent.html.j2")


# --- links that open a session -----------------------------------------------------------------


async def sign_in_page(request: web.Request) -> web.Response:
    """What the emailed link shows: a button. A GET changes nothing, so a mail scanner that fetches the
    link does not use it up."""
    token = request.match_info["token"]
    await _check_link(request, token)
    return render(request, "signin.html.j2", action=f"/s/{token}")


async def _check_link(request: web.Request, token: str) -> None:
    if not domain.is_token(token):
        raise PageError(404, "link.unknown")
    async with center_of(request).runtime.pool.acquire() as conn:
        state = await store.sign_in_link_state(conn, domain.token_hash(token), _now())
    if state != "valid":
        raise PageError(404 if state == "unknown" else 410, f"link.{state}")


async def sign_in(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    if not domain.is_token(token):
        raise PageError(404, "link.unknown")
    async with center_of(request).runtime.pool.acquire() as conn:
        subject = await store.use_sign_in_link(conn, domain.token_hash(token), _now())
    if subject is None:
        await _check_link(request, token)  # says why: used, expired or unknown
        raise PageError(410, "link.used")
    await _open_session(request, subject, "sign_in_link")
    raise see_other("/me")


async def manage(request: web.Request) -> web.StreamResponse:
    """The "manage your privacy" link in every email's footer: signed, names the subject, 30 days."""
    try:
        claims = center_of(request).manage_tokens.verify(request.match_info["token"], MANAGE_MAX_AGE_SECONDS)
    except InvalidToken as exc:
        raise PageError(410 if exc.expired else 404, "link.expired" if exc.expired else "link.unknown") from None
    subject = claims.get("s")
    if not isinstance(subject, str) or not SUBJECT_RE.match(subject):
        raise PageError(404, "link.unknown")
    await _open_session(request, subject, "manage_link")
    raise see_other("/me")


# --- the person's page --------------------------------------------------------------------------


async def me(request: web.Request) -> web.Response:
    subject = await _require_subject(request)
    center = center_of(request)
    try:
        consents, requests = await asyncio.gather(center.services.consents(subject), center.services.requests(subject))
    except Unavailable as exc:
        raise _unavailable(exc) from None
    notes: dict[str, str] = {}
    if domain.erasure_completed(requests):
        # Erased: forget here now rather than at the next check (services/privacy_center/erasure.py).
        await erasure.forget(center.runtime, subject)
    else:
        async with center.runtime.pool.acquire() as conn:
            for request_id, sealed in (await store.notes_of(conn, subject)).items():
                note = await center.runtime.keyring.decrypt(conn, subject, f"note:{request_id}", sealed)
                if note:
                    notes[request_id] = note
    return render(
        request, "me.html.j2", signed_in=True,
        purposes=domain.purpose_views(consents or {}), requests=domain.request_views(requests), notes=notes,
        submissions={name: str(uuid.uuid4()) for name in ("consents", *domain.RIGHTS)},
        formats=domain.FORMATS, grounds=domain.GROUNDS, circumstances=domain.CIRCUMSTANCES,
        processings=domain.PROCESSINGS, rectifiable=domain.RECTIFIABLE,
        systems=summary.summary(center.data_map, lang_of(request)),
    )


async def change_consents(request: web.Request) -> web.StreamResponse:
    subject = await _require_subject(request)
    center = center_of(request)
    form = form_of(request)
    try:
        submission = domain.submission_id(form.get("submission"))
        consents = await center.services.consents(subject)
        current = domain.current_choices(domain.purpose_views(consents or {}))
        outgoing = domain.consent_changes(form.get, form.names(), current, set(current), submission,
                                          center.settings.policy_version)
    except domain.FormProblem as problem:
        raise PageError(400, problem.key) from None
    except Unavailable as exc:
        raise _unavailable(exc) from None
    async with center.runtime.transaction() as tx:
        if await store.claim_submission(tx.conn, submission, subject, "consents", None, None):
            for event in outgoing:
                await tx.outbox.add(event.topic, event.data, subject=subject,
                                                event_id=event.event_id, seal=False, time=_now())
            if outgoing:
                await tx.audit.record(
                    "privacy_center_consents_changed", subject=subject, ref=str(submission),
                    detail={e.data.purpose: e.data.granted for e in outgoing  # type: ignore[attr-defined]
                            })
    session_of(request)["done"] = "consents" if outgoing else "nothing"
    raise see_other("/done")


async def ask_for_right(request: web.Request) -> web.StreamResponse:
    subject = await _require_subject(request)
    center = center_of(request)
    form = form_of(request)
    try:
        submission = domain.submission_id(form.get("submission"))
        asked = domain.right_request(form.get, submission)
    except domain.FormProblem as problem:
        raise PageError(400, problem.key) from None
    async with center.runtime.transaction() as tx:
        sealed = None
        if asked.note:
            try:
                sealed = await tx.keys.encrypt(subject, f"note:{asked.request_id}", asked.note)
            except SubjectErased:  # erased already (a footer link outlives it): nothing of theirs is kept
                sealed = None
        if await store.claim_submission(tx.conn, submission, subject, asked.right, asked.request_id, sealed):
            # Sealed in the outbox: a correction names the person's new data.
            await tx.outbox.add(asked.event.topic, asked.event.data, subject=subject,
                                            event_id=asked.event.event_id)
            await tx.audit.record("privacy_center_request", subject=subject,
                                              ref=asked.request_id, detail={"right": asked.right})
    session_of(request)["done"] = f"right:{asked.right}"
    raise see_other("/done")


async def done(request: web.Request) -> web.StreamResponse:
    what = session_of(request).pop("done")
    if not isinstance(what, str):
        raise see_other("/me")
    if what.startswith("right:") and what[6:] in domain.RIGHTS:
        message = text(request, "done.request", right=text(request, f"right.{what[6:]}").lower())
    else:
        message = text(request, "done.consents" if what == "consents" else "done.nothing")
    return render(request, "done.html.j2", message=message, signed_in=True)


# --- the verification code ------------------------------------------------------------------------


def _request_id(request: web.Request) -> str:
    try:
        return str(uuid.UUID(request.match_info["request_id"]))
    except ValueError:
        raise PageError(404, "verify.unusable") from None


async def verify_page(request: web.Request) -> web.Response:
    request_id = _request_id(request)
    return render(request, "verify.html.j2", action=f"/verify/{request_id}", error=None)


async def verify(request: web.Request) -> web.Response:
    request_id = _request_id(request)
    center = center_of(request)
    if not await center.code_per_client.allow(domain.rate_key("client", _client(request))):
        raise PageError(429)
    code = (form_of(request).get("code") or "").strip()

    def again(status: int, key: str, **values: object) -> web.Response:
        return render(request, "verify.html.j2", status=status, action=f"/verify/{request_id}",
                      error=text(request, key, **values))

    if not CODE_RE.match(code):
        return again(400, "verify.bad_format")
    try:
        status, body = await center.services.verify(request_id, code)
    except Unavailable as exc:
        raise _unavailable(exc) from None
    if status == 200:
        return render(request, "verified.html.j2")
    if status == 403:
        return again(400, "verify.wrong", left=int(body.get("attempts_left") or 0))
    if status == 410:
        return again(410, "verify.expired")
    if status == 429:
        return again(429, "verify.locked")
    return again(409, "verify.unusable")


# --- sign-out ----------------------------------------------------------------------------------------


async def sign_out(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    async with center_of(request).runtime.pool.acquire() as conn:
        await store.end_session(conn, _sid_hash(session.sid), _now())
    session.end()
    raise see_other("/signed-out")


async def signed_out(request: web.Request) -> web.Response:
    return render(request, "signedout.html.j2")


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/", start, name="start")
    router.add_post("/", ask_for_link, name="ask_for_link")
    router.add_get("/sent", sent, name="sent")
    router.add_get("/s/{token}", sign_in_page, name="sign_in_page")
    router.add_post("/s/{token}", sign_in, name="sign_in")
    router.add_get("/manage/{token}", manage, name="manage")
    router.add_get("/me", me, name="me")
    router.add_post("/me/consents", change_consents, name="change_consents")
    router.add_post("/me/requests", ask_for_right, name="ask_for_right")
    router.add_get("/done", done, name="done")
    router.add_get("/verify/{request_id}", verify_page, name="verify_page")
    router.add_post("/verify/{request_id}", verify, name="verify")
    router.add_post("/sign-out", sign_out, name="sign_out")
    router.add_get("/signed-out", signed_out, name="signed_out")
