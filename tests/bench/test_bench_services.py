"""The bench runs the services as deployed; the suite's services only change their idle fetch wait."""

from __future__ import annotations

import pytest

from bench.core import BenchService
from tests.helpers import ServiceProcess


def test_the_bench_keeps_the_production_fetch_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_FETCH_MAX_WAIT_MS", raising=False)
    assert "KAFKA_FETCH_MAX_WAIT_MS" not in BenchService("consent", {}).env()
    assert ServiceProcess("consent", {}).env()["KAFKA_FETCH_MAX_WAIT_MS"] == "100"
    assert ServiceProcess("consent", {}, {"KAFKA_FETCH_MAX_WAIT_MS": "20"}).env()["KAFKA_FETCH_MAX_WAIT_MS"] == "20"
