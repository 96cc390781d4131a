"""HTTP building blocks shared by every stream service: a JSON view base, operator auth, common pages.

`ApiView` turns every failure into a JSON 4xx/5xx with a message a caller can act on (never a stack
trace), and records request metrics. `/metrics`, `/healthz` and `/readyz` are registered for all.
Views are plain aiohttp: a service's `Routes` are mounted on whatever serves them (the worker shell's
web server in production, `Routes.mount` on an aiohttp app in a test).
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import json
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dt_time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web as aiohttp_web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from privacy_runtime import commands, metrics
from privacy_runtime.audit import verification_report
from schemas.topics import ALL_SYSTEMS

if TYPE_CHECKING:
    from privacy_runtime.service import ServiceRuntime

Request = aiohttp_web.Request
Response = aiohttp_web.StreamResponse

log = logging.getLogger(__name__)

#: Request bodies above this size are refused (413) before they are read or parsed, on every endpoint.
#: The contract refuses bodies over 1 MiB; every body these APIs take is a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024
#: Header naming the person behind an operator request (the office's signed-in operator). Trusted only
#: together with the ADMIN_TOKEN bearer: whoever holds that token may act under any name anyway.
OPERATOR_HEADER = "X-Operator"
OPERATOR_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


#: The methods a view may answer (`async def get(...)` and so on); HEAD is answered by `get`.
METHODS = ("get", "post", "put", "patch", "delete", "options")


def _json_default(value: Any) -> Any:
    """What the worker's web server always encoded beyond JSON's own types (faust's `on_default`)."""
    if isinstance(value, Decimal | uuid.UUID | bytes):
        return str(value)
    if isinstance(value, date | dt_time):
        if not isinstance(value, datetime | dt_time):
            value = datetime(value.year, value.month, value.day)
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple | deque):
        return list(value)
    raise TypeError(f"JSON cannot serialize {type(value).__name__!r}")


