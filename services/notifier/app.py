"""Notifier service wiring: `create_service(settings)` builds the runtime and the objects handlers and
views share, and registers its streams, routes and background loops on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from privacy_runtime.inbox import CommandInbox
from privacy_runtime.service import ServiceRuntime
from services.notifier import handlers, views
from services.notifier.consent_client import ConsentDecisions
from services.notifier.delivery import Sender
from services.notifier.downstream import notifier_actions
from services.notifier.fanout import FanOut
from services.notifier.final_notices import FinalNoticeKeys, FinalNoticeRotation
from services.notifier.intake import Intake
from services.notifier.settings import NotifierSettings
from services.notifier.wakeups import Wakeups

SYSTEM_ID = "notifier"


@dataclass(frozen=True)
class NotifierService:
    settings: NotifierSettings
    runtime: ServiceRuntime
    wakeups: Wakeups
    intake: Intake
    fanout: FanOut
    sender: Sender
    inbox: CommandInbox


def create_service(settings: NotifierSettings) -> NotifierService:
    runtime = ServiceRuntime(SYSTEM_ID, settings, Path(__file__).with_name("migrations"),
                             settings.notifier_web_port)
    wakeups = Wakeups(settings.database_url)
    service = NotifierService(
        settings=settings,
        runtime=runtime,
        wakeups=wakeups,
        intake=Intake(runtime, settings),
        fanout=FanOut(runtime, settings, wakeups),
        sender=Sender(runtime, settings, wakeups,
                      ConsentDecisions(settings.consent_base_url, settings.consent_timeout_seconds)),
        inbox=CommandInbox(SYSTEM_ID, notifier_actions(settings)),
    )
    final_notice_keys = FinalNoticeKeys(settings.master_key(), settings.previous_master_key())
    runtime.rotate_with_master_key(FinalNoticeRotation(final_notice_keys))
    handlers.register_streams(service)
    views.add_routes(runtime.routes, service)
    _add_loops(service)
    return service


def _add_loops(service: NotifierService) -> None:
    service.runtime.keep_running(
        listen_for_work=service.wakeups.listen,
        send_emails=service.sender.run,
        fan_out_notices=service.fanout.run,
        maintain_queue=service.sender.maintain,
    )
