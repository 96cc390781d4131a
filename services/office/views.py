"""The office's pages. Reads go to the services' operator APIs; actions go to their operator endpoints
(named for the signed-in operator, so the service audits them under that name) or, for intake, out as
contract events through the office's outbox with its own audit entry. Nothing here writes another
service's tables."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any

import asyncpg
from aiohttp import web

from privacy_runtime import vocabulary
from privacy_runtime.audit import verification_report
from privacy_runtime.datamap import DataMap
from privacy_runtime.pages.app import PageError, form_of, lang_of, render, see_other, session_of, text
from privacy_runtime.pages.forms import Form
from privacy_runtime.pages.ratelimit import RateLimiter
from services.office import charts, intake, present
from services.office.client import ServiceError, Services
from services.office.deadletters import NotFound
from services.office.operators import ADMIN, authenticate
from services.office.runtime import OfficeRuntime
from services.office.texts import word

log = logging.getLogger(__name__)

SERVICES: web.AppKey[Services] = web.AppKey("office_services")
RUNTIME: web.AppKey[OfficeRuntime] = web.AppKey("office_runtime")
OPERATORS: web.AppKey[dict[str, str]] = web.AppKey("office_operators")
DATA_MAP: web.AppKey[DataMap] = web.AppKey("office_data_map")
SIGN_IN_LIMIT: web.AppKey[RateLimiter] = web.AppKey("office_sign_in_limit")
ADMIN_TOKEN: web.AppKey[str] = web.AppKey("office_admin_token")
DLQ_PER_TOPIC: web.AppKey[int] = web.AppKey("office_dlq_per_topic")

#: Pages anyone may open (the sign-in form); everything else needs a signed-in operator.
OPEN_PATHS = ("/sign-in", "/metrics", "/healthz", "/readyz", "/static/")
NAV = (("/", "nav.overview"), ("/cases", "nav.cases"), ("/intake", "nav.intake"), ("/systems", "nav.systems"),
       ("/dead-letters", "nav.dead_letters"), ("/audit", "nav.audit"))
ISSUING_SERVICES = ("dsar", "consent")

routes = web.RouteTableDef()


# --- sign-in, session, page helpers ---------------------------------------------------------------


def operator_of(request: web.Request) -> str | None:
    name = session_of(request).get("operator")
    if not isinstance(name, str):
        return None
    # A name taken out of OFFICE_OPERATORS signs its sessions out at once (admin stays while ADMIN_TOKEN is set).
    if name == ADMIN:
        return name if request.app[ADMIN_TOKEN] else None
    return name if name in request.app[OPERATORS] else None


@web.middleware
async def require_operator(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith(OPEN_PATHS):
        return await handler(request)
    if operator_of(request) is None:
        if request.method in ("GET", "HEAD"):
            raise see_other("/sign-in")
        raise PageError(403)
    return await handler(request)


def flash(request: web.Request, text: str, kind: str = "ok") -> None:
    session_of(request)["flash"] = [kind, text[:500]]


#: Values a template may leave out (the templates render with StrictUndefined).
OPTIONAL: dict[str, Any] = {"error": None, "request_error": None, "opt_out_error": None, "candidates": [],
                            "opt_out_values": None}


def page(request: web.Request, template: str, *, status: int = 200, switch_to: str | None = None,
         **values: Any) -> web.Response:
    """An office page in the operator's language: `w(kind, id)` gives the office's words for an id, the
    vocabulary's helpers (`system_name`, `purpose_name`, ...) and `localized` the shared ones.
    `switch_to`: where the language switch leads when the page answers a form."""
    session = session_of(request)
    message = session.pop("flash")
    lang = lang_of(request)
    return render(request, template, status=status, switch_to=switch_to, **{
        **OPTIONAL, "operator": operator_of(request), "nav": NAV, "current": request.path, "flash": message,
        "short": present.short_date, "w": partial(word, lang),
        "localized": partial(vocabulary.localized, lang=lang), "who": partial(present.who, lang=lang), **values})


def problem(request: web.Request, exc: BaseException) -> str:
    """What a page says of a service that failed: unreachable in the operator's words, or its own reason."""
    if isinstance(exc, ServiceError):
        name = word(lang_of(request), "service", exc.service)
        if exc.unreachable:
            return text(request, "problem.unreachable", service=name, kind=exc.unreachable)
        return text(request, "problem.refused", service=name, message=exc.message)
    return str(exc)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


