"""The broker's share of an erasure: the same messages, round-tripped through Kafka with no service.

A coordinator reads each request and sends its commands (as many per request as the services sent in
the measured run), a responder acknowledges each command at once, and the coordinator counts a request
done when its last ack is back and it has published the request's status messages. No database, no
state machine: what is left of the erasure workload's time when only the broker hops remain.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import orjson
from aiokafka import AIOKafkaConsumer

from bench import kafka

TOPICS = ("requests", "commands", "acks", "status")


async def erasure_round_trip(bootstrap: str, requests: list[tuple[bytes, bytes]], commands_per_request: int,
                             statuses_per_request: int, timeout: float = 120.0) -> float:
    """Seconds from producing `requests` until every one has had all its commands acknowledged."""
    run = uuid.uuid4().hex[:6]
    names = {t: f"bench-rt-{run}-{t}" for t in TOPICS}
    for name in names.values():
        await kafka.create_scratch_topic(bootstrap, name, 4)
    producer = kafka.producer(bootstrap, linger_ms=1)
    await producer.start()
    consumers = {t: await _consumer(bootstrap, names[t]) for t in ("requests", "commands", "acks")}
    outstanding: Counter[str] = Counter()
    done = asyncio.Event()
    completed = 0

    async def coordinator() -> None:
        nonlocal completed
        while True:
            polled = await consumers["requests"].getmany(timeout_ms=20)
            for messages in polled.values():
                for message in messages:
                    request_id = orjson.loads(message.value)["data"]["request_id"]
                    outstanding[request_id] = commands_per_request
                    for number in range(commands_per_request):
                        pad = message.value[:200].decode("utf-8", "replace")  # a command's size
                        value = orjson.dumps({"request_id": request_id, "n": number, "pad": pad})
                        await producer.send(names["commands"], key=message.key, value=value)
            polled = await consumers["acks"].getmany(timeout_ms=5)
            for messages in polled.values():
                for message in messages:
                    request_id = orjson.loads(message.value)["request_id"]
                    outstanding[request_id] -= 1
                    if outstanding[request_id] == 0:
                        for _ in range(statuses_per_request):
                            await producer.send(names["status"], key=message.key, value=message.value)
                        completed += 1
                        if completed == len(requests):
                            done.set()

    async def responder() -> None:
        while True:
            polled = await consumers["commands"].getmany(timeout_ms=20)
            for messages in polled.values():
                for message in messages:
                    await producer.send(names["acks"], key=message.key, value=message.value)

    tasks = [asyncio.create_task(coordinator()), asyncio.create_task(responder())]
    try:
        began = time.perf_counter()
        for key, value in requests:
            await producer.send(names["requests"], key=key, value=value)
        finished = asyncio.create_task(done.wait())
        await asyncio.wait([finished, *tasks], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                task.result()  # a failed coordinator or responder: raise its error here
        if not done.is_set():
            finished.cancel()
            raise TimeoutError(f"{completed} of {len(requests)} requests round-tripped within {timeout}s")
        return time.perf_counter() - began
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for consumer in consumers.values():
            await consumer.stop()
        await producer.stop()


async def _consumer(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5,
                                auto_offset_reset="earliest")
    await consumer.start()
    tps = await kafka.partitions(bootstrap, topic)
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    for tp in tps:
        await consumer.position(tp)
    return consumer
