"""One-time identity codes: generated at random, kept only as a keyed hash, judged without I/O.

The hash is an HMAC with a key derived from the master key and bound to the request id, so a stolen
table reveals no code, and a code for one request is worthless for another.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True)
class Verification:
    """A request's identity code as stored: its keyed hash and how it has been used."""

    code_hash: str
    expires_at: datetime
    attempts: int
    codes_issued: int
    locked: bool
    verified: bool


CODE_PATTERN = re.compile(r"^[0-9]{6}$")


def new_code() -> str:
    """Six random digits from the OS CSPRNG (leading zeros kept)."""
    return f"{secrets.randbelow(10**6):06d}"


class CodeHasher:
    """Codes are stored as keyed hashes. A code hashed before a master key rotation still matches
    while PRIVACY_MASTER_KEY_PREVIOUS is set (codes live a day; keep it at least that long)."""

    def __init__(self, master_key: bytes, previous_master_key: bytes | None = None):
        masters = [master_key] + ([previous_master_key] if previous_master_key else [])
        self._keys = [hmac.new(m, b"dsar-verification-code", hashlib.sha256).digest() for m in masters]

    def hash(self, request_id: str, code: str) -> str:
        return self._hash(self._keys[0], request_id, code)

    def matches(self, request_id: str, code: str, stored: str) -> bool:
        # Every key is tried (no early exit), so the time taken says nothing about which one matched.
        found = [hmac.compare_digest(self._hash(key, request_id, code), stored) for key in self._keys]
        return bool(stored) and any(found)

    @staticmethod
    def _hash(key: bytes, request_id: str, code: str) -> str:
        return hmac.new(key, f"{request_id}:{code}".encode(), hashlib.sha256).hexdigest()


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
