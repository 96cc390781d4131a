"""The running services against their published contracts, checked by the ecosystem's own tools.

- schemathesis (every check, the stateful phase on, a bounded number of examples) against each web
  service, with `schemas/openapi.yaml`: 0 failures. A service is in `SERVICES` by its name in the
  `system` fixture, which is also its tag in the document (plus `common`, the pages every service
  serves): adding a web service is one more name there.
- every event on every contract topic during a representative end-to-end run (registrations,
  consent changes, access, restriction and erasure cases answered by the downstream stand-ins, a legal
  disclosure, a policy change, the commands, acknowledgements, statuses, emails and audit entries they
  cause) parses with the CloudEvents Python SDK and validates against the committed JSON Schema.

Both share one start of the whole system (module-scoped `system`). Each check is also shown to fail on
something deliberately broken: a server that answers 500, and an event with a bad field.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from devstack.stack import Stack
from schemas.events import (
    ConsentChanged,
    ConsentGrant,
    DsarDetails,
    DsarRequested,
    ErasureRequested,
    LegalDisclosure,
    PolicyChanged,
    UserRegistered,
)
from schemas.examples import example_event
from schemas.topics import (
    CONSENT_CHANGED,
    DSAR_REQUESTED,
    ERASURE_REQUESTED,
    LEGAL_DISCLOSURE,
    POLICY_CHANGED,
    USER_REGISTERED,
    all_topics,
    command_topic,
)
from tests.contract import event_check
from tests.helpers import (
    ROOT,
    TEST_ADMIN_TOKEN,
    ServiceProcess,
    get_json,
    publish,
    subject_id,
    wait_until,
)

pytestmark = pytest.mark.stack

#: The web services schemathesis checks: their names in the `system` fixture and tags in the document.
SERVICES = ("consent", "dsar", "notifier")
DOCUMENT = ROOT / "schemas" / "openapi.yaml"
CONFIG = Path(__file__).with_name("schemathesis.toml")
#: Per operation and phase; enough to reach every documented constraint, few enough to stay fast.
MAX_EXAMPLES = 15


def schemathesis(url: str, tags: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    """`schemathesis run --checks all` with every phase (stateful included) against `url`."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG), "run", str(DOCUMENT),
        "--url", url, "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(MAX_EXAMPLES), "--request-timeout", "30", "--workers", "1",
        "--header", f"Authorization: Bearer {TEST_ADMIN_TOKEN}", "--no-color", "--output-truncate", "true",
    ]
    for tag in tags:
        command += ["--include-tag", tag]
    # Its working directory is scratch: nothing it caches lands in the repository.
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize("service", SERVICES)
def test_schemathesis_finds_nothing(system: dict[str, ServiceProcess], service: str, tmp_path: Path) -> None:
    run = schemathesis(system[service].url, [service, "common"], tmp_path)
    assert run.returncode == 0, f"schemathesis against {service}:\n{run.stdout[-20000:]}\n{run.stderr[-4000:]}"
    # Every phase ran and passed; stateful unless the service's operations have nothing to link.
    for phase in ("Coverage", "Fuzzing"):
        assert re.search(rf"✅ +{phase} \(in ", run.stdout), (phase, run.stdout[-4000:])
    assert re.search(r"✅ +Stateful \(in |Stateful \(not applicable\)", run.stdout), run.stdout[-4000:]


class _Failing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"error": "deliberately broken"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_schemathesis_fails_a_service_that_answers_500(failing_server: str, tmp_path: Path) -> None:
    run = schemathesis(failing_server, ["common"], tmp_path)
    assert run.returncode != 0, run.stdout[-4000:]
    assert "Server error" in run.stdout, run.stdout[-4000:]


# --- every event of an end-to-end run, through the CloudEvents SDK and the JSON Schemas ----------


def _checked_topics() -> list[str]:
    # A dead-letter topic holds, by the contract, the original message that failed: not an event.
    return [t for t in all_topics() if not t.endswith(".dlq")]


async def _offsets(bootstrap: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(t, p) for t in _checked_topics() for p in consumer.partitions_for_topic(t) or ()]
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def _read_between(bootstrap: str, start: dict[TopicPartition, int],
                        end: dict[TopicPartition, int]) -> list[Any]:
    """Every message from `start` up to `end` on each partition."""
    wanted = {tp: (start.get(tp, 0), stop) for tp, stop in end.items() if stop > start.get(tp, 0)}
    if not wanted:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    messages: list[Any] = []
    try:
        consumer.assign(list(wanted))
        for tp, (first, _) in wanted.items():
            consumer.seek(tp, first)
        deadline = asyncio.get_running_loop().time() + 120

        async def behind() -> bool:
            return any([await consumer.position(tp) < stop for tp, (_, stop) in wanted.items()])

        while await behind():
            assert asyncio.get_running_loop().time() < deadline, f"read {len(messages)} messages, not all"
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                messages += [r for r in records if r.offset < wanted[tp][1]]
    finally:
        await consumer.stop()
    return messages


