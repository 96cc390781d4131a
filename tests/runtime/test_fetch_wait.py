"""KAFKA_FETCH_MAX_WAIT_MS reaches the services' consumer; the default keeps latency low."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from privacy_runtime import consumer as consumer_module
from privacy_runtime.consumer import BatchConsumer
from privacy_runtime.settings import ConnectionSettings


class _Built(Exception):
    """Raised by the stand-in consumer once it has been built with its options."""


def test_the_default_wait_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_FETCH_MAX_WAIT_MS", raising=False)
    assert ConnectionSettings().kafka_fetch_max_wait_ms == 20
    monkeypatch.setenv("KAFKA_FETCH_MAX_WAIT_MS", "0")
    with pytest.raises(ValidationError):
        ConnectionSettings()


async def test_the_consumer_fetches_with_the_configured_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    options: dict[str, Any] = {}

    class Consumer:
        def __init__(self, **kwargs: Any) -> None:
            options.update(kwargs)

        def subscribe(self, *args: Any, **kwargs: Any) -> None:
            raise _Built

    monkeypatch.setattr(consumer_module, "AIOKafkaConsumer", Consumer)
    monkeypatch.setenv("KAFKA_FETCH_MAX_WAIT_MS", "100")
    with pytest.raises(_Built):
        await BatchConsumer(ConnectionSettings(), "fetch-wait", {}, batch_max_events=10).run()
    assert options["fetch_max_wait_ms"] == 100
