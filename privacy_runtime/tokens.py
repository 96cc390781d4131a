"""Signed, expiring tokens for links in emails (unsubscribe, export download).

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


class TokenSigner:
    def __init__(self, master_key: bytes, purpose: str):
        secret = hmac.new(master_key, b"token-signing:" + purpose.encode(), hashlib.sha256).hexdigest()
        self._serializer = URLSafeTimedSerializer(secret, salt=f"privacy:{purpose}")

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
