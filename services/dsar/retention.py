"""The retention sweeper: the dsar service keeps its own records only as long as they are needed.

- an export package is wiped once its link expired or was used up (it holds a copy of everything);
- export fragments and sealed corrections go once their case is closed (they were only inputs);
- identity verification rows go once their case is closed;
- a closed case record goes after `case_record_retention_seconds`.

Each sweep is one transaction with one audit entry giving the counts (no personal data).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from services.dsar import store


async def sweep(runtime: Any, now: datetime, case_retention: timedelta) -> dict[str, int]:
    async with runtime.transaction() as conn:
        counts = await store.purge_expired(conn, now, now - case_retention)
        if any(counts.values()):
            await runtime.audit.record(conn, "retention_sweep", ref="dsar", detail=counts, publish=False)
    return counts


async def sweep_forever(runtime: Any, settings: Any, clock: Callable[[], datetime]) -> None:
    while True:
        await sweep(runtime, clock(), timedelta(seconds=settings.case_record_retention_seconds))
        await asyncio.sleep(settings.retention_sweep_seconds)
