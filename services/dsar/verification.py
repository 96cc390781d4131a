"""One-time identity codes: generated at random, kept only as a keyed hash, judged without I/O.

The hash is an HMAC with a key derived from the master key and bound to the request id, so a stolen
table reveals no code, and a code for one request is worthless for another.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from enum import StrEnum

from services.dsar.store import Verification

CODE_PATTERN = re.compile(r"^[0-9]{6}$")


def new_code() -> str:
    """Six random digits from the OS CSPRNG (leading zeros kept)."""
    return f"{secrets.randbelow(10**6):06d}"


class CodeHasher:
    def __init__(self, master_key: bytes):
        self._key = hmac.new(master_key, b"dsar-verification-code", hashlib.sha256).digest()

    def hash(self, request_id: str, code: str) -> str:
        return hmac.new(self._key, f"{request_id}:{code}".encode(), hashlib.sha256).hexdigest()

    def matches(self, request_id: str, code: str, stored: str) -> bool:
        return bool(stored) and hmac.compare_digest(self.hash(request_id, code), stored)


class Verdict(StrEnum):
    VERIFIED = "verified"
    WRONG = "wrong"
    LOCKED = "locked"
    EXPIRED = "expired"
    MISSING = "missing"


def judge(verification: Verification | None, code_matches: bool, now: datetime) -> Verdict:
    """Lock and expiry are checked before the code, so a locked or expired code never verifies."""
    if verification is None or verification.verified:
        return Verdict.MISSING
    if verification.locked:
        return Verdict.LOCKED
    if verification.expires_at <= now:
        return Verdict.EXPIRED
    return Verdict.VERIFIED if code_matches else Verdict.WRONG
