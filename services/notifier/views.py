"""Notifier HTTP API (operators): the email queue at a glance. /metrics, /healthz, /readyz are common."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from privacy_runtime.internal_auth import require_service
from privacy_runtime.web import ApiView, HttpError, Request, Response, Routes
from services.notifier import rules, store

if TYPE_CHECKING:
    from services.notifier.app import NotifierService

#: An address as the subject lookup takes it: one @ with something either side (the OpenAPI pattern).
EMAIL_SHAPE = re.compile(r"[^@]+@[^@]+")


class AdminEmails(ApiView):
    """`GET /v1/admin/emails?status=`: counts per status and template, oldest entry, open fan-outs."""

    async def get(self, request: Request) -> Response:
        self.require_admin(request)
        status = request.query.get("status") or None
        if status is not None and status not in rules.STATUSES:
            raise HttpError(400, f"unknown status {status[:32]!r}; known: {', '.join(rules.STATUSES)}")
        async with self.runtime.pool.acquire() as conn:
            rows = await store.queue_counts(conn, status)
            jobs = await store.fanout_jobs(conn)
        totals: dict[str, int] = {}
        for row in rows:
            totals[row["status"]] = totals.get(row["status"], 0) + row["n"]
        return self.json(
            {
                "status": status,
                "totals": totals,
                "by_template": [
                    {
                        "status": r["status"],
                        "template": r["template"],
                        "count": r["n"],
                        "oldest": r["oldest"].isoformat(),
                    }
                    for r in rows
                ],
                "fanouts": [
                    {
                        "job_id": j["job_id"],
                        "notice": j["notice"],
                        "template": j["template"],
                        "queued": j["queued"],
                        "done": j["done"],
                        "created_at": j["created_at"].isoformat(),
                        "finished_at": j["finished_at"].isoformat() if j["finished_at"] else None,
                    }
                    for j in jobs
                ],
            }
        )


class SubjectLookup(ApiView):
    """`POST {"email": ...}`: the subjects whose address this is, found by the directory's keyed hash
    (HMAC) of the normalised address, erased subjects left out. The address travels in the body, never
    in a URL or a log. One lookup behind two credentials: each path says only who may ask."""

    def authorize(self, request: Request) -> None:
        raise NotImplementedError

    async def post(self, request: Request) -> Response:
        self.authorize(request)
        email = (await self.json_body(request)).get("email")
        if not isinstance(email, str) or not 3 <= len(email) <= 320 or not EMAIL_SHAPE.fullmatch(email):
            raise HttpError(400, "'email' must be an email address (one @, at most 320 characters)")
        async with self.runtime.pool.acquire() as conn:
            subjects = await store.subjects_by_email_hash(conn, self.runtime.keyring.keyed_hash("email", email))
            erased = await self.runtime.keyring.erased_among(conn, subjects) if subjects else {}
        return self.json({"subjects": [s for s in subjects if s not in erased]})


class InternalSubjectLookup(SubjectLookup):
    """Bearer SERVICE_TOKEN: for the privacy center's sign-in email; internal only, never public."""

    def authorize(self, request: Request) -> None:
        require_service(self.runtime.settings, request.headers.get("Authorization"))


class AdminSubjectLookup(SubjectLookup):
    """Bearer ADMIN_TOKEN: for the office's operators."""

    def authorize(self, request: Request) -> None:
        self.require_admin(request)


def add_routes(routes: Routes, service: NotifierService) -> None:
    """The service's endpoints; each view answers from `service` (its runtime, settings, use cases)."""
    for path, name, view in (
        ("/v1/admin/emails", "admin_emails", AdminEmails),
        ("/v1/internal/subjects/lookup", "internal_subject_lookup", InternalSubjectLookup),
        ("/v1/admin/subjects/lookup", "admin_subject_lookup", AdminSubjectLookup),
    ):
        routes.add(path, name, view, runtime=service.runtime, service=service)
