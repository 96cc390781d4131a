"""Hostile input: every malformed message ends in a dead letter, every bad request in a 4xx, and the
services keep working. The report (cases per topic/endpoint, outcome per case, crashes) is printed and
written to var/reports/hostile.json."""

from __future__ import annotations

import json
import uuid
from collections import Counter

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from schemas.events import ConsentChanged, ErasureRequested, UserRegistered
from schemas.topics import CONSENT_CHANGED, ERASURE_REQUESTED, USER_REGISTERED, dlq_topic
from tests.helpers import ROOT, TEST_ADMIN_TOKEN, get_json, publish, read_topic, subject_id, wait_until
from tests.reliability.hostile import consumers_of, http_cases, message_cases

pytestmark = pytest.mark.stack


def _message_of(response: httpx.Response) -> str:
    """What a 4xx tells its caller: the JSON `error`, or the page a person sees (unsubscribe links)."""
    if response.headers.get("content-type", "").startswith("application/json"):
        return str(response.json().get("error") or "")
    return response.text.strip()


@pytest.fixture(scope="module")
def services(system):  # type: ignore[no-untyped-def]
    return system


async def test_hostile_corpus(stack, services) -> None:  # type: ignore[no-untyped-def]
    bootstrap = stack.endpoints.kafka_bootstrap
    cases = message_cases()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2_000_000)
    await producer.start()
    sent = []
    try:
        for case in cases:
            meta = await producer.send_and_wait(case.topic, key=case.key, value=case.value)
            sent.append((case, meta.partition, meta.offset))
    finally:
        await producer.stop()

    unclear: list[tuple[str, str]] = []

    async def all_dead_lettered() -> dict | None:
        """Every consumer of a case's topic dead-lettered it, saying why."""
        found: dict[tuple[str, int, int], set[str]] = {}
        unclear.clear()
        for topic in {c.topic for c in cases}:
            for letter in await read_topic(bootstrap, dlq_topic(topic)):
                headers = {k: bytes(v).decode("utf-8", "replace") for k, v in letter.headers}
                where = (headers["x-original-topic"], int(headers["x-original-partition"]),
                         int(headers["x-original-offset"]))
                found.setdefault(where, set()).add(headers.get("x-dead-lettered-by", "?"))
                if len(headers.get("x-error", "").strip()) < 10:
                    unclear.append((topic, headers.get("x-error", "")))
        outcome = {(c.topic, c.name): consumers_of(c.topic) <= found.get((c.topic, p, o), set())
                   for c, p, o in sent}
        return outcome if all(outcome.values()) else None

    try:
        outcomes = await wait_until(all_dead_lettered, timeout=90, interval=1.0, what="every case dead-lettered")
    except AssertionError:
        outcomes = {}

    http_results = []
    async with httpx.AsyncClient(timeout=10) as client:
        for case in http_cases():
            url = services[case.service].url + case.path
            response = await client.request(case.method, url, params=case.params, content=case.body,
                                            headers=case.headers)
            http_results.append({"service": case.service, "endpoint": f"{case.method} {case.path[:60]}",
                                 "case": case.name, "status": response.status_code,
                                 "message": _message_of(response)[:200]})

    crashes = [name for name, s in services.items() if s.process is not None and s.process.poll() is not None]
    # Valid events after the corpus are still processed.
    subject = subject_id("after")
    await publish(bootstrap, USER_REGISTERED, UserRegistered(email=f"{subject}@example.com", country="SE"),
                  subject=subject)
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(purpose="analytics", granted=True, channel="api",
                                                            policy_version="v1"), subject=subject)

    async def processed() -> bool:
        status, body = await get_json(f"{services['consent'].url}/v1/decisions",
                                      params={"subject": subject, "purpose": "analytics"})
        return status == 200 and body["allowed"] is True

    await wait_until(processed, what="a valid event after the corpus")
    # ... by the notifier (its directory) and dsar (a case) too.
    conn = await asyncpg.connect(stack.endpoints.database_url)
    try:
        async def in_directory() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM notifier.recipients WHERE subject = $1", subject))

        await wait_until(in_directory, what="the notifier to record a registration after the corpus")
    finally:
        await conn.close()
    request_id = uuid.uuid4()
    await publish(bootstrap, ERASURE_REQUESTED, ErasureRequested(
        request_id=request_id, ground="no_longer_necessary", identity_verified=False, requested_via="email"),
        subject=subject)

    async def case_opened() -> bool:
        status, _ = await get_json(f"{services['dsar'].url}/v1/requests/{request_id}")
        return status == 200

    await wait_until(case_opened, what="dsar to open a case after the corpus")
    ok_admin = await get_json(f"{services['dsar'].url}/v1/admin/requests",
                              headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"})

    report = {
        "message_cases_per_topic": dict(Counter(c.topic for c in cases)),
        "http_cases_per_service": dict(Counter(r["service"] for r in http_results)),
        "messages": [{"topic": t, "case": n, "outcome": "dead-lettered" if ok else "NOT dead-lettered"}
                     for (t, n), ok in (outcomes or {(c.topic, c.name): False for c in cases}).items()],
        "http": http_results,
        "crashes": len(crashes),
    }
    out = ROOT / "var" / "reports"
    out.mkdir(parents=True, exist_ok=True)
    (out / "hostile.json").write_text(json.dumps(report, indent=2))
    print(f"\nHOSTILE CORPUS: {len(cases)} messages over {len(report['message_cases_per_topic'])} topics, "
          f"{len(http_results)} HTTP requests, crashes {len(crashes)}")
    print(json.dumps({"per_topic": report["message_cases_per_topic"], "per_service": report["http_cases_per_service"]}))

    assert len(cases) + len(http_results) >= 100
    assert outcomes, [m for m in report["messages"] if m["outcome"] != "dead-lettered"][:10]
    bad_http = [r for r in http_results if not 400 <= r["status"] < 500]
    assert not bad_http, bad_http
    assert not unclear, unclear[:5]
    mute = [r for r in http_results if len(r["message"]) < 10]
    assert not mute, mute
    assert not crashes
    assert ok_admin[0] == 200
