"""The stand-ins `make run` starts for the downstream systems: they answer as the data map says, over a
real broker, and a broken command does not stop them."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack import standins
from devstack.stack import Stack
from privacy_runtime.datamap import RETAIN
from schemas.enums import CommandAction
from schemas.events import PrivacyCommand
from schemas.topics import EXTERNAL_SYSTEMS, INTERNAL_SYSTEMS, PRIVACY_ACKS, command_topic
from tests.helpers import (
    DEFAULT_DATA_MAP,
    commit_group_offsets,
    event_of,
    publish,
    publish_raw,
    subject_id,
    wait_for_messages,
)


def _command(system: str, action: str) -> dict[str, Any]:
    return {"command_id": str(uuid.uuid4()), "system": system, "action": action}


def test_they_play_every_external_system_and_none_of_the_services() -> None:
    assert set(standins.played_systems(DEFAULT_DATA_MAP)) == set(EXTERNAL_SYSTEMS)
    assert not set(standins.played_systems(DEFAULT_DATA_MAP)) & set(INTERNAL_SYSTEMS)


def test_billing_keeps_its_records_on_erase_with_the_basis_from_the_data_map() -> None:
    ack = standins.answer(DEFAULT_DATA_MAP, "u1", _command("billing", "erase"))
    assert ack["status"] == "retained"
    assert "Bokföringslagen 7:2" in ack["retained_basis"]
    assert standins.answer(DEFAULT_DATA_MAP, "u1", _command("billing", "restrict"))["status"] == "done"
    assert standins.answer(DEFAULT_DATA_MAP, "u1", _command("accounts", "erase"))["status"] == "done"


def test_a_data_map_that_makes_another_system_keep_its_records_changes_the_answer() -> None:
    logs = dataclasses.replace(DEFAULT_DATA_MAP.systems["logs"], on_erase=RETAIN, retained_basis="Test law 1:1")
    changed = dataclasses.replace(DEFAULT_DATA_MAP, systems={**DEFAULT_DATA_MAP.systems, "logs": logs})
    ack = standins.answer(changed, "u1", _command("logs", "erase"))
    assert (ack["status"], ack["retained_basis"]) == ("retained", "Test law 1:1")


def test_an_export_comes_back_with_a_fragment_naming_the_system() -> None:
    ack = standins.answer(DEFAULT_DATA_MAP, "u1", _command("support", "export"))
    assert ack["export"]["system"] == "support"
    assert ack["export"]["records"][0]["subject"] == "u1"


@pytest.mark.stack
async def test_commands_on_the_broker_are_answered_and_a_broken_one_is_passed_over(stack: Stack) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    group = f"standins-test-{uuid.uuid4().hex[:8]}"
    await commit_group_offsets(bootstrap, group, [command_topic(s) for s in EXTERNAL_SYSTEMS], to_end=True)
    stop = asyncio.Event()
    seen: list[tuple[str, dict[str, Any]]] = []
    player = asyncio.create_task(standins.play(
        standins.StandinSettings(kafka_bootstrap_servers=bootstrap), stop, group=group, seen=seen))
    try:
        subject = subject_id("standin")
        await publish_raw(bootstrap, command_topic("billing"), subject.encode(), b"{not json")
        respond_by = datetime.now(UTC) + timedelta(days=7)
        sent = {}
        for system, action in (("billing", CommandAction.ERASE), ("accounts", CommandAction.EXPORT)):
            command = PrivacyCommand(command_id=uuid.uuid4(), system=system, action=action,
                                     request_id=uuid.uuid4(), respond_by=respond_by)
            await publish(bootstrap, command_topic(system), command, subject=subject)
            sent[str(command.command_id)] = system

        def ours(message: Any) -> bool:
            event = event_of(message)
            return event is not None and event["data"]["command_id"] in sent

        acks = {event["data"]["system"]: event["data"] for event in
                (event_of(m) for m in await wait_for_messages(bootstrap, PRIVACY_ACKS, ours, count=2,
                                                                timeout=90)) if event}
        assert acks["billing"]["status"] == "retained"
        assert acks["accounts"]["status"] == "done" and acks["accounts"]["export"]["system"] == "accounts"
        assert [subject_of for subject_of, _ in seen if subject_of == subject] == [subject, subject]
        assert not player.done(), "the broken command stopped the stand-ins"
    finally:
        stop.set()
        await asyncio.wait_for(player, timeout=30)
