"""The credential of the internal read endpoints (`/v1/internal/...`) services call on each other.

`SERVICE_TOKEN` is a bearer token separate from `ADMIN_TOKEN`: the privacy center, which faces the
public, can read what it shows a signed-in person, and nothing it holds lets it act as an operator.
An operator's `ADMIN_TOKEN` is accepted too. Compared in constant time; no token configured: 503.
"""

from __future__ import annotations

import hmac

from privacy_runtime.settings import ServiceSettings
from privacy_runtime.web import HttpError


def require_service(settings: ServiceSettings, authorization: str | None) -> None:
    accepted = [t.get_secret_value().encode() for t in (settings.service_token, settings.admin_token)]
    accepted = [t for t in accepted if t]
    if not accepted:
        raise HttpError(503, "internal endpoints are disabled: SERVICE_TOKEN is not set")
    scheme, _, token = (authorization or "").partition(" ")
    given = token.strip().encode()
    # Every candidate is compared (no early exit), so the time taken does not say which one matched.
    matched = [hmac.compare_digest(given, expected) for expected in accepted]
    if scheme.lower() != "bearer" or not any(matched):
        raise HttpError(401, "missing or wrong bearer token")
