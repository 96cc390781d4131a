"""DSAR service wiring: the faust app, the runtime, and the objects agents and views share."""

from __future__ import annotations

from pathlib import Path

from privacy_runtime.commands import CommandPolicy, CommandTracker, resend_loop
from privacy_runtime.inbox import CommandInbox
from privacy_runtime.service import ServiceRuntime
from services.dsar.downstream import dsar_actions
from services.dsar.retention import sweep_forever
from services.dsar.settings import DsarSettings
from services.dsar.workflow import Workflow, utcnow

SYSTEM_ID = "dsar"

settings = DsarSettings()  # type: ignore[call-arg]  # values come from the environment
runtime = ServiceRuntime(SYSTEM_ID, settings, Path(__file__).with_name("migrations"), settings.dsar_web_port)
app = runtime.app

tracker = CommandTracker(CommandPolicy.from_settings(settings))
workflow = Workflow(runtime, tracker, settings)
inbox = CommandInbox(SYSTEM_ID, dsar_actions(runtime.keyring))


@runtime.on_started
async def resend_commands() -> None:
    """Commands not acknowledged are re-sent with backoff; overdue ones are audited by the tracker."""
    await resend_loop(runtime, tracker)


@runtime.on_started
async def case_timers() -> None:
    """Close unverified cases, escalate overdue ones, refresh the deadline gauges."""
    await workflow.timer_loop()


@runtime.on_started
async def retention_sweeper() -> None:
    """Delete the service's own records once retention no longer allows them, and request the
    erasure of subjects inactive past the data map's retention."""
    await sweep_forever(runtime, settings, utcnow)
