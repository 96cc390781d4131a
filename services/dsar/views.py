"""DSAR HTTP API: request status and identity verification for subjects, the export download page
and download, and the operator endpoints under /v1/admin/ (bearer token). Bad input is a 4xx JSON
answer (a page, for the person following an export link), never a 500.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import asyncpg
from pydantic import TypeAdapter, ValidationError

from privacy_runtime.commands import commands_of_request
from privacy_runtime.internal_auth import require_service
from privacy_runtime.pages.linkpages import LinkPages, PageView, register_stylesheet
from privacy_runtime.web import ApiView, HttpError, Request, Response, Routes
from schemas.enums import ExportFormat
from schemas.fields import Detail
from schemas.topics import ALL_SYSTEMS
from services.dsar import cases, store
from services.dsar.cases import Case, CaseError
from services.dsar.package_texts import EXPORT_PAGE_MESSAGES
from services.dsar.verification import CODE_PATTERN
from services.dsar.workflow import UnknownCase, utcnow

if TYPE_CHECKING:
    from services.dsar.app import DsarService
    from services.dsar.settings import DsarSettings
    from services.dsar.workflow import Workflow

T = TypeVar("T")
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
#: A search is a request id or a subject id (the envelope's subject pattern).
SEARCH_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
SUBJECT_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_REASON = 2000
MAX_LIST = 1000
DEFAULT_LIST = 200
LIMIT_PATTERN = re.compile(r"[1-9][0-9]{0,8}")
NUMBER_PATTERN = re.compile(r"0|[1-9][0-9]{0,8}")
#: A reason travels in `dsar-status` (and the subject's email) as a `Detail`: checked against that very
#: type here, so what the event would refuse is a 400 now rather than a 500 mid-transaction.
REASON_TEXT = TypeAdapter(Detail)


def _request_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise HttpError(400, "request_id must be a UUID") from None


def _int(value: str | None, default: int, low: int, high: int, name: str) -> int:
    """A query number: plain decimal digits only (as `limit`), within [low, high]."""
    if value is None:
        return default
    if not NUMBER_PATTERN.fullmatch(value):
        raise HttpError(400, f"{name} must be a whole number between {low} and {high}")
    number = int(value)
    if not low <= number <= high:
        raise HttpError(400, f"{name} must be between {low} and {high}")
    return number


def _detail(raw: Any) -> dict[str, Any]:
    value = json.loads(raw) if isinstance(raw, str) else raw
    return value if isinstance(value, dict) else {}


def _public(case: Case) -> dict[str, Any]:
    """What anyone holding the request id may see: no PII, no subject id."""
    return {
        "request_id": case.request_id,
        "right": case.right,
        "status": case.status,
        "received_at": case.received_at.isoformat(),
        "due_at": case.due_at.isoformat(),
        "extended": case.extended,
    }


def _operator(case: Case, now: datetime) -> dict[str, Any]:
    return {
        **_public(case),
        "subject": case.subject,
        "original_due_at": case.original_due_at.isoformat(),
        "overdue": cases.is_overdue(case, now),
        "identity_verified": case.identity_verified,
        "requested_via": case.requested_via,
        "ground": case.ground,
        "circumstance": case.circumstance,
        "processing": case.processing,
        "export_format": case.export_format,
        "corrected_fields": list(case.corrected_fields),
        "fields_not_held": list(case.fields_not_held),
        "extension_months": case.extension_months,
        "extension_reason": case.extension_reason,
        "manual_review": case.manual_review,
        "review_reason": case.review_reason,
        # The same reason as a code and its parameters (`services.dsar.reviews`), for words of one's own.
        "review_code": case.review_code,
        "review_params": dict(case.review_params),
        "reason": case.reason,
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
        "systems_told": case.told,
        "retained": case.retained,
        "steps": [
            {
                "system": s.system,
                "action": s.action,
                "purpose": s.purpose,
                "phase": s.phase,
                "attempt": s.attempt,
                "command_id": s.command_id,
                "outcome": s.outcome,
                "expect": s.expect,
                "retained_basis": s.retained_basis,
            }
            for s in case.steps
        ],
    }


def _reason(body: dict[str, Any], what: str) -> str:
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise HttpError(400, f"{what} needs a non-empty 'reason' (it is sent to the subject)")
    plain = len(reason) <= MAX_REASON and not any(ord(c) < 32 and c not in "\n\t" for c in reason)
    try:
        REASON_TEXT.validate_python(reason)
    except ValidationError:
        plain = False  # DEL, or a lone surrogate (not text at all)
    if not plain:
        raise HttpError(400, f"'reason' must be plain text of at most {MAX_REASON} characters "
                             "(no control characters)")
    return reason.strip()


async def _operate(workflow: Workflow, request_id: str, action: str,
                   decide: Callable[[Case, datetime], cases.Decision], actor: str) -> Case:
    return await _answered(request_id, workflow.operate(request_id, action, decide, actor))


async def _answered(request_id: str, operation: Awaitable[T]) -> T:
    """An operator action's case, or the HTTP error that says why it was refused."""
    try:
        return await operation
    except UnknownCase:
        raise HttpError(404, f"unknown request {request_id}") from None
    except CaseError as exc:
        raise HttpError(409, str(exc)) from None


