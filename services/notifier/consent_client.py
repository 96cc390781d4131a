"""Asks the consent service's decision API whether a subject may get marketing email.

Anything but a clear yes (404 for an unknown subject, an error, a timeout) counts as no.
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

    async def allowed(self, subject: str, purpose: str = MARKETING_PURPOSE) -> bool:
        try:
            response = await self._http().get("/v1/decisions", params={"subject": subject, "purpose": purpose})
        except httpx.HTTPError as exc:
            log.warning(
                "consent decision API unreachable (%s): treating %s as not allowed",
                type(exc).__name__,
                purpose,
            )
            return False
        if response.status_code != 200:
            return False
        try:
            return response.json().get("allowed") is True
        except ValueError:
            return False

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
