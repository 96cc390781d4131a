"""DSAR service wiring: `create_service(settings)` builds the runtime and the objects handlers and views
share, and registers its streams, routes and background loops on it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from privacy_runtime.commands import CommandPolicy, CommandTracker, resend_loop
from privacy_runtime.inbox import CommandInbox
from privacy_runtime.service import ServiceRuntime
from services.dsar import handlers, views
from services.dsar.downstream import dsar_actions
from services.dsar.retention import sweep_forever
from services.dsar.settings import DsarSettings
from services.dsar.workflow import Workflow, utcnow

SYSTEM_ID = "dsar"


@dataclass(frozen=True)
class DsarService:
    settings: DsarSettings
    runtime: ServiceRuntime
    tracker: CommandTracker
    workflow: Workflow
    inbox: CommandInbox


def create_service(settings: DsarSettings) -> DsarService:
    runtime = ServiceRuntime(SYSTEM_ID, settings, Path(__file__).with_name("migrations"), settings.dsar_web_port)
    tracker = CommandTracker(CommandPolicy.from_settings(settings))
    service = DsarService(
        settings=settings,
        runtime=runtime,
        tracker=tracker,
        workflow=Workflow(runtime, tracker, settings),
        inbox=CommandInbox(SYSTEM_ID, dsar_actions(runtime.keyring)),
    )
    handlers.register_streams(service)
    views.add_routes(runtime.routes, service)
    _add_loops(service)
    return service


def _add_loops(service: DsarService) -> None:
    runtime = service.runtime
    runtime.keep_running(
        # Commands not acknowledged are re-sent with backoff; overdue ones are audited by the tracker.
        resend_commands=partial(resend_loop, runtime, service.tracker),
        # Close unverified cases, escalate overdue ones, refresh the deadline gauges.
        case_timers=service.workflow.timer_loop,
        # Delete the service's own records once retention no longer allows them, and request the
        # erasure of subjects inactive past the data map's retention.
        retention_sweeper=partial(sweep_forever, runtime, service.settings, utcnow),
    )