class DsarApi(ApiView):
    service: DsarService

    async def opened_case(self, conn: asyncpg.Connection, rid: str) -> Case:
        """The case with its texts opened, for an operator; 404 when there is none."""
        case = await self.service.workflow.texts.opened(conn, await store.get_case(conn, rid))
        if case is None:
            raise HttpError(404, f"unknown request {rid}")
        return case


# --- the subject's side ---------------------------------------------------------------------------


class RequestStatus(DsarApi):
    async def get(self, request: Request, request_id: str) -> Response:
        rid = _request_id(request_id)
        async with self.runtime.pool.acquire() as conn:
            case = await store.get_case(conn, rid)
        if case is None:
            raise HttpError(404, f"unknown request {rid}")
        return self.json(_public(case))


class RequestVerify(DsarApi):
    async def post(self, request: Request, request_id: str) -> Response:
        rid = _request_id(request_id)
        body = await self.json_body(request)
        code = body.get("code")
        if not isinstance(code, str) or not CODE_PATTERN.match(code.strip()):
            raise HttpError(400, "'code' must be the 6-digit code from the email, as a string")
        result = await self.service.workflow.verify_code(rid, code.strip())
        # Errors carry {"error": ...} like every other 4xx, plus e.g. attempts_left.
        return self.json(result.body, status=result.status)


def export_pages(settings: DsarSettings) -> LinkPages:
    return LinkPages(
        Path(__file__).with_name("templates"),
        EXPORT_PAGE_MESSAGES,
        contact_email=settings.privacy_contact_email,
        public_url=settings.public_base_url,
        privacy_center_url=settings.privacy_center_url,
    )


#: A link that cannot be used: the JSON error (for programs) and the page's message key and status.
REFUSED = {
    "unknown": (404, "unknown download link"),
    "expired": (410, "this download link has expired; make a new request and a new copy will be prepared"),
    "used_up": (410, "this download link has been used the maximum number of times"),
    "gone": (410, "this package is no longer available"),
}
PAGE_TIME_ZONE = ZoneInfo("Europe/Stockholm")


def _size(octets: int, lang: str) -> str:
    """About how big the download is, as a person reads it (Swedish with a decimal comma)."""
    if octets < 1_000_000:
        text = f"{max(1, round(octets / 1000))} kB"
    else:
        text = f"{octets / 1_000_000:.1f} MB"
    return text.replace(".", ",") if lang == "sv" else text