async def _gather(*calls: Any) -> list[Any]:
    """Run reads side by side; a service that fails gives its ServiceError instead of failing the page."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, ServiceError | NotFound):
            raise result
    return list(results)


@routes.get("/sign-in")
async def sign_in_page(request: web.Request) -> web.Response:
    if operator_of(request):
        raise see_other("/")
    return page(request, "sign_in.html.j2")


@routes.post("/sign-in")
async def sign_in(request: web.Request) -> web.Response:
    client = request.remote or "?"
    if not request.app[SIGN_IN_LIMIT].allow(client, time.monotonic()):
        raise PageError(429)
    token = form_of(request).get("token") or ""
    operators: dict[str, str] = request.app[OPERATORS]
    name = authenticate(token, operators, request.app[ADMIN_TOKEN])
    if name is None:
        log.warning("office sign-in refused from %s", client)
        return page(request, "sign_in.html.j2", status=401, switch_to="/sign-in",
                    error=text(request, "sign_in.refused"))
    session = session_of(request)
    session.data.clear()
    session.renew()  # a session id planted before sign-in is worth nothing after it
    session["operator"] = name
    log.info("office sign-in: %s", name)
    raise see_other("/")


@routes.post("/sign-out")
async def sign_out(request: web.Request) -> web.Response:
    session_of(request).end()
    raise see_other("/sign-in")


# --- overview -----------------------------------------------------------------------------------------


@routes.get("/")
async def overview(request: web.Request) -> web.Response:
    svc = services(request)
    stats, dsar_debt, consent_debt, emails, dead = await _gather(
        svc.get("dsar", "/v1/admin/stats", {"weeks": 12}),
        svc.get("dsar", "/v1/admin/commands"),
        svc.get("consent", "/v1/admin/commands"),
        svc.get("notifier", "/v1/admin/emails"),
        request.app[RUNTIME].dead_letters.counts(),
    )
    now = datetime.now(UTC)
    lang = lang_of(request)
    problems = [problem(request, r) for r in (stats, dsar_debt, consent_debt, emails, dead) if isinstance(r, Exception)]
    weekly_chart = days_chart = ""
    weeks: list[dict[str, Any]] = []
    no_data = text(request, "chart.no_data")
    if isinstance(stats, dict):
        weeks = stats["weeks"]
        labels = [present.week_label(w["week"], lang) for w in weeks]
        weekly_chart = charts.grouped_bars(text(request, "overview.weekly.chart"), labels,
                                           [(text(request, "overview.weekly.received"), [w["received"] for w in weeks]),
                                            (text(request, "overview.weekly.completed"),
                                             [w["completed"] for w in weeks])], no_data)
        days_chart = charts.histogram(text(request, "overview.days.chart"), stats["days_to_complete"],
                                      text(request, "overview.days.series"), no_data)
    debt = present.merge_debt([d for d in (dsar_debt, consent_debt) if isinstance(d, dict)], now)
    return page(request, "overview.html.j2", stats=stats if isinstance(stats, dict) else None, weeks=weeks,
                weekly_chart=weekly_chart, days_chart=days_chart, debt=debt,
                emails=emails if isinstance(emails, dict) else None,
                dead={t: n for t, n in dead.items() if n} if isinstance(dead, dict) else None,
                problems=problems, week_label=partial(present.week_label, lang=lang))


# --- cases --------------------------------------------------------------------------------------------


@routes.get("/cases")
async def cases_page(request: web.Request) -> web.Response:
    filters = present.Filters.from_query(request.query)
    try:
        answer = await services(request).get("dsar", "/v1/admin/requests", filters.service_query())
    except ServiceError as exc:
        if exc.status >= 500:
            raise
        return page(request, "cases.html.j2", filters=filters, rows=[], total=0, pages=(1, False, False),
                    error=problem(request, exc), statuses=present.STATUSES, rights=present.RIGHTS,
                    grounds=present.REJECTION_KEYS)
    total = int(answer.get("total", answer["count"]))
    return page(request, "cases.html.j2", filters=filters, rows=answer["requests"], total=total,
                pages=present.pages(total, filters.page), error=None, statuses=present.STATUSES,
                rights=present.RIGHTS, grounds=present.REJECTION_KEYS)


def _request_ids(values: list[str]) -> list[str]:
    ids = []
    for value in values[:200]:
        try:
            ids.append(str(uuid.UUID(value)))
        except ValueError:
            raise PageError(400) from None
    return ids


async def _act(request: web.Request, request_id: str, action: str, body: dict[str, Any]) -> str | None:
    """One operator action on one case; None when done, else the service's reason for refusing."""
    operator = operator_of(request)
    try:
        await services(request).post("dsar", f"/v1/admin/requests/{request_id}/{action}", body, operator=operator)
    except ServiceError as exc:
        if exc.status >= 500:
            raise
        return exc.message
    return None


