"""Notifier service wiring: the faust app, the runtime, and the objects agents and views share."""

from __future__ import annotations

from pathlib import Path

from privacy_runtime.inbox import CommandInbox
from privacy_runtime.service import ServiceRuntime
from services.notifier.consent_client import ConsentDecisions
from services.notifier.delivery import Sender
from services.notifier.downstream import notifier_actions
from services.notifier.fanout import FanOut
from services.notifier.final_notices import FinalNoticeKeys, FinalNoticeRotation
from services.notifier.intake import Intake
from services.notifier.settings import NotifierSettings
from services.notifier.wakeups import Wakeups

SYSTEM_ID = "notifier"

settings = NotifierSettings()  # type: ignore[call-arg]  # values come from the environment
runtime = ServiceRuntime(SYSTEM_ID, settings, Path(__file__).with_name("migrations"), settings.notifier_web_port)
app = runtime.app

wakeups = Wakeups(settings.database_url)
intake = Intake(runtime, settings)
fanout = FanOut(runtime, settings, wakeups)
sender = Sender(
    runtime, settings, wakeups, ConsentDecisions(settings.consent_base_url, settings.consent_timeout_seconds)
)
inbox = CommandInbox(SYSTEM_ID, notifier_actions(runtime.keyring, settings))
final_notice_keys = FinalNoticeKeys(settings.master_key(), settings.previous_master_key())
runtime.rotate_with_master_key(FinalNoticeRotation(final_notice_keys))


@runtime.on_started
async def listen_for_work() -> None:
    await wakeups.listen()


@runtime.on_started
async def send_emails() -> None:
    await sender.run()


@runtime.on_started
async def fan_out_notices() -> None:
    await fanout.run()


@runtime.on_started
async def maintain_queue() -> None:
    await sender.maintain()