class ExportDownload(PageView):
    """The emailed download link. GET (and HEAD) show a page that describes the package, its expiry and
    the downloads left, with a download button, and use up nothing (link scanners fetch every URL in
    a message); POST (the button) returns the package and counts one download."""

    service: DsarService

    async def get(self, request: Request, token: str) -> Response:
        lang = self.pages.language(request)
        workflow = self.service.workflow
        outcome, info = await workflow.describe_export(token) if TOKEN_PATTERN.match(token) else ("unknown", None)
        if info is None:
            return self._refused_page(lang, outcome)
        csv_too = info.right == cases.PORTABILITY or info.export_format == ExportFormat.CSV
        body = self.pages.render(
            "export.html.j2", lang, problem=None, right=info.right, request_id=info.request_id,
            size=_size(info.size, lang), downloads_left=info.downloads_left,
            formats=self.pages.text(lang, "export.formats.csv" if csv_too else "export.formats.json"),
            expires=info.expires_at.astimezone(PAGE_TIME_ZONE).strftime("%Y-%m-%d %H:%M %Z"),
        )
        return self.page(body)

    async def post(self, request: Request, token: str) -> Response:
        wants_page = "text/html" in request.headers.get("Accept", "")
        found = TOKEN_PATTERN.match(token) is not None
        outcome, row, content = await self.service.workflow.download(token) if found else ("unknown", None, None)
        if row is None or content is None:
            outcome = outcome if outcome in REFUSED else "gone"
            if wants_page:  # the page's button, in a browser
                return self._refused_page(self.pages.language(request), outcome)
            status, message = REFUSED[outcome]
            raise HttpError(status, message)
        return self.bytes(
            content,
            content_type=row.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{row.filename}"',
                "Cache-Control": "no-store",
                "X-Downloads-Left": str(row.downloads_left),
                "X-Content-Type-Options": "nosniff",
            },
        )

    def _refused_page(self, lang: str, outcome: str) -> Response:
        status, _ = REFUSED.get(outcome, REFUSED["gone"])
        body = self.pages.render("export.html.j2", lang, problem=outcome if outcome in REFUSED else "gone")
        return self.page(body, status=status)


# --- operators ------------------------------------------------------------------------------------


class AdminRequests(DsarApi):
    async def get(self, request: Request) -> Response:
        self.require_admin(request)
        query = request.query
        status = query.get("status") or None
        if status is not None and status not in cases.STATUSES:
            raise HttpError(400, f"unknown status {status[:40]!r}; known: {', '.join(cases.STATUSES)}")
        right = query.get("right") or None
        if right is not None and right not in cases.RIGHTS:
            raise HttpError(400, f"unknown right {right[:40]!r}; known: {', '.join(cases.RIGHTS)}")
        overdue_text = query.get("overdue") or ""
        if overdue_text not in ("", "true", "false"):
            raise HttpError(400, "overdue must be true or false")
        overdue = None if overdue_text == "" else overdue_text == "true"
        review_text = query.get("review") or ""
        if review_text not in ("", "true", "false"):
            raise HttpError(400, "review must be true or false")
        review = None if review_text == "" else review_text == "true"
        search = query.get("q") or None
        if search is not None and not SEARCH_PATTERN.fullmatch(search):
            raise HttpError(400, "q must be a request id or a subject id")
        limit_text = query.get("limit")
        # Plain decimal digits only: int() would also take "+5", " 5", "1_0" or other scripts' digits.
        if limit_text is not None and not LIMIT_PATTERN.fullmatch(limit_text):
            raise HttpError(400, f"limit must be a whole number between 1 and {MAX_LIST}")
        limit = int(limit_text) if limit_text is not None else DEFAULT_LIST
        if not 1 <= limit <= MAX_LIST:
            raise HttpError(400, f"limit must be between 1 and {MAX_LIST}")
        offset = _int(query.get("offset"), 0, 0, 10_000_000, "offset")
        now = utcnow()
        filters: dict[str, Any] = {"status": status, "right": right, "overdue": overdue, "now": now,
                                   "review": review, "search": search}
        async with self.runtime.pool.acquire() as conn:
            rows = await store.list_cases(conn, limit=limit, offset=offset, **filters)
            total = await store.count_cases(conn, **filters) if "total" in query else None
            found = await self.service.workflow.texts.opened_all(conn, [case for case, _ in rows])
        body: dict[str, Any] = {"requests": [_operator(case, now) for case in found], "count": len(found)}
        if total is not None:
            body["total"] = total
        return self.json(body)


class AdminRequest(DsarApi):
    async def get(self, request: Request, request_id: str) -> Response:
        self.require_admin(request)
        rid = _request_id(request_id)
        async with self.runtime.pool.acquire() as conn:
            case = await self.opened_case(conn, rid)
        return self.json(_operator(case, utcnow()))


class AdminApprove(DsarApi):
    async def post(self, request: Request, request_id: str) -> Response:
        actor = self.operator(request)
        rid = _request_id(request_id)
        data_map = self.runtime.data_map
        case = await _operate(self.service.workflow, rid, "approve", lambda c, now: cases.approve(c, data_map, now),
                              actor)
        return self.json(_operator(case, utcnow()))