def _rejection(request: web.Request, form: Form, back: str) -> dict[str, Any]:
    """The body of a rejection: its reason, from the ground chosen and the words given; without one,
    back to the page with the error."""
    reason = present.rejection_reason(form.get("ground") or "", form.get("reason") or "")
    if reason is None:
        flash(request, text(request, "flash.reject_needs_reason"), "error")
        raise see_other(back)
    return {"reason": reason}


@routes.post("/cases/approve")
@routes.post("/cases/reject")
async def bulk(request: web.Request) -> web.Response:
    form = form_of(request)
    action = request.path.rsplit("/", 1)[1]
    ids = _request_ids(form.getall("request_id"))
    back = form.get("back") or "/cases"
    if not ids:
        flash(request, text(request, "flash.choose"), "error")
        raise see_other(back)
    body: dict[str, Any] = _rejection(request, form, back) if action == "reject" else {}
    refused = []
    for rid in ids:
        why = await _act(request, rid, action, body)
        if why is not None:
            refused.append(f"{rid[:8]}: {why}")
    done = len(ids) - len(refused)
    said = text(request, "flash.approved_n" if action == "approve" else "flash.rejected_n", done=done, total=len(ids))
    if refused:
        said += text(request, "flash.refused", why="; ".join(refused))
    flash(request, said, "error" if refused else "ok")
    raise see_other(back)


@routes.get(r"/cases/{request_id}")
async def case_page(request: web.Request) -> web.Response:
    rid = request.match_info["request_id"]
    try:
        uuid.UUID(rid)
    except ValueError:
        raise PageError(404) from None
    try:
        answer = await services(request).get("dsar", f"/v1/admin/requests/{rid}/timeline")
    except ServiceError as exc:
        if exc.status == 404:
            raise PageError(404) from None
        raise
    case = answer["case"]
    now = datetime.now(UTC)
    lang = lang_of(request)
    return page(request, "case.html.j2", case=case, timeline=present.timeline(answer["events"], lang),
                review=present.review_text(case, lang),
                commands=answer["commands"], actions=present.case_actions(case, now),
                waiting=present.waiting_systems(case), grounds=present.REJECTION_KEYS, now=now.isoformat())


@routes.post(r"/cases/{request_id}/{action:approve|reject|extend|lift|resend}")
async def case_action(request: web.Request) -> web.Response:
    rid = request.match_info["request_id"]
    action = request.match_info["action"]
    try:
        rid = str(uuid.UUID(rid))
    except ValueError:
        raise PageError(404) from None
    form = form_of(request)
    back = f"/cases/{rid}"
    body: dict[str, Any] = {}
    if action == "reject":
        body = _rejection(request, form, back)
    elif action == "extend":
        months = form.get("months")
        reason = (form.get("reason") or "").strip()
        if months not in ("1", "2") or not reason:
            flash(request, text(request, "flash.extend_needs"), "error")
            raise see_other(back)
        body = {"months": int(months), "reason": reason}
    elif action == "resend":
        body = {"system": form.get("system") or ""}
    why = await _act(request, rid, action, body)
    if why is not None:
        flash(request, text(request, "flash.not_done", why=why), "error")
    else:
        flash(request, text(request, f"flash.{action}",
                            name=vocabulary.word("system", body.get("system"), lang_of(request))))
    raise see_other(back)


# --- intake -------------------------------------------------------------------------------------------


