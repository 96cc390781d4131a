"""Who may sign in: personal tokens known only by their SHA-256 (`OFFICE_OPERATORS`), and ADMIN_TOKEN
as `admin`. Pure functions; every comparison takes constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
DIGEST = re.compile(r"^[0-9a-f]{64}$")
ADMIN = "admin"


class BadOperators(ValueError):
    """OFFICE_OPERATORS is not a list of name:sha256 entries."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_operators(text: str) -> dict[str, str]:
    """`name:sha256hex` entries separated by commas or whitespace -> {name: digest}."""
    operators: dict[str, str] = {}
    for entry in re.split(r"[\s,]+", text.strip()):
        if not entry:
            continue
        name, sep, digest = entry.partition(":")
        digest = digest.lower()
        if not sep or not NAME.match(name) or not DIGEST.match(digest):
            raise BadOperators(f"OFFICE_OPERATORS entry {entry[:24]!r}... is not name:sha256-hex")
        if name == ADMIN:
            raise BadOperators("the name 'admin' is reserved for ADMIN_TOKEN")
        if name in operators:
            raise BadOperators(f"operator {name!r} is listed twice")
        operators[name] = digest
    return operators


def authenticate(token: str, operators: Mapping[str, str], admin_token: str) -> str | None:
    """The operator's name for this token, or None. Every entry is compared, so the time taken does not
    say which (or whether any) matched."""
    token = token.strip()
    if not token or len(token) > 512:
        return None
    found: str | None = None
    digest = token_digest(token).encode()
    for name, expected in operators.items():
        if hmac.compare_digest(digest, expected.encode()):
            found = name
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        found = found or ADMIN
    return found
