"""Asks the consent service's decision API whether a subject may get marketing email.

True only for a clear yes; False for a clear no (a 4xx such as 404 for an unknown subject counts as
no); None when the service could not answer (unreachable, a timeout, a 5xx): the sender asks again
later rather than dropping the email for good, and never sends without a yes.
"""

from __future__ import annotations

import logging

import httpx

from services.notifier.rules import MARKETING_PURPOSE

log = logging.getLogger(__name__)


class ConsentDecisions:
    def __init__(self, base_url: str, timeout_seconds: float):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout_seconds
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout)
        return self._client

    async def allowed(self, subject: str, purpose: str = MARKETING_PURPOSE) -> bool | None:
        try:
            response = await self._http().get("/v1/decisions", params={"subject": subject, "purpose": purpose})
        except httpx.HTTPError as exc:
            log.warning("consent decision API unreachable (%s): %s email waits", type(exc).__name__, purpose)
            return None
        if response.status_code >= 500:
            log.warning("consent decision API answered %d: %s email waits", response.status_code, purpose)
            return None
        if response.status_code != 200:
            return False
        try:
            return response.json().get("allowed") is True
        except ValueError:
            return None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
