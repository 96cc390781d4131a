"""DSAR HTTP API: request status and identity verification for subjects, export downloads, and the
operator endpoints under /v1/admin/ (bearer token). Bad input is a 4xx JSON answer, never a 500.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from faust.web import Request, Response
from pydantic import TypeAdapter, ValidationError

from privacy_runtime.web import ApiView, HttpError, route
from schemas.fields import Detail
from services.dsar import cases, store
from services.dsar.app import app, runtime, workflow
from services.dsar.cases import Case, CaseError
from services.dsar.verification import CODE_PATTERN
from services.dsar.workflow import UnknownCase, utcnow

TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
MAX_REASON = 2000
MAX_LIST = 1000
DEFAULT_LIST = 200
LIMIT_PATTERN = re.compile(r"[1-9][0-9]{0,8}")
#: A reason travels in `dsar-status` (and the subject's email) as a `Detail`: checked against that very
#: type here, so what the event would refuse is a 400 now rather than a 500 mid-transaction.
REASON_TEXT = TypeAdapter(Detail)


def _request_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise HttpError(400, "request_id must be a UUID") from None


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


async def _operate(request_id: str, action: str, decide: Callable[[Case, datetime], cases.Decision]) -> Case:
    return await _answered(request_id, workflow.operate(request_id, action, decide))


async def _answered(request_id: str, operation: Awaitable[Case]) -> Case:
    """An operator action's case, or the HTTP error that says why it was refused."""
    try:
        return await operation
    except UnknownCase:
        raise HttpError(404, f"unknown request {request_id}") from None
    except CaseError as exc:
        raise HttpError(409, str(exc)) from None


# --- the subject's side ---------------------------------------------------------------------------


@route(app, runtime, "/v1/requests/{request_id}", "request_status")
class RequestStatus(ApiView):
    async def get(self, request: Request, request_id: str) -> Response:
        rid = _request_id(request_id)
        async with runtime.pool.acquire() as conn:
            case = await store.get_case(conn, rid)
        if case is None:
            raise HttpError(404, f"unknown request {rid}")
        return self.json(_public(case))


@route(app, runtime, "/v1/requests/{request_id}/verify", "request_verify")
class RequestVerify(ApiView):
    async def post(self, request: Request, request_id: str) -> Response:
        rid = _request_id(request_id)
        body = await self.json_body(request)
        code = body.get("code")
        if not isinstance(code, str) or not CODE_PATTERN.match(code.strip()):
            raise HttpError(400, "'code' must be the 6-digit code from the email, as a string")
        result = await workflow.verify_code(rid, code.strip())
        # Errors carry {"error": ...} like every other 4xx, plus e.g. attempts_left.
        return self.json(result.body, status=result.status)


@route(app, runtime, "/v1/exports/{token}", "export_download")
class ExportDownload(ApiView):
    async def get(self, request: Request, token: str) -> Response:
        if not TOKEN_PATTERN.match(token):
            raise HttpError(404, "unknown download link")
        outcome, row, content = await workflow.download(token)
        if outcome == "unknown":
            raise HttpError(404, "unknown download link")
        if outcome == "expired":
            raise HttpError(410, "this download link has expired; make a new request and a new copy will be prepared")
        if outcome == "used_up":
            raise HttpError(410, "this download link has been used the maximum number of times")
        if row is None or content is None:
            raise HttpError(410, "this package is no longer available")
        return self.bytes(
            content,
            content_type=row.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{row.filename}"',
                "Cache-Control": "no-store",
                "X-Downloads-Left": str(row.downloads_left),
            },
        )


# --- operators ------------------------------------------------------------------------------------


@route(app, runtime, "/v1/admin/requests", "admin_requests")
class AdminRequests(ApiView):
    async def get(self, request: Request) -> Response:
        self.require_admin(request)
        query = request.query  # type: ignore[attr-defined]
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
        limit_text = query.get("limit")
        # Plain decimal digits only: int() would also take "+5", " 5", "1_0" or other scripts' digits.
        if limit_text is not None and not LIMIT_PATTERN.fullmatch(limit_text):
            raise HttpError(400, f"limit must be a whole number between 1 and {MAX_LIST}")
        limit = int(limit_text) if limit_text is not None else DEFAULT_LIST
        if not 1 <= limit <= MAX_LIST:
            raise HttpError(400, f"limit must be between 1 and {MAX_LIST}")
        now = utcnow()
        async with runtime.pool.acquire() as conn:
            rows = await store.list_cases(conn, status=status, right=right, overdue=overdue, now=now, limit=limit)
        return self.json({"requests": [_operator(case, now) for case, _ in rows], "count": len(rows)})


@route(app, runtime, "/v1/admin/requests/{request_id}", "admin_request")
class AdminRequest(ApiView):
    async def get(self, request: Request, request_id: str) -> Response:
        self.require_admin(request)
        rid = _request_id(request_id)
        async with runtime.pool.acquire() as conn:
            case = await store.get_case(conn, rid)
        if case is None:
            raise HttpError(404, f"unknown request {rid}")
        return self.json(_operator(case, utcnow()))


@route(app, runtime, "/v1/admin/requests/{request_id}/approve", "admin_approve")
class AdminApprove(ApiView):
    async def post(self, request: Request, request_id: str) -> Response:
        self.require_admin(request)
        rid = _request_id(request_id)
        case = await _operate(rid, "approve", lambda c, now: cases.approve(c, runtime.data_map, now))
        return self.json(_operator(case, utcnow()))


@route(app, runtime, "/v1/admin/requests/{request_id}/reject", "admin_reject")
class AdminReject(ApiView):
    async def post(self, request: Request, request_id: str) -> Response:
        self.require_admin(request)
        rid = _request_id(request_id)
        reason = _reason(await self.json_body(request), "a rejection")
        case = await _operate(rid, "reject", lambda c, now: cases.reject(c, reason, now))
        return self.json(_operator(case, utcnow()))


@route(app, runtime, "/v1/admin/requests/{request_id}/extend", "admin_extend")
class AdminExtend(ApiView):
    async def post(self, request: Request, request_id: str) -> Response:
        self.require_admin(request)
        rid = _request_id(request_id)
        body = await self.json_body(request)
        months = body.get("months")
        if isinstance(months, bool) or months not in (1, 2):
            raise HttpError(400, "'months' must be 1 or 2")
        reason = _reason(body, "an extension")
        case = await _operate(rid, "extend", lambda c, now: cases.extend(c, int(months), reason, now))
        return self.json(_operator(case, utcnow()))


@route(app, runtime, "/v1/admin/requests/{request_id}/lift", "admin_lift")
class AdminLift(ApiView):
    """Lift a completed restriction (Art. 18(3)); not in the contract's list, an addition."""

    async def post(self, request: Request, request_id: str) -> Response:
        self.require_admin(request)
        rid = _request_id(request_id)
        case = await _answered(rid, workflow.lift_restriction(rid))
        return self.json(_operator(case, utcnow()))
