"""Stand-ins for the downstream systems, so that a case runs to its end on the local stack.

The external systems of the data map (accounts, billing, marketing_email, ...) belong to other teams.
On `make run` this process plays them: it reads each one's `privacy-commands.<system>` topic and
answers every command on `privacy-acks` as a well-behaved system would: `done`, or, for an `erase`
where the data map says the system keeps records by law (billing), `retained` with the map's
`retained_basis`. An `export` is answered with a small fragment that says it came from a stand-in.
The three services answer their own command topics; they are not played here.

    python -m devstack.standins        # KAFKA_BOOTSTRAP_SERVERS (+ security), DATA_MAP_PATH

`make run` starts it on its embedded broker unless `DOWNSTREAM_STANDINS=0` (when real systems read the
command topics); on an external broker only with `DOWNSTREAM_STANDINS=1`.
`STANDIN_DELAY_SECONDS` holds each answer back, to watch a case wait for its systems.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic_settings import SettingsConfigDict

from privacy_runtime.codec import DecodeError, decode, encode
from privacy_runtime.datamap import RETAIN, DataMap, load_data_map
from privacy_runtime.kafka import aiokafka_options
from privacy_runtime.settings import DEFAULT_DATA_MAP, ConnectionSettings
from schemas.envelope import new_event
from schemas.events import PrivacyAck
from schemas.topics import PRIVACY_ACKS, command_topic

log = logging.getLogger("devstack.standins")

GROUP = "devstack-standins"
SOURCE = "urn:isopartner:devstack:standins"


class StandinSettings(ConnectionSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    data_map_path: Path = DEFAULT_DATA_MAP
    standin_delay_seconds: float = 0.0


def played_systems(data_map: DataMap) -> list[str]:
    """Every system of the map that is not one of the services themselves."""
    return [system.id for system in data_map.systems.values() if not system.internal]


def answer(data_map: DataMap, subject: str, command: dict[str, Any],
           *, export: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `privacy-acks` data a well-behaved system sends for `command` (the command event's data)."""
    system, action = command["system"], command["action"]
    ack: dict[str, Any] = {"command_id": command["command_id"], "system": system, "status": "done"}
    entry = data_map.get(system)
    if action == "erase" and entry is not None and entry.on_erase == RETAIN:
        ack.update(status="retained", retained_basis=entry.retained_basis)
    if action == "export":
        ack["export"] = export if export is not None else {
            "system": system, "records": [{"subject": subject, "note": f"{system} data (local stand-in)"}]}
    return ack


async def play(settings: StandinSettings, stop: asyncio.Event, *, group: str = GROUP,
               seen: list[tuple[str, dict[str, Any]]] | None = None) -> None:
    """Answer commands until `stop` is set; each (subject, command data) answered is appended to `seen`.

    Offsets are committed after the answers of a poll are written, so a restart answers at most those
    commands again (acks are idempotent by `command_id`)."""
    data_map = load_data_map(settings.data_map_path)
    systems = played_systems(data_map)
    options = aiokafka_options(settings)
    consumer = AIOKafkaConsumer(*(command_topic(s) for s in systems), group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest", **options)
    producer = AIOKafkaProducer(acks="all", **options)
    await producer.start()
    await consumer.start()
    log.warning("standins: playing %s", ", ".join(systems))
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for message in messages:
                    answered = await _answer_one(data_map, producer, message, settings.standin_delay_seconds)
                    if answered is not None and seen is not None:
                        seen.append(answered)
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def _answer_one(
    data_map: DataMap, producer: AIOKafkaProducer, message: Any, delay: float
) -> tuple[str, dict[str, Any]] | None:
    try:
        event = decode(message.topic, message.key, message.value)
    except DecodeError as exc:  # a real system would dead-letter it; a stand-in says so and moves on
        log.warning("standins: %s[%d]@%d not answered: %s", message.topic, message.partition, message.offset,
                    exc.message)
        return None
    if delay:
        await asyncio.sleep(delay)
    command = event.data.model_dump(mode="json")
    ack = PrivacyAck.model_validate(answer(data_map, event.subject, command))
    await producer.send_and_wait(PRIVACY_ACKS, key=event.subject.encode(),
                                 value=encode(new_event(PRIVACY_ACKS, ack, subject=event.subject, source=SOURCE)))
    log.warning("standins: %s %s %s -> %s", command["system"], command["action"], command["command_id"], ack.status)
    return event.subject, command


async def main() -> int:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING").upper(), format="%(asctime)s %(message)s")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await play(StandinSettings(), stop)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
