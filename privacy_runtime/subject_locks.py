"""Per-subject locks: events, clicks and background passes about one subject go one transaction at a time.

A transaction-scoped advisory lock per subject, keyed by the schema and the subject, so each service
locks its own subjects. Three ways to take the same lock:

- `lock_subjects`: wait for them, in one fixed order, so two transactions never wait in a cycle;
- `try_lock_subjects`: take those free now, for background passes that must never wait;
- `lock_statement`: the SQL of `lock_subjects` with the subjects inlined, which `open_transaction`
  sends in one round trip with its BEGIN (a stream batch's first statement is always its locks).
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from privacy_runtime.db import inline_text

#: The lock of each subject in `unnest(<array of subjects>) AS s`: sorted and distinct, taken in order.
_LOCK_IN_ORDER = (
    "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT "
    "hashtextextended(current_schema() || '/' || {subject}, 0) AS k FROM unnest({subjects}) AS s ORDER BY k) AS keys"
)


def _subjects(subjects: Iterable[str | None]) -> list[str]:
    return sorted({s for s in subjects if s is not None})


async def lock_subjects(conn: asyncpg.Connection, subjects: Iterable[str | None]) -> None:
    """Take a transaction-scoped lock per subject, waiting for those another transaction holds."""
    keys = _subjects(subjects)
    if keys:
        await conn.execute(_LOCK_IN_ORDER.format(subject="s", subjects="$1::text[]"), keys)


def lock_statement(subjects: Iterable[str | None]) -> str | None:
    """`lock_subjects` as a statement without parameters (None: no subject), to go in a simple query
    with others; the subjects are inlined by `db.inline_text`."""
    keys = _subjects(subjects)
    if not keys:
        return None
    return _LOCK_IN_ORDER.format(subject="s", subjects="ARRAY[" + ", ".join(map(inline_text, keys)) + "]")


async def try_lock_subjects(conn: asyncpg.Connection, subjects: Iterable[str]) -> set[str]:
    """The subjects whose lock this transaction now holds, without waiting for those another
    transaction holds: for background passes that must never wait in a cycle."""
    keys = sorted(set(subjects))
    if not keys:
        return set()
    rows = await conn.fetch(
        "SELECT s FROM unnest($1::text[]) AS s WHERE pg_try_advisory_xact_lock("
        "hashtextextended(current_schema() || '/' || s, 0))",
        keys,
    )
    return {r["s"] for r in rows}