class AdminReject(DsarApi):
    async def post(self, request: Request, request_id: str) -> Response:
        actor = self.operator(request)
        rid = _request_id(request_id)
        reason = _reason(await self.json_body(request), "a rejection")
        case = await _operate(self.service.workflow, rid, "reject", lambda c, now: cases.reject(c, reason, now), actor)
        return self.json(_operator(case, utcnow()))


class AdminExtend(DsarApi):
    async def post(self, request: Request, request_id: str) -> Response:
        actor = self.operator(request)
        rid = _request_id(request_id)
        body = await self.json_body(request)
        months = body.get("months")
        if isinstance(months, bool) or months not in (1, 2):
            raise HttpError(400, "'months' must be 1 or 2")
        reason = _reason(body, "an extension")
        case = await _operate(self.service.workflow, rid, "extend",
                              lambda c, now: cases.extend(c, int(months), reason, now), actor)
        return self.json(_operator(case, utcnow()))


class AdminLift(DsarApi):
    """Lift a completed restriction (Art. 18(3)); not in the contract's list, an addition."""

    async def post(self, request: Request, request_id: str) -> Response:
        actor = self.operator(request)
        rid = _request_id(request_id)
        case = await _answered(rid, self.service.workflow.lift_restriction(rid, actor))
        return self.json(_operator(case, utcnow()))


class AdminResend(DsarApi):
    """Re-send the case's unanswered commands to one system now (`{"system": ...}`); an addition."""

    async def post(self, request: Request, request_id: str) -> Response:
        actor = self.operator(request)
        rid = _request_id(request_id)
        system = (await self.json_body(request)).get("system")
        if not isinstance(system, str) or system not in ALL_SYSTEMS:
            raise HttpError(400, f"'system' must be a system id: {', '.join(ALL_SYSTEMS)}")
        _case, count = await _answered(rid, self.service.workflow.resend(rid, system, actor))
        return self.json({"request_id": rid, "system": system, "resent": count})


class AdminTimeline(DsarApi):
    """The case's whole history for the office: its audit entries (received, verification, status
    changes, emails requested, extensions, operator actions with who did them) and every command with
    its answer. Command ids are left out (each is its system's capability to answer)."""

    async def get(self, request: Request, request_id: str) -> Response:
        self.require_admin(request)
        rid = _request_id(request_id)
        async with self.runtime.pool.acquire() as conn:
            case = await self.opened_case(conn, rid)
            entries = await store.audit_of_case(conn, rid)
            sent = await commands_of_request(conn, rid)
        return self.json({
            "case": _operator(case, utcnow()),
            "events": [{"seq": e["seq"], "at": e["at"].isoformat(), "action": e["action"], "actor": e["actor"],
                        "detail": _detail(e["detail"])} for e in entries],
            "commands": [{"system": c["system"], "action": c["action"], "purpose": c["purpose"],
                          "sent_at": c["created_at"].isoformat(), "respond_by": c["respond_by"].isoformat(),
                          "attempts": c["attempts"],
                          "answered_at": c["acked_at"].isoformat() if c["acked_at"] else None,
                          "answer": c["ack_status"]} for c in sent],
        })


class AdminStats(DsarApi):
    """Figures for the office's overview: open cases by status, due within `soon_days` (7), overdue,
    awaiting review; cases received and completed per week over `weeks` (12) and days to complete."""

    async def get(self, request: Request) -> Response:
        self.require_admin(request)
        query = request.query
        weeks = _int(query.get("weeks"), 12, 1, 104, "weeks")
        soon_days = _int(query.get("soon_days"), 7, 1, 90, "soon_days")
        now = utcnow()
        since = now - timedelta(weeks=weeks)
        async with self.runtime.pool.acquire() as conn:
            counts = await store.status_counts(conn, now, now + timedelta(days=soon_days))
            weekly = await store.weekly_counts(conn, since)
            days = await store.days_to_complete(conn, since)
        return self.json({
            "counts": counts,
            "weeks": [{"week": w["week"].date().isoformat(), "received": w["received"], "completed": w["completed"],
                       "avg_days": round(float(w["avg_days"]), 2) if w["avg_days"] is not None else None}
                      for w in weekly],
            "days_to_complete": days,
        })


# --- services (bearer SERVICE_TOKEN) ----------------------------------------------------------------