class ApiView:
    """Base for every endpoint: JSON errors, body limits, metrics, no 500 for bad input.

    A subclass answers the methods it defines (`async def get(self, request, **match_info)`), and HEAD
    as GET; any other is refused with a JSON 405."""

    route_name = "unnamed"
    runtime: ServiceRuntime

    async def __call__(self, request: Request) -> Response:
        return await self.dispatch(request)

    async def dispatch(self, request: Any) -> Any:
        started = time.perf_counter()
        status = 500
        try:
            self._refuse_large_body(request)
            method = request.method.lower()
            method = "get" if method == "head" else method
            handler = getattr(self, method, None) if method in METHODS else None
            if handler is None:
                response = self.json({"error": f"Method {method.upper()} not allowed."}, status=405)
            else:
                response = await handler(request, **request.match_info)
            status = response.status
            return response
        except HttpError as exc:
            status = exc.status
            return self.json({"error": exc.message}, status=exc.status)
        except aiohttp_web.HTTPClientError as exc:
            # aiohttp's own refusals (e.g. a body over its client_max_size while reading) are the
            # caller's fault: the same JSON 4xx as ours rather than an unhandled 500.
            status = exc.status
            return self.json({"error": exc.text or exc.reason}, status=exc.status)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unhandled error in %s", self.route_name)
            return self.json({"error": "internal error; the incident was logged"}, status=500)
        finally:
            metrics.http_request_counter(self.route_name, status).inc()
            metrics.http_request_seconds(self.route_name).observe(time.perf_counter() - started)

    @staticmethod
    def json(value: Any, *, status: int = 200, headers: MutableMapping[str, str] | None = None) -> Response:
        body = orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)
        return aiohttp_web.Response(body=body, content_type="application/json", charset="utf-8", status=status,
                                    headers=headers)

    @staticmethod
    def bytes(value: bytes, *, content_type: str | None = None, status: int = 200,
              headers: Mapping[str, str] | None = None) -> Response:
        return aiohttp_web.Response(body=value, content_type=content_type, status=status, headers=headers)

    @staticmethod
    def text(value: str, *, content_type: str | None = None, status: int = 200,
             headers: Mapping[str, str] | None = None) -> Response:
        return aiohttp_web.Response(text=value, content_type=content_type, status=status, headers=headers)

    @classmethod
    def html(cls, value: str, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        return cls.text(value, content_type="text/html", status=status, headers=headers)

    @staticmethod
    def _refuse_large_body(request: Any) -> None:
        """A declared body over the limit is refused whatever the endpoint, before anything reads it."""
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise HttpError(413, f"request body over {MAX_BODY_BYTES} bytes")

    async def json_body(self, request: Request) -> dict[str, Any]:
        # Read at most one byte past the limit: a chunked body declares no length up front.
        raw = bytearray()
        stream = request.content
        while len(raw) <= MAX_BODY_BYTES:
            chunk = await stream.read(MAX_BODY_BYTES + 1 - len(raw))
            if not chunk:
                break
            raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise HttpError(413, f"request body over {MAX_BODY_BYTES} bytes")
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"request body is not valid JSON: {exc}") from exc
        except RecursionError:
            raise HttpError(400, "request body is nested too deeply to be read") from None
        if not isinstance(body, dict):
            raise HttpError(400, "request body must be a JSON object")
        return body

    def require_admin(self, request: Request) -> None:
        """Operator endpoints: `Authorization: Bearer $ADMIN_TOKEN`, compared in constant time."""
        expected = self.runtime.settings.admin_token.get_secret_value().encode()
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not expected:
            raise HttpError(503, "operator endpoints are disabled: ADMIN_TOKEN is not set")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise HttpError(401, "missing or wrong bearer token")

    def operator(self, request: Request) -> str:
        """`require_admin`, then the audit `actor` of the action: `operator:<name>` when the request
        names its operator (`X-Operator`), else `operator`."""
        self.require_admin(request)
        name = request.headers.get(OPERATOR_HEADER, "").strip()
        if not name:
            return "operator"
        if not OPERATOR_NAME.match(name):
            raise HttpError(400, f"{OPERATOR_HEADER} must match {OPERATOR_NAME.pattern}")
        return f"operator:{name}"


@dataclass(frozen=True)
class Route:
    path: str
    name: str
    view: type[ApiView]

    def methods(self) -> list[str]:
        """The HTTP methods routed to the view: HEAD and those it defines."""
        return ["HEAD", *(m.upper() for m in METHODS if hasattr(self.view, m))]


class Routes:
    """A service's endpoints: which view answers which path, under which metric route name."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)

    def __call__(self, runtime: ServiceRuntime, path: str, name: str) -> Callable[[type[ApiView]], type[ApiView]]:
        """Register an ApiView subclass at `path`, giving it the runtime and a metric route name."""

        def register(view: type[ApiView]) -> type[ApiView]:
            view.route_name = name
            view.runtime = runtime
            self._routes.append(Route(path, name, view))
            return view

        return register

    def add(self, path: str, name: str, view: type[ApiView], **bound: Any) -> None:
        """Serve `view` at `path` as a subclass bound to what it answers from (`runtime=`, `service=`...)."""
        self._routes.append(Route(path, name, type(view.__name__, (view,), {"route_name": name, **bound})))

    def mount(self, app: aiohttp_web.Application) -> None:
        """Serve these routes from an aiohttp app (as the worker shell's web server does)."""
        for r in self._routes:
            for method in r.methods():
                app.router.add_route(method, r.path, _handler(r.view()))


def _handler(view: ApiView) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        return await view.dispatch(request)

    return handle


def register_common_pages(routes: Routes, runtime: ServiceRuntime) -> None:

    @routes(runtime, "/metrics", "metrics")
    class MetricsView(ApiView):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @routes(runtime, "/healthz", "healthz")
    class HealthView(ApiView):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "service": runtime.name})

    @routes(runtime, "/readyz", "readyz")
    class ReadyView(ApiView):
        async def get(self, request: Request) -> Response:
            checks: dict[str, str] = {"runtime": "started" if runtime.started.is_set() else "starting"}
            ready = runtime.started.is_set()
            if ready:
                try:
                    async with runtime.pool.acquire(timeout=1) as conn:
                        await conn.fetchval("SELECT 1", timeout=1)
                    checks["database"] = "ok"
                except Exception as exc:
                    checks["database"] = f"unavailable: {type(exc).__name__}"
                    ready = False
            return self.json({"ready": ready, "checks": checks}, status=200 if ready else 503)

    register_operator_pages(routes, runtime)


