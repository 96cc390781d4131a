"""HTTP building blocks shared by every service: a JSON view base, operator auth, common pages.

`ApiView` turns every failure into a JSON 4xx/5xx with a message a caller can act on (never a stack
trace), and records request metrics. `/metrics`, `/healthz` and `/readyz` are registered for all.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

import faust
from aiohttp import web as aiohttp_web
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from privacy_runtime import metrics

log = logging.getLogger(__name__)

#: Request bodies above this size are refused (413) before they are read or parsed, on every endpoint.
#: The contract refuses bodies over 1 MiB; every body these APIs take is a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ApiView(View):
    """Base for every endpoint: JSON errors, body limits, metrics, no 500 for bad input."""

    route_name = "unnamed"
    runtime: Any = None

    async def dispatch(self, request: Any) -> Any:
        started = time.perf_counter()
        status = 500
        try:
            self._refuse_large_body(request)
            response = await super().dispatch(request)
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
            metrics.HTTP_REQUESTS.labels(route=self.route_name, status=str(status)).inc()
            metrics.HTTP_REQUEST_SECONDS.labels(route=self.route_name).observe(time.perf_counter() - started)

    @staticmethod
    def _refuse_large_body(request: Any) -> None:
        """A declared body over the limit is refused whatever the endpoint, before anything reads it."""
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise HttpError(413, f"request body over {MAX_BODY_BYTES} bytes")

    async def json_body(self, request: Request) -> dict[str, Any]:
        # Read at most one byte past the limit: a chunked body declares no length up front.
        raw = bytearray()
        stream = request.content  # type: ignore[attr-defined]
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


def route(app: faust.App, runtime: Any, path: str, name: str) -> Any:
    """Register an ApiView subclass at `path`, giving it the runtime and a metric route name."""

    def register(view: type[ApiView]) -> type[ApiView]:
        view.route_name = name
        view.runtime = runtime
        app.page(path, name=name)(view)
        return view

    return register


def register_common_pages(app: faust.App, runtime: Any) -> None:
    @route(app, runtime, "/metrics", "metrics")
    class MetricsView(ApiView):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @route(app, runtime, "/healthz", "healthz")
    class HealthView(ApiView):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "service": runtime.name})

    @route(app, runtime, "/readyz", "readyz")
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
