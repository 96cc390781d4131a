"""Calls to the consent and dsar HTTP APIs, with errors that say what to set or do."""

from __future__ import annotations

from typing import Any

import httpx

from privacyctl.errors import LOCAL_STACK_HINT, CtlError


class ServiceClient:
    def __init__(
        self,
        service: str,
        base_url: str,
        env_var: str,
        *,
        timeout: float = 10.0,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.env_var = env_var
        self.timeout = timeout
        self.token = token
        self.transport = transport

    def request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: dict[str, Any] | None = None
    ) -> Any:
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        url = f"{self.base_url}{path}"
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
                response = client.request(method, url, params=params, json=body, headers=headers)
        except httpx.ConnectError as exc:
            raise CtlError(
                f"cannot reach the {self.service} service at {self.base_url} ({_reason(exc)}).\n"
                f"Is it running? Set {self.env_var} to its address; {LOCAL_STACK_HINT}."
            ) from None
        except httpx.TimeoutException:
            raise CtlError(
                f"the {self.service} service at {self.base_url} did not answer within {self.timeout:g} s "
                f"(set PRIVACYCTL_TIMEOUT to wait longer, or check {self.env_var})."
            ) from None
        except httpx.InvalidURL as exc:
            raise CtlError(f"{self.env_var}={self.base_url!r} is not a valid URL: {exc}") from None
        except httpx.HTTPError as exc:
            raise CtlError(f"request to the {self.service} service failed: {exc}") from None
        return self._result(response)

    def _result(self, response: httpx.Response) -> Any:
        try:
            payload: Any = response.json()
        except ValueError:
            payload = None
        if response.status_code < 400:
            if payload is None:
                raise CtlError(
                    f"the {self.service} service answered {response.status_code} without JSON; "
                    f"is {self.env_var}={self.base_url} really the {self.service} service?"
                )
            return payload
        message = payload.get("error") if isinstance(payload, dict) else None
        message = message or response.text.strip()[:300] or response.reason_phrase
        if response.status_code == 401:
            raise CtlError(
                f"the {self.service} service refused the operator token ({message}): set ADMIN_TOKEN "
                "to the token the service was started with."
            )
        if response.status_code == 404 and payload is None:
            raise CtlError(
                f"{response.request.url.path} not found on {self.base_url}: is {self.env_var} the "
                f"{self.service} service's address?"
            )
        raise CtlError(f"the {self.service} service answered {response.status_code}: {message}")


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text