def register_operator_pages(routes: Routes, runtime: ServiceRuntime) -> None:
    """Operator reads every service answers alike (bearer ADMIN_TOKEN): its audit chain verified, the
    commands it sent that are not yet answered, per system, and a re-send of them now."""


    last: dict[str, Any] = {}
    verifying = asyncio.Lock()

    @routes(runtime, "/v1/admin/audit/verify", "admin_audit_verify")
    class AuditVerifyView(ApiView):
        """The chain verified; a result up to AUDIT_VERIFY_MAX_AGE_SECONDS old unless `?fresh=true`
        (`verified_at` says when). One walk at a time: a second caller waits for the first's result."""

        async def get(self, request: Request) -> Response:
            self.require_admin(request)
            fresh_text = request.query.get("fresh") or ""
            if fresh_text not in ("", "true", "false"):
                raise HttpError(400, "fresh must be true or false")
            fresh = fresh_text == "true"
            max_age = float(getattr(runtime.settings, "audit_verify_max_age_seconds", 0.0))
            asked = time.monotonic()
            async with verifying:
                done_at = last.get("at", float("-inf"))
                if done_at < asked and (fresh or time.monotonic() - done_at > max_age):
                    async with runtime.pool.acquire() as conn:
                        last["report"] = await verification_report(conn, runtime.name)
                    last["at"] = time.monotonic()
                return self.json(last["report"])

    @routes(runtime, "/v1/admin/commands", "admin_commands")
    class CommandsView(ApiView):
        async def get(self, request: Request) -> Response:
            self.require_admin(request)
            system = request.query.get("system") or None
            if system is not None and system not in ALL_SYSTEMS:
                raise HttpError(400, f"system must be a system id: {', '.join(ALL_SYSTEMS)}")
            now = datetime.now(UTC)
            async with runtime.pool.acquire() as conn:
                debt = await commands.debt_by_system(conn, now)
                rows = await commands.outstanding_of(conn, system) if system else []
            return self.json({
                "service": runtime.name,
                "systems": [{"system": r["system"], "outstanding": r["outstanding"], "overdue": r["overdue"],
                             "oldest": r["oldest"].isoformat(),
                             "oldest_respond_by": r["oldest_respond_by"].isoformat()} for r in debt],
                "outstanding": [{"request_id": str(r["request_id"]) if r["request_id"] else None,
                                 "action": r["action"], "purpose": r["purpose"],
                                 "created_at": r["created_at"].isoformat(),
                                 "respond_by": r["respond_by"].isoformat(), "attempts": r["attempts"],
                                 "overdue": r["respond_by"] < now, "failed": r["ack_status"] == "failed"}
                                for r in rows],
            })

    @routes(runtime, "/v1/admin/commands/resend", "admin_commands_resend")
    class ResendView(ApiView):
        async def post(self, request: Request) -> Response:
            actor = self.operator(request)
            body = await self.json_body(request)
            system = body.get("system")
            if not isinstance(system, str) or system not in ALL_SYSTEMS:
                raise HttpError(400, f"'system' must be a system id: {', '.join(ALL_SYSTEMS)}")
            async with runtime.transaction() as tx:
                count = await commands.resend_now(tx.conn, system)
                await tx.audit.record("operator_resend", ref=system, actor=actor,
                                      detail={"system": system, "commands": count})
            return self.json({"system": system, "resent": count})
