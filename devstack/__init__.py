"""Embedded local stack (Kafka KRaft broker, PostgreSQL, SMTP sink) for ``make run`` and ``make test``.

Names are loaded lazily so that ``python -m devstack.smtp_sink`` starts without
importing the Kafka and PostgreSQL client libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack._proc import DevstackError
    from devstack.stack import Endpoints, Stack

__all__ = ["DevstackError", "Endpoints", "Stack"]


def __getattr__(name: str) -> Any:
    if name == "DevstackError":
        from devstack._proc import DevstackError

        return DevstackError
    if name in ("Endpoints", "Stack"):
        from devstack import stack

        return getattr(stack, name)
    raise AttributeError(f"module 'devstack' has no attribute {name!r}")