def _intake_page(request: web.Request, status: int = 200, **values: Any) -> web.Response:
    # Answering a form (POST /intake/...): the language switch leads back to the intake page.
    return page(request, "intake.html.j2", status=status, switch_to="/intake", rights=intake.RIGHTS,
                grounds=intake.GROUNDS, circumstances=intake.CIRCUMSTANCES, processing=intake.PROCESSING,
                formats=intake.FORMATS, purposes=intake.OPT_OUT_PURPOSES, values=values.pop("values", {}), **values)


@routes.get("/intake")
async def intake_page(request: web.Request) -> web.Response:
    return _intake_page(request)


async def _subject_by_email(request: web.Request, email: str) -> str | list[str] | None:
    """The registered subject with this address (or the ambiguous list, or None)."""
    answer = await services(request).post("notifier", "/v1/admin/subjects/lookup", {"email": email})
    found: list[str] = answer["subjects"]
    if len(found) == 1:
        return found[0]
    return found or None


@routes.post("/intake/request")
async def intake_request(request: web.Request) -> web.Response:
    form = form_of(request)
    values = {k: form.get(k) or "" for k in ("email", "right", "requested_via", "ground", "circumstance",
                                             "processing", "format", "corrections", "subject")}
    try:
        parsed = intake.parse_request(values)
    except intake.IntakeError as exc:
        return _intake_page(request, 400, request_error=text(request, exc.key, **exc.values), values=values)
    subject = await _resolve_subject(request, values)
    if not isinstance(subject, str):
        return _intake_page(request, 400, request_error=subject[0], candidates=subject[1], values=values)
    request_id = uuid.uuid4()
    try:
        topic, event = intake.request_event(parsed, request_id)
    except intake.IntakeError as exc:
        return _intake_page(request, 400, request_error=text(request, exc.key, **exc.values), values=values)
    runtime = request.app[RUNTIME]
    async with runtime.transaction() as tx:
        # Unsealed: the office keeps no subject keys; the row leaves the outbox as soon as it is published.
        await tx.outbox.add(topic, event, subject=subject, seal=False)
        await tx.audit.record("intake_request", subject=subject, ref=str(request_id),
                                   actor=f"operator:{operator_of(request)}",
                                   detail={"right": parsed.right, "requested_via": parsed.via, "topic": topic})
    lang = lang_of(request)
    flash(request, text(request, "intake.recorded", right=vocabulary.word("right", parsed.right, lang),
                        via=word(lang, "via", parsed.via), request_id=request_id))
    raise see_other(f"/cases?q={request_id}")


async def _resolve_subject(request: web.Request, values: dict[str, str]) -> str | tuple[str, list[str]]:
    email = values["email"].strip()
    chosen = values["subject"].strip()
    if not email or "@" not in email:
        return (text(request, "intake.no_email"), [])
    found = await _subject_by_email(request, email)
    if found is None:
        return (text(request, "intake.unknown"), [])
    if isinstance(found, list):
        if chosen in found:
            return chosen
        return (text(request, "intake.several"), found)
    return found


@routes.post("/intake/opt-out")
async def intake_opt_out(request: web.Request) -> web.Response:
    form = form_of(request)
    values = {"email": form.get("email") or "", "subject": form.get("subject") or ""}
    try:
        events = intake.opt_out_events(form.getall("purpose"))
    except intake.IntakeError as exc:
        return _intake_page(request, 400, opt_out_error=text(request, exc.key, **exc.values), opt_out_values=values)
    subject = await _resolve_subject(request, {**values})
    if not isinstance(subject, str):
        return _intake_page(request, 400, opt_out_error=subject[0], candidates=subject[1], opt_out_values=values)
    runtime = request.app[RUNTIME]
    async with runtime.transaction() as tx:
        for topic, event in events:
            await tx.outbox.add(topic, event, subject=subject, seal=False)
        await tx.audit.record("intake_opt_out", subject=subject, ref=subject,
                                   actor=f"operator:{operator_of(request)}",
                                   detail={"purposes": [e.model_dump(mode="json")["purpose"] for _, e in events],
                                           "channel": "support"})
    flash(request, text(request, "intake.opt_out.recorded"))
    raise see_other("/intake")


# --- systems ------------------------------------------------------------------------------------------


