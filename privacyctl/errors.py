"""The one error type commands raise: a message a person can act on, and an exit code."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

#: Exit codes: 0 done, 1 the operation failed or found problems, 2 the input was not valid.
FAILED = 1
INVALID = 2

#: As `make run` prints it: secrets.env holds plain KEY=value lines (ADMIN_TOKEN, the master key), so
#: `set -a` is what exports them.
LOCAL_STACK_HINT = (
    "with the local stack (make run), load its environment first: "
    "`set -a; . var/stack.env; . var/secrets.env; set +a`"
)


class CtlError(Exception):
    def __init__(self, message: str, exit_code: int = FAILED):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to print)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
