"""Reads through the other services' HTTP APIs (bearer SERVICE_TOKEN), and the one write that is an
HTTP call by contract: a verification code goes to the dsar service's verify endpoint."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from services.privacy_center.settings import PrivacyCenterSettings

#: Subjects per `POST /v1/internal/subjects/erased` (the dsar endpoint takes at most 200).
ERASED_PAGE = 200


class Unavailable(Exception):
    """A service did not answer as it should: the page says "try again in a while" (503)."""


class Services:
    def __init__(self, settings: PrivacyCenterSettings, transport: httpx.AsyncBaseTransport | None = None):
        token = settings.service_token.get_secret_value()
        self._client = httpx.AsyncClient(
            timeout=settings.read_timeout_seconds, transport=transport,
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )
        self.consent = settings.consent_base_url.rstrip("/")
        self.dsar = settings.dsar_base_url.rstrip("/")
        self.notifier = settings.notifier_base_url.rstrip("/")

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"{method} {url.split('/v1/')[0]}: {type(exc).__name__}") from None

    async def subjects_with_email(self, email: str) -> list[str]:
        response = await self._call("POST", f"{self.notifier}/v1/internal/subjects/lookup", json={"email": email})
        if response.status_code != 200:
            raise Unavailable(f"subject lookup answered {response.status_code}")
        subjects = response.json().get("subjects", [])
        return [str(s) for s in subjects if isinstance(s, str)]

    async def consents(self, subject: str) -> dict[str, Any] | None:
        response = await self._call("GET", f"{self.consent}/v1/subjects/{quote(subject, safe='')}/consents")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise Unavailable(f"consents answered {response.status_code}")
        return dict(response.json())

    async def requests(self, subject: str) -> dict[str, Any]:
        response = await self._call("GET", f"{self.dsar}/v1/internal/subjects/{quote(subject, safe='')}/requests")
        if response.status_code != 200:
            raise Unavailable(f"requests answered {response.status_code}")
        return dict(response.json())

    async def erased_among(self, subjects: list[str]) -> set[str]:
        """Those of `subjects` whose erasure completed (dsar's tombstones), asked in pages the endpoint takes."""
        erased: set[str] = set()
        for start in range(0, len(subjects), ERASED_PAGE):
            response = await self._call("POST", f"{self.dsar}/v1/internal/subjects/erased",
                                        json={"subjects": subjects[start:start + ERASED_PAGE]})
            if response.status_code != 200:
                raise Unavailable(f"erased subjects answered {response.status_code}")
            erased |= {str(s) for s in response.json().get("erased", []) if isinstance(s, str)}
        return erased

    async def verify(self, request_id: str, code: str) -> tuple[int, dict[str, Any]]:
        response = await self._call("POST", f"{self.dsar}/v1/requests/{request_id}/verify", json={"code": code})
        if response.status_code >= 500:
            raise Unavailable(f"verify answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        return response.status_code, body if isinstance(body, dict) else {}