#: Audit actions that belong on a person's timeline: status changes and extensions.
TIMELINE_ACTIONS = frozenset({f"case_{status}" for status in cases.STATUSES} | {"case_extended"})


#: Subjects one `POST /v1/internal/subjects/erased` may ask about (their ids stay under the body limit).
MAX_ERASED_QUERY = 200


class InternalSubjectsErased(DsarApi):
    """`POST {"subjects": [...]}`: those of them whose erasure completed here (the tombstone the erasure
    case writes as it completes and shreds the subject's key). The privacy center asks, to shred what
    it holds of them. Internal (SERVICE_TOKEN): the body names subjects."""

    async def post(self, request: Request) -> Response:
        require_service(self.runtime.settings, request.headers.get("Authorization"))
        subjects = (await self.json_body(request)).get("subjects")
        if (not isinstance(subjects, list) or len(subjects) > MAX_ERASED_QUERY
                or not all(isinstance(s, str) and SUBJECT_PATTERN.match(s) for s in subjects)):
            raise HttpError(400, f"'subjects' must be a list of at most {MAX_ERASED_QUERY} subject ids "
                                 "matching ^[A-Za-z0-9._:-]{1,128}$")
        async with self.runtime.pool.acquire() as conn:
            erased = await self.runtime.keyring.erased_among(conn, subjects)
        return self.json({"erased": sorted(erased)})


class InternalSubjectRequests(DsarApi):
    """A subject's requests with status, deadline, reason and timeline: what the privacy center shows the
    signed-in person. Internal (SERVICE_TOKEN), never public: the path names a subject."""

    async def get(self, request: Request, subject_id: str) -> Response:
        require_service(self.runtime.settings, request.headers.get("Authorization"))
        if not SUBJECT_PATTERN.match(subject_id):
            raise HttpError(400, "subject must match ^[A-Za-z0-9._:-]{1,128}$")
        async with self.runtime.pool.acquire() as conn:
            subject_cases = await store.cases_of(conn, subject_id)
            timelines = await store.timelines_of(conn, subject_id)
        now = utcnow()
        return self.json({"requests": [
            {
                **_public(case),
                "overdue": cases.is_overdue(case, now),
                "requested_via": case.requested_via,
                "identity_verified": case.identity_verified,
                "reason": case.reason,
                "extension_reason": case.extension_reason,
                "closed_at": case.closed_at.isoformat() if case.closed_at else None,
                "timeline": [{"at": at.isoformat(), "event": action.removeprefix("case_")}
                             for at, action in timelines.get(case.request_id, []) if action in TIMELINE_ACTIONS],
            }
            for case in reversed(subject_cases)
        ]})


def add_routes(routes: Routes, service: DsarService) -> None:
    """The service's endpoints; each view answers from `service` (its runtime, settings, use cases)."""
    for path, name, view in (
        ("/v1/requests/{request_id}", "request_status", RequestStatus),
        ("/v1/requests/{request_id}/verify", "request_verify", RequestVerify),
        ("/v1/admin/requests", "admin_requests", AdminRequests),
        ("/v1/admin/requests/{request_id}", "admin_request", AdminRequest),
        ("/v1/admin/requests/{request_id}/approve", "admin_approve", AdminApprove),
        ("/v1/admin/requests/{request_id}/reject", "admin_reject", AdminReject),
        ("/v1/admin/requests/{request_id}/extend", "admin_extend", AdminExtend),
        ("/v1/admin/requests/{request_id}/lift", "admin_lift", AdminLift),
        ("/v1/admin/requests/{request_id}/resend", "admin_resend", AdminResend),
        ("/v1/admin/requests/{request_id}/timeline", "admin_timeline", AdminTimeline),
        ("/v1/admin/stats", "admin_stats", AdminStats),
        ("/v1/internal/subjects/erased", "internal_subjects_erased", InternalSubjectsErased),
        ("/v1/internal/subjects/{subject_id}/requests", "internal_subject_requests", InternalSubjectRequests),
    ):
        routes.add(path, name, view, runtime=service.runtime, service=service)
    routes.add("/v1/exports/{token}", "export_download", ExportDownload, runtime=service.runtime, service=service,
               pages=export_pages(service.settings))
    register_stylesheet(routes, service.runtime, "/v1/exports")
