"""Two processes listening on one channel (two consent replicas): a sync sent by one never answers the
other's. Before tokens named their listener, both numbered theirs sync:0, sync:1, ... so another
replica's earlier token could tell a relay that every change was heard when it was not."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from devstack.stack import Stack
from privacy_runtime.notifications import Listener
from tests.helpers import wait_until

pytestmark = pytest.mark.stack


def _listener(dsn: str, channel: str, heard: list[str]) -> Listener:
    return Listener(dsn, channel, heard.append, on_ready=lambda: None, on_lost=lambda: None,
                    check_seconds=60, timeout_seconds=5)


async def test_another_listeners_sync_does_not_answer_ours(stack: Stack) -> None:
    channel = f"syncs_{uuid.uuid4().hex[:8]}"
    heard: list[str] = []
    ours, theirs = _listener(stack.endpoints.database_url, channel, heard), _listener(
        stack.endpoints.database_url, channel, heard)
    running = [asyncio.create_task(ours.run()), asyncio.create_task(theirs.run())]
    try:
        async def both_connected() -> bool:
            return ours.connected and theirs.connected

        await wait_until(both_connected, what="both listeners connected")
        # Our sync registers its token, then waits for the connection: held here, so it is not sent.
        async with ours._one_query:
            waiting = asyncio.create_task(ours.sync())

            async def registered() -> bool:
                return bool(ours._syncs)

            await wait_until(registered, what="our sync's token registered")
            [pending] = ours._syncs.values()
            assert await theirs.sync(), "their sync comes back to them"
            await asyncio.sleep(0.2)  # their notification has reached our connection too
            assert not pending.done(), "their token answered our sync"
        assert await waiting, "ours comes back once sent"
        assert heard == [], "sync tokens are not payloads"
    finally:
        for task in running:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
