"""The whole system with the privacy center in front of it, for the privacy center's end-to-end tests.

The services get a SERVICE_TOKEN and the privacy center presents it (not ADMIN_TOKEN)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from devstack.stack import Stack
from tests.helpers import ServiceProcess

SERVICE_TOKEN = "test-service-token"


@dataclass
class CenterSystem:
    consent: ServiceProcess
    dsar: ServiceProcess
    notifier: ServiceProcess
    center: ServiceProcess

    def center_process(self, stack_env: dict[str, str], **extra: str) -> ServiceProcess:
        """Another privacy center process like the running one (same port once that one stopped)."""
        process = ServiceProcess("privacy_center", stack_env, port=self.center.port)
        process.extra_env = {**center_env(self, process), **extra}
        return process


def center_env(system: CenterSystem, center: ServiceProcess) -> dict[str, str]:
    return {
        "SERVICE_TOKEN": SERVICE_TOKEN,
        "CONSENT_BASE_URL": system.consent.url,
        "DSAR_BASE_URL": system.dsar.url,
        "NOTIFIER_BASE_URL": system.notifier.url,
        "PRIVACY_CENTER_URL": center.url,
        # Tests ask for several links for one address; the limit itself is tested with its own setting.
        "EMAIL_LIMIT_PER_ADDRESS": "50",
        "EMAIL_LIMIT_PER_CLIENT": "500",
        "CODE_LIMIT_PER_CLIENT": "500",
        # Erasures are checked at start and then hourly: the erasure test starts a center that checks often.
        "ERASURE_CHECK_SECONDS": "3600",
    }


@pytest.fixture(scope="module")
async def center_system(stack: Stack) -> AsyncIterator[CenterSystem]:
    env = stack.env()
    token = {"SERVICE_TOKEN": SERVICE_TOKEN}
    consent = ServiceProcess("consent", env, token).start()
    dsar = ServiceProcess("dsar", env, token).start()
    notifier = ServiceProcess("notifier", env, {**token, "CONSENT_BASE_URL": consent.url,
                                                "CONSENT_PUBLIC_URL": consent.url}).start()
    center = ServiceProcess("privacy_center", env)
    system = CenterSystem(consent, dsar, notifier, center)
    center.extra_env = center_env(system, center)
    center.start()
    try:
        for service in (consent, dsar, notifier, center):
            await service.wait_ready(timeout=90)
        yield system
    finally:
        # The system's center may have been replaced by a test (a restart): stop that one too.
        for service in (system.center, center, consent, dsar, notifier):
            service.stop()