@routes.get("/systems")
async def systems_page(request: web.Request) -> web.Response:
    svc = services(request)
    chosen = request.query.get("system", "")
    data_map = request.app[DATA_MAP]
    if chosen not in data_map.systems:
        chosen = ""
    answers = await _gather(*(svc.get(s, "/v1/admin/commands", {"system": chosen or None}) for s in ISSUING_SERVICES))
    now = datetime.now(UTC)
    debt = present.merge_debt([a for a in answers if isinstance(a, dict)], now)
    outstanding = sorted((row | {"service": a["service"]} for a in answers if isinstance(a, dict)
                          for row in a.get("outstanding", ())), key=lambda r: r["created_at"])
    return page(request, "systems.html.j2", data_map=data_map, debt=debt, chosen=chosen, outstanding=outstanding,
                problems=[problem(request, a) for a in answers if isinstance(a, Exception)])


@routes.post(r"/systems/{system}/resend")
async def system_resend(request: web.Request) -> web.Response:
    system = request.match_info["system"]
    if system not in request.app[DATA_MAP].systems:
        raise PageError(404)
    total = 0
    for service in ISSUING_SERVICES:
        answer = await services(request).post(service, "/v1/admin/commands/resend", {"system": system},
                                              operator=operator_of(request))
        total += int(answer["resent"])
    flash(request, text(request, "systems.resent", n=total, name=vocabulary.word("system", system, lang_of(request))))
    raise see_other(f"/systems?system={system}")


# --- dead letters ---------------------------------------------------------------------------------------


@routes.get("/dead-letters")
async def dead_letters_page(request: web.Request) -> web.Response:
    letters = await request.app[RUNTIME].dead_letters.newest(request.app[DLQ_PER_TOPIC])
    return page(request, "dead_letters.html.j2", letters={t: v for t, v in letters.items() if v})


@routes.post("/dead-letters/replay")
async def replay(request: web.Request) -> web.Response:
    form = form_of(request)
    topic = form.get("topic") or ""
    try:
        partition = int(form.get("partition") or "")
        offset = int(form.get("offset") or "")
    except ValueError:
        raise PageError(400) from None
    runtime = request.app[RUNTIME]
    try:
        # The audit entry commits only if the replay was published (a failure rolls it back).
        async with runtime.transaction() as tx:
            letter = await runtime.dead_letters.replay(topic, partition, offset)
            await tx.audit.record("dead_letter_replayed", ref=f"{topic}:{partition}:{offset}",
                                       actor=f"operator:{operator_of(request)}",
                                       detail={"topic": letter.original_topic, "error": letter.error[:200]})
    except NotFound as exc:
        flash(request, text(request, "dead.not_replayed", why=text(request, exc.key, **exc.values)), "error")
        raise see_other("/dead-letters") from None
    flash(request, text(request, "dead.replayed", where=f"{topic}[{partition}]@{offset}", topic=letter.original_topic))
    raise see_other("/dead-letters")


# --- audit ---------------------------------------------------------------------------------------------


@routes.post("/audit/verify")
async def audit_verify(request: web.Request) -> web.Response:
    """Walk every service's chain now (the page shows a verification up to a few minutes old)."""
    results = await _gather(*(services(request).get(n, "/v1/admin/audit/verify", {"fresh": "true"})
                              for n in ("consent", "dsar", "notifier")))
    failed = [problem(request, r) for r in results if isinstance(r, Exception)]
    flash(request, text(request, "audit.verified_now") if not failed
          else text(request, "audit.not_verified", why="; ".join(failed)), "error" if failed else "ok")
    raise see_other("/audit")


@routes.get("/audit")
async def audit_page(request: web.Request) -> web.Response:
    svc = services(request)
    runtime = request.app[RUNTIME]

    async def own() -> dict[str, Any]:
        try:
            async with runtime.pool.acquire() as conn:
                return await verification_report(conn, "office")
        except (OSError, AssertionError, asyncpg.PostgresError) as exc:
            raise ServiceError("office", 503, f"its database is not reachable ({type(exc).__name__})",
                               unreachable=type(exc).__name__) from None

    names = ("consent", "dsar", "notifier")
    results = await _gather(*(svc.get(n, "/v1/admin/audit/verify") for n in names), own())
    reports: list[dict[str, Any]] = []
    for name, result in zip((*names, "office"), results, strict=True):
        if isinstance(result, Exception):
            reports.append({"service": name, "unavailable": problem(request, result)})
        else:
            reports.append({"unavailable": None, "verified_at": None, **result})
    return page(request, "audit.html.j2", reports=reports)
