"""Hostile input: every malformed message ends in a dead letter, every bad request in a 4xx, and the
services keep working. The report (cases per topic/endpoint, outcome per case, crashes) is printed and
written to var/reports/hostile.json."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from devstack.stack import Stack
from schemas.envelope import new_event
from schemas.events import (
    ConsentChanged,
    DsarDetails,
    DsarRequested,
    DsarStatus,
    ErasureRequested,
    LegalDisclosure,
    MergerNotice,
    NotificationRequested,
    PolicyChanged,
    PrivacyAck,
    PrivacyCommand,
    UserRegistered,
)
from schemas.topics import (
    COMMAND_TOPIC_PREFIX,
    CONSENT_CHANGED,
    DSAR_REQUESTED,
    DSAR_STATUS,
    ERASURE_REQUESTED,
    LEGAL_DISCLOSURE,
    MERGER_NOTICE,
    NOTIFICATION_REQUESTED,
    POLICY_CHANGED,
    PRIVACY_ACKS,
    USER_REGISTERED,
    dlq_topic,
)
from tests.helpers import ROOT, TEST_ADMIN_TOKEN, ServiceProcess, get_json, publish, read_topic, subject_id, wait_until
from tests.reliability.hostile import (
    CONSUMED,
    ENUM_FIELDS,
    WEB_SERVICES,
    body_cases,
    consumers_of,
    forged_acks,
    http_cases,
    message_cases,
)

pytestmark = pytest.mark.stack


def _message_of(response: httpx.Response) -> str:
    """What a 4xx tells its caller: the JSON `error`, or the page a person sees (unsubscribe links)."""
    if response.headers.get("content-type", "").startswith("application/json"):
        return str(response.json().get("error") or "")
    return response.text.strip()


async def _chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start:start + size]


@pytest.fixture(scope="module")
def services(system: dict[str, ServiceProcess]) -> dict[str, ServiceProcess]:
    return system


async def test_hostile_corpus(stack: Stack, services: dict[str, ServiceProcess]) -> None:
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
        for case in http_cases() + body_cases(TEST_ADMIN_TOKEN):
            url = services[case.service].url + case.path
            content: Any = _chunks(case.body) if case.chunked and case.body is not None else case.body
            response = await client.request(case.method, url, params=case.params, content=content,
                                            headers=case.headers)
            http_results.append({"service": case.service, "endpoint": f"{case.method} {case.path[:60]}",
                                 "case": case.name, "status": response.status_code, "expect": case.expect,
                                 "json": response.headers.get("content-type", "").startswith("application/json"),
                                 "message": _message_of(response)[:200]})

    # Valid answers to commands nobody issued: every consumer of privacy-acks takes them (its claim of the
    # event id commits with the batch) and nothing is dead-lettered or settled.
    forged = []
    for name, ack in forged_acks():
        forged_subject = subject_id("forged")
        event_id = await publish(bootstrap, PRIVACY_ACKS, ack, subject=forged_subject)
        forged.append((name, event_id, str(ack.command_id)))
    conn = await asyncpg.connect(stack.endpoints.database_url)
    try:
        async def claims(event_id: str) -> set[str]:
            return {s for s in sorted(consumers_of(PRIVACY_ACKS))
                    if await conn.fetchval(f"SELECT count(*) FROM {s}.processed_events WHERE event_id = $1",
                                           event_id)}

        async def all_taken() -> bool:
            return all([await claims(event_id) == consumers_of(PRIVACY_ACKS) for _, event_id, _ in forged])

        try:
            await wait_until(all_taken, timeout=60, interval=0.5, what="the forged answers to be taken")
        except AssertionError:
            pass
        forged_results = []
        for name, event_id, command_id in forged:
            settled = sum([await conn.fetchval(f"SELECT count(*) FROM {s}.commands WHERE command_id = $1",
                                               uuid.UUID(command_id)) for s in ("consent", "dsar")])
            parts = await conn.fetchval("SELECT count(*) FROM dsar.export_parts WHERE command_id = $1",
                                        uuid.UUID(command_id))
            taken = await claims(event_id) == consumers_of(PRIVACY_ACKS)
            forged_results.append({"case": name, "outcome": "ignored" if taken and not settled and not parts
                                   else "NOT ignored"})
    finally:
        await conn.close()
    dead_forged = [m for m in await read_topic(bootstrap, dlq_topic(PRIVACY_ACKS))
                   if any(cid.encode() in (m.value or b"") for _, _, cid in forged)]

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
        "forged_answers": forged_results,
        "crashes": len(crashes),
    }
    out = ROOT / "var" / "reports"
    out.mkdir(parents=True, exist_ok=True)
    (out / "hostile.json").write_text(json.dumps(report, indent=2))
    print(f"\nHOSTILE CORPUS: {len(cases)} messages over {len(report['message_cases_per_topic'])} topics, "
          f"{len(http_results)} HTTP requests, {len(forged_results)} forged answers, crashes {len(crashes)}")
    print(json.dumps({"per_topic": report["message_cases_per_topic"], "per_service": report["http_cases_per_service"]}))

    assert len(cases) + len(http_results) >= 100
    assert outcomes, [m for m in report["messages"] if m["outcome"] != "dead-lettered"][:10]
    bad_http = [r for r in http_results if not 400 <= r["status"] < 500]
    assert not bad_http, bad_http
    unexpected = [r for r in http_results if r["expect"] is not None and r["status"] != r["expect"]]
    assert not unexpected, unexpected
    # A refused body is answered in JSON, saying why (the unsubscribe pages answer people in HTML).
    body_refusals = [r for r in http_results if r["expect"] is not None and not r["json"]]
    assert not body_refusals, body_refusals
    assert not unclear, unclear[:5]
    mute = [r for r in http_results if len(r["message"]) < 10]
    assert not mute, mute
    assert not crashes
    assert ok_admin[0] == 200
    assert all(r["outcome"] == "ignored" for r in forged_results), forged_results
    assert not dead_forged, "a valid answer reached a dead-letter topic"


@pytest.mark.parametrize("page", ["/router", "/router/", "/table", "/table/"])
async def test_faust_own_pages_are_not_served(services: dict[str, ServiceProcess], page: str) -> None:
    """faust's /router and /table pages would tell anyone the cluster's workers and tables."""
    async with httpx.AsyncClient(timeout=10) as client:
        for name in WEB_SERVICES:
            response = await client.get(services[name].url + page)
            assert response.status_code == 404, (name, page, response.status_code, response.text[:200])


# --- after each kind of malformed message, the next valid one is processed, on every consumed topic --

#: Three kinds of malformed message, each followed by a valid event on the same key (so the same partition).
def _malformed(topic: str, good: bytes) -> list[tuple[str, bytes]]:
    bad_data = json.loads(good)
    bad_data["id"] = str(uuid.uuid4())
    bad_data["data"][ENUM_FIELDS[topic]] = "not-a-known-value"
    return [("invalid json", b'{"specversion": "1.0", "id": '),
            ("json that is not an envelope", json.dumps({"hello": "world"}).encode()),
            ("envelope with bad data", json.dumps(bad_data).encode())]


@dataclass(frozen=True)
class Effect:
    """What one service does with a valid event, as a query in its schema counting the rows it leaves."""

    service: str
    sql: str
    arg: Any


def _valid_event(topic: str, run: str, n: int, event_id: str) -> tuple[str, Any, list[Effect]]:
    """A valid event for `topic` (the `n`th of three), its Kafka key and what each consumer of the topic
    must do with it. The fan-out notices are the exception to "a visible change": a merger notice fans out
    to the whole directory, so only the first starts a job and the two after it replay it (same
    transaction); an immaterial policy change changes nothing. For those, and for acks of commands the
    services never issued, the effect is the event's idempotency claim: it commits in the transaction that
    applies the event, so it is there only if the handler ran to its end."""
    subject = f"hx-{run}-{n}-{topic.replace('.', '-')}"

    def claimed(*services: str) -> list[Effect]:
        return [Effect(s, f"SELECT count(*) FROM {s}.processed_events WHERE event_id = $1", event_id)
                for s in services]

    if topic == USER_REGISTERED:
        return subject, UserRegistered(email=f"{subject}@hostile-after.example", country="SE"), [
            Effect("consent", "SELECT count(*) FROM consent.registrations WHERE event_id = $1", event_id),
            Effect("dsar", "SELECT count(*) FROM dsar.subject_activity WHERE subject = $1", subject),
            Effect("notifier", "SELECT count(*) FROM notifier.recipients WHERE subject = $1", subject)]
    if topic == CONSENT_CHANGED:
        return subject, ConsentChanged(purpose="analytics", granted=True, channel="api", policy_version="v1"), [
            Effect("consent", "SELECT count(*) FROM consent.consent_ledger WHERE entry_id = $1", f"{event_id}:analytics"),
            Effect("dsar", "SELECT count(*) FROM dsar.subject_activity WHERE subject = $1", subject)]
    if topic == DSAR_REQUESTED:
        request_id = uuid.uuid4()
        return subject, DsarRequested(
            request_id=request_id, right="objection", identity_verified=True, requested_via="web_form",
            details=DsarDetails(processing="marketing")), [
            Effect("consent", "SELECT count(*) FROM consent.consent_ledger WHERE entry_id = $1",
                   f"{event_id}:marketing_email"),
            Effect("dsar", "SELECT count(*) FROM dsar.cases WHERE request_id = $1", request_id)]
    if topic == ERASURE_REQUESTED:
        request_id = uuid.uuid4()
        return subject, ErasureRequested(request_id=request_id, ground="no_longer_necessary",
                                         identity_verified=False, requested_via="email"), [
            Effect("dsar", "SELECT count(*) FROM dsar.cases WHERE request_id = $1", request_id)]
    if topic == PRIVACY_ACKS:
        return subject, PrivacyAck(command_id=uuid.uuid4(), system="accounts", status="done"), claimed(
            "consent", "dsar")
    if topic.startswith(COMMAND_TOPIC_PREFIX):
        system = topic.removeprefix(COMMAND_TOPIC_PREFIX)
        command_id = uuid.uuid4()
        return subject, PrivacyCommand(command_id=command_id, system=system, action="export",
                                       request_id=uuid.uuid4(), respond_by=datetime.now(UTC) + timedelta(days=1)), [
            Effect(system, f"SELECT count(*) FROM {system}.handled_commands WHERE command_id = $1", command_id)]
    if topic == DSAR_STATUS:
        request_id = uuid.uuid4()
        return subject, DsarStatus(request_id=request_id, right="erasure", status="awaiting_systems",
                                   due_at=datetime.now(UTC) + timedelta(days=30), extended=False), [
            Effect("notifier", "SELECT count(*) FROM notifier.erasure_holds WHERE request_id = $1", str(request_id))]
    if topic == NOTIFICATION_REQUESTED:
        notification_id = f"test:hostile:{subject}"
        return subject, NotificationRequested(
            notification_id=notification_id, template="verification_code", category="transactional", locale="sv",
            params={"code": "123456", "expires_minutes": 30}), [
            Effect("notifier", "SELECT count(*) FROM notifier.emails WHERE notification_id = $1", notification_id)]
    if topic == LEGAL_DISCLOSURE:
        return subject, LegalDisclosure(
            case_ref=f"case-{subject}", authority="Polismyndigheten", legal_basis="RB 27:1",
            data_categories=["contact"], may_notify_subject=False, recipient_country="SE", outside_eea=False), [
            Effect("notifier", "SELECT count(*) FROM notifier.audit_log "
                               "WHERE action = 'legal_disclosure_received' AND ref = $1", event_id)]
    if topic == MERGER_NOTICE:
        transaction_id = f"tx-hostile-{run}"
        effects = claimed("notifier")
        if n == 0:
            effects.append(Effect("notifier", "SELECT count(*) FROM notifier.fanout_jobs WHERE notice_id = $1",
                                  transaction_id))
        return transaction_id, MergerNotice(
            transaction_id=transaction_id, kind="merger", counterparty="Other AB", effective_date=date(2027, 1, 1),
            data_categories=["contact"], notice_url="https://isopartner.se/merger"), effects
    if topic == POLICY_CHANGED:
        version = f"v-hostile-{run}-{n}"
        return version, PolicyChanged(
            version=version, effective_date=date(2027, 1, 1), material=False, summary_sv="Stavfel",
            summary_en="Typos", url="https://isopartner.se/p"), claimed("notifier")
    raise AssertionError(f"no valid event for {topic}: a new consumed topic needs one here")


async def test_each_consumer_processes_the_valid_event_after_each_kind_of_malformed_one(stack: Stack, services: dict[str, ServiceProcess]) -> None:
    """For every topic every service consumes: invalid JSON, JSON that is not an envelope and an envelope
    with bad data, each followed on the same key by a valid event. Each malformed message is dead-lettered
    by every consumer of its topic, and each valid one after it has its effect in every consumer. All
    messages are published first, then every outcome is awaited together."""
    bootstrap = stack.endpoints.kafka_bootstrap
    run = uuid.uuid4().hex[:8]
    expected: list[tuple[str, str, Effect]] = []  # (topic, kind of malformed message before it, effect)
    bad: dict[tuple[str, int, int], str] = {}  # where each malformed message went -> its kind
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic in CONSUMED:
            for n in range(3):
                event_id = str(uuid.uuid4())
                key, data, effects = _valid_event(topic, run, n, event_id)
                subject = None if topic in (MERGER_NOTICE, POLICY_CHANGED) else key
                good = new_event(topic, data, source="urn:test", subject=subject, id=event_id).model_dump_json()
                kind, value = _malformed(topic, good.encode())[n]
                meta = await producer.send_and_wait(topic, key=key.encode(), value=value)
                bad[(topic, meta.partition, meta.offset)] = kind
                after = await producer.send_and_wait(topic, key=key.encode(), value=good.encode())
                assert after.partition == meta.partition
                expected += [(topic, kind, effect) for effect in effects]
    finally:
        await producer.stop()
    assert {(t, e.service) for t, _, e in expected} == {(t, s) for t in CONSUMED for s in consumers_of(t)}, (
        "every consumer of every topic has an effect to show")

    conn = await asyncpg.connect(stack.endpoints.database_url)
    try:
        async def missing_effects() -> list[str]:
            return [f"{e.service} on {topic} after {kind}" for topic, kind, e in expected
                    if not await conn.fetchval(e.sql, e.arg)]

        async def all_applied() -> bool:
            return not await missing_effects()

        try:
            await wait_until(all_applied, timeout=60, interval=0.5, what="every valid event after a malformed one")
        except AssertionError:
            raise AssertionError(f"not processed: {await missing_effects()}") from None
    finally:
        await conn.close()

    async def undead() -> list[str]:
        by: dict[tuple[str, int, int], set[str]] = {}
        for topic in CONSUMED:
            for letter in await read_topic(bootstrap, dlq_topic(topic)):
                headers = {k: bytes(v).decode("utf-8", "replace") for k, v in letter.headers}
                where = (headers["x-original-topic"], int(headers["x-original-partition"]),
                         int(headers["x-original-offset"]))
                if where in bad:
                    by.setdefault(where, set()).add(headers.get("x-dead-lettered-by", "?"))
        return [f"{kind} on {where[0]} by {sorted(consumers_of(where[0]) - by.get(where, set()))}"
                for where, kind in bad.items() if not consumers_of(where[0]) <= by.get(where, set())]

    async def all_dead_lettered() -> bool:
        return not await undead()

    try:
        await wait_until(all_dead_lettered, timeout=30, interval=1.0, what="every malformed message dead-lettered")
    except AssertionError:
        raise AssertionError(f"not dead-lettered: {await undead()}") from None