@pytest.mark.usefixtures("systems")  # the stand-ins answer every external system's commands
async def test_every_event_of_an_end_to_end_run_is_a_valid_cloudevent_of_its_schema(
        stack: Stack, system: dict[str, ServiceProcess]) -> None:
    bootstrap, dsn = stack.endpoints.kafka_bootstrap, stack.endpoints.database_url
    dsar = system["dsar"].url
    start = await _offsets(bootstrap)
    person, erased = subject_id("ce"), subject_id("ce-erase")
    for subject in (person, erased):
        await publish(bootstrap, USER_REGISTERED, UserRegistered(
            email=f"{subject}@example.org", name="Cleo Event", country="SE", locale="en",
            consents=[ConsentGrant(purpose="marketing_email", granted=True)]), subject=subject)
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="analytics", granted=True, channel="preference_center", policy_version="2021-10-30"), subject=person)
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="marketing_email", granted=False, channel="email_footer", policy_version="2021-10-30"), subject=person)
    access, restriction, erasure = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await publish(bootstrap, DSAR_REQUESTED, DsarRequested(
        request_id=access, right="access", identity_verified=True, requested_via="web_form"), subject=person)
    await publish(bootstrap, DSAR_REQUESTED, DsarRequested(
        request_id=restriction, right="restriction", identity_verified=True, requested_via="web_form",
        details=DsarDetails(circumstance="accuracy_contested")), subject=person)
    await publish(bootstrap, ERASURE_REQUESTED, ErasureRequested(
        request_id=erasure, ground="consent_withdrawn", identity_verified=True, requested_via="web_form"),
        subject=erased)
    await publish(bootstrap, LEGAL_DISCLOSURE, LegalDisclosure(
        case_ref=f"case-{person}", authority="Polismyndigheten", legal_basis="RB 27:1", data_categories=["contact"],
        may_notify_subject=True, recipient_country="SE", outside_eea=False), subject=person)
    version = f"v-{uuid.uuid4().hex[:8]}"
    await publish(bootstrap, POLICY_CHANGED, PolicyChanged(
        version=version, effective_date=date(2027, 1, 1), material=False, summary_sv="Stavfel rättade",
        summary_en="Typos fixed", url="https://isopartner.se/policy"), subject=None, key=version)

    async def cases_completed() -> bool:
        for request_id in (access, restriction, erasure):
            status, body = await get_json(f"{dsar}/v1/requests/{request_id}")
            if status != 200 or body["status"] != "completed":
                return False
        return True

    await wait_until(cases_completed, timeout=120, interval=0.5, what="the access, restriction and erasure cases")
    conn = await asyncpg.connect(dsn)
    try:
        async def emails_sent() -> bool:
            rows = await conn.fetch("SELECT status FROM notifier.emails WHERE subject = ANY($1::text[])",
                                    [person, erased])
            return len(rows) >= 3 and all(r["status"] in ("sent", "suppressed") for r in rows)

        await wait_until(emails_sent, timeout=120, interval=0.5, what="the run's emails to go out")
    finally:
        await conn.close()

    messages = await _read_between(bootstrap, start, await _offsets(bootstrap))
    seen: dict[str, int] = {}
    bad: list[str] = []
    for m in messages:
        seen[m.topic] = seen.get(m.topic, 0) + 1
        headers = {k: bytes(v) for k, v in m.headers or ()}
        bad += [f"{m.topic}@{m.partition}:{m.offset}: {p}" for p in event_check.problems(m.topic, m.key, m.value,
                                                                                          headers)]
    print(f"\nCLOUDEVENTS: {len(messages)} events on {len(seen)} topics checked: {json.dumps(seen, sort_keys=True)}")
    assert not bad, "\n".join(bad[:20])
    # The run reached every kind of event it stands for.
    for topic in (USER_REGISTERED, CONSENT_CHANGED, DSAR_REQUESTED, ERASURE_REQUESTED, LEGAL_DISCLOSURE,
                  POLICY_CHANGED, "privacy-acks", "dsar-status", "notification-requested", "privacy-audit",
                  command_topic("accounts"), command_topic("consent")):
        assert seen.get(topic), f"no event on {topic} during the run: {seen}"


def _broken(topic: str, change: Any) -> bytes:
    document = json.loads(example_event(topic).model_dump_json())
    change(document)
    return json.dumps(document).encode()


@pytest.mark.parametrize(("name", "topic", "change"), [
    ("wrong specversion", CONSENT_CHANGED, lambda d: d.__setitem__("specversion", "0.3")),
    ("time that is not a time", CONSENT_CHANGED, lambda d: d.__setitem__("time", "yesterday")),
    ("no source", DSAR_REQUESTED, lambda d: d.pop("source")),
    ("unknown purpose", CONSENT_CHANGED, lambda d: d["data"].__setitem__("purpose", "spam")),
    ("granted as a string", CONSENT_CHANGED, lambda d: d["data"].__setitem__("granted", "yes")),
    ("type of another topic", CONSENT_CHANGED, lambda d: d.__setitem__("type", "user-registered")),
    ("unexpected data field", ERASURE_REQUESTED, lambda d: d["data"].__setitem__("extra", 1)),
])
def test_the_event_check_refuses_a_broken_event(name: str, topic: str, change: Any) -> None:
    assert event_check.problems(topic, b"k", json.dumps(json.loads(example_event(topic).model_dump_json())).encode()) == []
    assert event_check.problems(topic, b"k", _broken(topic, change)), name
    assert event_check.problems(topic, b"k", b"not json at all")
