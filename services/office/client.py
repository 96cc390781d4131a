"""The office reads and acts only through the services' HTTP APIs (ADMIN_TOKEN bearer); an action
names the signed-in operator in `X-Operator`, so the service audits it under that name."""

from __future__ import annotations

from typing import Any

import httpx

from privacy_runtime.web import OPERATOR_HEADER

SERVICE_NAMES = ("consent", "dsar", "notifier")


class ServiceError(Exception):
    """A service refused (4xx, with its message) or could not be reached (status 503)."""

    def __init__(self, service: str, status: int, message: str, unreachable: str | None = None):
        super().__init__(f"{service}: {message}")
        self.service = service
        self.status = status
        self.message = message
        #: When the service could not be reached: what stopped it (an exception's name), for the page to say.
        self.unreachable = unreachable


class Services:
    def __init__(self, urls: dict[str, str], admin_token: str, timeout: float = 10.0):
        self.urls = urls
        self._client = httpx.AsyncClient(timeout=timeout, headers={"Authorization": f"Bearer {admin_token}"})

    async def close(self) -> None:
        await self._client.aclose()

    async def get(self, service: str, path: str, params: dict[str, Any] | None = None) -> Any:
        return await self._call("GET", service, path, params=params)

    async def post(self, service: str, path: str, body: dict[str, Any], operator: str | None = None) -> Any:
        headers = {OPERATOR_HEADER: operator} if operator else None
        return await self._call("POST", service, path, json=body, headers=headers)

    async def _call(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        params = kwargs.get("params")
        if params:
            kwargs["params"] = {k: v for k, v in params.items() if v is not None and v != ""}
        try:
            response = await self._client.request(method, f"{self.urls[service]}{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(service, 503, f"not reachable ({type(exc).__name__})",
                               unreachable=type(exc).__name__) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else None
            raise ServiceError(service, response.status_code, str(message or f"HTTP {response.status_code}"))
        return body
