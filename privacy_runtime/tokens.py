"""Signed, expiring tokens for links in emails (unsubscribe, "manage your privacy").

Signed with a key derived from the master key and a per-use salt, so an unsubscribe token cannot be
used as an export token, and a token for one subject cannot be edited into one for another.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer


class InvalidToken(Exception):
    def __init__(self, message: str, expired: bool = False):
        super().__init__(message)
        self.expired = expired


def _secret(master_key: bytes, purpose: str) -> str:
    return hmac.new(master_key, b"token-signing:" + purpose.encode(), hashlib.sha256).hexdigest()


class TokenSigner:
    """Signs with the current master key; also accepts tokens signed with the previous one, so links in
    emails sent before a master key rotation keep working while PRIVACY_MASTER_KEY_PREVIOUS is set."""

    def __init__(self, master_key: bytes, purpose: str, previous_master_key: bytes | None = None):
        # itsdangerous verifies with every key given and signs with the last.
        keys = [k for k in (previous_master_key, master_key) if k is not None]
        self._serializer = URLSafeTimedSerializer([_secret(k, purpose) for k in keys], salt=f"privacy:{purpose}")

    def sign(self, payload: dict[str, Any]) -> str:
        return self._serializer.dumps(payload)

    def verify(self, token: str, max_age_seconds: int | None = None) -> dict[str, Any]:
        if len(token) > 2048:
            raise InvalidToken("token too long")
        try:
            payload = self._serializer.loads(token, max_age=max_age_seconds)
        except SignatureExpired as exc:
            raise InvalidToken("link has expired", expired=True) from exc
        except BadSignature as exc:
            raise InvalidToken("link is not valid") from exc
        if not isinstance(payload, dict):
            raise InvalidToken("link is not valid")
        return payload


UNSUBSCRIBE = "unsubscribe"
EXPORT = "export"
#: The "manage your privacy" link in every email's footer ($PRIVACY_CENTER_URL/manage/{token}): payload
#: {"s": subject}; the privacy center opens a session from it while it is younger than MANAGE_MAX_AGE.
MANAGE = "manage"
MANAGE_MAX_AGE_SECONDS = 30 * 86400
