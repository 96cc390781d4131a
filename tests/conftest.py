"""Test-wide fixtures: the embedded stack (real Kafka, PostgreSQL, SMTP) started once per session,
and the whole system (three services) for the tests that need it."""

from collections.abc import AsyncIterator

import pytest
from hypothesis import settings

from devstack.stack import Stack
from tests.helpers import ServiceProcess

pytest_plugins = ["devstack.pytest_plugin", "tests.browser_kit"]

# Property tests check what is computed, never how fast: on a shared 2-core machine a pause in one
# example must not fail the suite (hypothesis' default is a 200 ms deadline per example).
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")


@pytest.fixture(scope="module")
async def system(stack: Stack) -> AsyncIterator[dict[str, ServiceProcess]]:
    """All three services running against the session's stack (for tests that need the whole system).

    Module-scoped: they stop when the module ends, so they never consume beside a later test's own
    service (same database schema, another consumer group)."""
    consent = ServiceProcess("consent", stack.env()).start()
    dsar = ServiceProcess("dsar", stack.env()).start()
    notifier = ServiceProcess("notifier", stack.env(), {"CONSENT_BASE_URL": consent.url,
                                                      "CONSENT_PUBLIC_URL": consent.url}).start()
    running = {"consent": consent, "dsar": dsar, "notifier": notifier}
    try:
        for service in running.values():
            await service.wait_ready(timeout=90)
        yield running
    finally:
        for service in running.values():
            service.stop()
