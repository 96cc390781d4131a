"""What keeps the people-facing pages safe: response headers, signed session cookies, CSRF tokens.

Pure functions and small values, no web framework: the aiohttp base app uses them, and so do the
stream services' link pages (`linkpages.py`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from privacy_runtime.tokens import InvalidToken, TokenSigner

#: No script at all, styles only from our own stylesheet, forms only to ourselves, never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def security_headers(*, https: bool) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
        # Pages name a person's choices and requests: never kept by a shared cache or the back button.
        "Cache-Control": "no-store",
    }
    if https:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


#: The form field every POST carries.
CSRF_FIELD = "csrf_token"


@dataclass
class Session:
    """A browser's session: a random id (CSRF tokens are bound to it) and a few values.

    Kept in a signed cookie; `changed` says it must be sent again (it is re-sent on every page anyway,
    which restarts the idle timeout)."""

    sid: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    data: dict[str, Any] = field(default_factory=dict)
    new: bool = True
    ended: bool = False

    def renew(self) -> None:
        """A fresh id at sign-in (so an id planted before it is worth nothing after) and at sign-out."""
        self.sid = secrets.token_urlsafe(18)
        self.new = True

    def end(self) -> None:
        self.data.clear()
        self.renew()
        self.ended = True

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def pop(self, key: str, default: Any = None) -> Any:
        return self.data.pop(key, default)


class SessionCodec:
    """Signs sessions into cookie values and back; a cookie older than the idle timeout is no session."""

    def __init__(self, master_key: bytes, app_name: str, idle_seconds: int,
                 previous_master_key: bytes | None = None):
        self._signer = TokenSigner(master_key, f"pages-session:{app_name}", previous_master_key)
        self._csrf_key = hmac.new(master_key, f"pages-csrf:{app_name}".encode(), hashlib.sha256).digest()
        self.idle_seconds = idle_seconds

    def dump(self, session: Session) -> str:
        return self._signer.sign({"i": session.sid, "d": session.data})

    def load(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            payload = self._signer.verify(cookie, max_age_seconds=self.idle_seconds)
        except InvalidToken:
            return None
        sid, data = payload.get("i"), payload.get("d")
        if not isinstance(sid, str) or not isinstance(data, dict):
            return None
        return Session(sid=sid, data=data, new=False)

    def csrf_token(self, session: Session) -> str:
        digest = hmac.new(self._csrf_key, session.sid.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        if session is None or session.new or not token or len(token) > 200:
            return False
        return hmac.compare_digest(self.csrf_token(session).encode(), token.encode())
