"""Dashboards and alert rules query only metric names the running services really export."""

from __future__ import annotations

import re

import httpx
import pytest

from deploy.metric_names import used_names
from tests.helpers import ServiceProcess

pytestmark = pytest.mark.stack

SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}


def exported_names(text: str) -> set[str]:
    """Every series name a scrape can carry, from the TYPE lines (also for metrics not yet observed)."""
    names: set[str] = set()
    for line in text.splitlines():
        match = re.match(r"# TYPE ([A-Za-z_:][A-Za-z0-9_:]*) (\w+)", line)
        if match:
            base, kind = match.groups()
            if kind == "counter":
                base = base.removesuffix("_total")  # newer clients put the suffix in the TYPE line
            names |= {base + suffix for suffix in SUFFIXES.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


async def test_dashboards_and_alerts_use_only_exported_names(system: dict[str, ServiceProcess]) -> None:
    exported: set[str] = set()
    async with httpx.AsyncClient(timeout=10) as client:
        for service in system.values():
            response = await client.get(f"{service.url}/metrics")
            assert response.status_code == 200
            exported |= exported_names(response.text)
    used = used_names()
    assert used, "dashboards and rules use some metrics"
    missing = sorted(used - exported)
    assert not missing, f"queried but not exported by any running service: {missing}"
