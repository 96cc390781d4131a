"""The system fault runs' shared parts: the workload, the external systems, the faults, and the checks.

`tests/reliability/test_system_faults.py` (one process per service) and
`tests/reliability/test_replica_faults.py` (two per service in one consumer group) both run the same
mixed workload of more than 10,000 events against real service processes, inject faults, wait until the
system has settled and compare what it left with what a run without faults gives (see `build_workload`
and `assess`).

A run is isolated from the rest of the test session (`isolated_system`): the services use a database of
their own, created for the run, and consumer groups of their own whose offsets start at the end of every
topic they consume. Without that, a run inherited whatever earlier tests had left on the shared topics
and in the shared schemas (thousands of directory entries, the merger notices of other tests, each
fanned out to all of them), and whether it settled in time depended on how much that was.

Waits are on conditions: the run has settled when every case is closed, every command acknowledged,
no email is queued or being sent, and every consumer group has committed the end of every topic it
consumes (so no event is still on its way to a handler that could add a row).

A second copy of an email is accepted only as the documented crash window of
services/notifier/delivery.py, on evidence rather than timing: its first copy was the last message of
its SMTP session (the sink records the client's port in `Received`), and a fault ended that session
after it (the notifier process was SIGKILLed or the sink stopped) with at most one such copy per
notifier process the fault cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import json
import os
import random
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from privacy_runtime.datamap import load_data_map
from privacy_runtime.settings import DEFAULT_DATA_MAP
from schemas.enums import (
    ConsentChannel,
    ErasureGround,
    Locale,
    MergerKind,
    Purpose,
    RegistrationSource,
    RequestedVia,
    Right,
)
from schemas.envelope import new_event
from schemas.events import (
    ConsentChanged,
    ConsentGrant,
    DsarDetails,
    DsarRequested,
    ErasureRequested,
    EventData,
    MergerNotice,
    PrivacyAck,
    UserRegistered,
)
from schemas.topics import (
    CONSENT_CHANGED,
    DLQ_TOPICS,
    DSAR_REQUESTED,
    ERASURE_REQUESTED,
    EXTERNAL_SYSTEMS,
    MERGER_NOTICE,
    PRIVACY_ACKS,
    USER_REGISTERED,
    command_topic,
)
from services.dsar import cases
from tests.helpers import ROOT, ServiceProcess, consumed_topics, downstream_answer, event_of, read_topic, stop_player

SEED = int(os.environ.get("FAULT_SEED", "20261125"))  # another seed, another schedule of faults
CONSENT_ONLY = 2300  # subjects known only from consent changes (4 events each)
REGISTERED = 600  # subjects with an email address in the directory
ERASURES, RESTRICTIONS, RECTIFICATIONS, ACCESSES = 60, 40, 40, 40
POLICY = "2021-10-30"
SERVICES = ("consent", "dsar", "notifier")

CONSUMED: dict[str, tuple[str, ...]] = {service: consumed_topics(service) for service in SERVICES}

SERVICE_ENV: dict[str, dict[str, str]] = {
    # Re-sends only matter if something was lost; keep them rare so they do not hide a loss for long.
    "consent": {"COMMAND_RESEND_BASE_SECONDS": "15"},
    "dsar": {"COMMAND_RESEND_BASE_SECONDS": "15"},
    "notifier": {
        "EMAIL_RETRY_BASE_SECONDS": "0.5",
        "EMAIL_RETRY_MAX_SECONDS": "2",
        "EMAIL_IDLE_POLL_SECONDS": "0.2",
        "EMAIL_LEASE_SECONDS": "15",  # rows a killed sender held are retaken after this
        # One sending lane, one email per transaction: crash_window_copies allows one copy per notifier
        # process a fault cuts off (the email in flight on its one connection). Several lanes' and groups'
        # crash window: tests/notifier/test_lanes.py.
        "SMTP_CONNECTIONS": "1",
        "EMAILS_PER_SEND_TRANSACTION": "1",
    },
}

Message = tuple[str, bytes, bytes]  # topic, key, value
CommandKey = tuple[str, str, str, str]  # owner (subject or request id), system, action, purpose or "-"


# --- the workload and what a run without faults leaves behind ---------------------------------------------


@dataclass
class Workload:
    run: str
    prefix: str = ""
    domain: str = ""
    consent_only: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)
    restricted: list[str] = field(default_factory=list)
    rectified: list[str] = field(default_factory=list)
    accessed: list[str] = field(default_factory=list)
    opted_out: set[str] = field(default_factory=set)
    requests: dict[str, tuple[str, str]] = field(default_factory=dict)  # request_id -> (subject, right)
    transaction_id: str = ""
    first_wave: list[Message] = field(default_factory=list)
    second_wave: list[Message] = field(default_factory=list)
    merger: list[Message] = field(default_factory=list)
    # expectations
    ledger_rows: dict[str, int] = field(default_factory=dict)
    states: dict[tuple[str, str], bool] = field(default_factory=dict)
    consent_commands: Counter[CommandKey] = field(default_factory=Counter)
    dsar_commands: Counter[CommandKey] = field(default_factory=Counter)
    emails: dict[str, str] = field(default_factory=dict)  # notification id -> subject (exactly once)
    erasure_received: dict[str, str] = field(default_factory=dict)  # at most once (see module doc)
    no_merger: set[str] = field(default_factory=set)

    @property
    def events(self) -> int:
        return len(self.first_wave) + len(self.second_wave) + len(self.merger)

    @property
    def like(self) -> str:
        return f"{self.prefix}-%"


def _message(topic: str, data: EventData, subject: str | None, key: str, when: datetime | None = None) -> Message:
    event = new_event(topic, data, subject=subject, source="urn:test:faults", time=when)
    return topic, key.encode(), event.model_dump_json().encode()


def build_workload(rng: random.Random) -> Workload:
    run = uuid.uuid4().hex[:8]
    w = Workload(run=run, prefix=f"sf{run}", domain=f"sf{run}.example", transaction_id=f"tx-sf{run}")
    data_map = load_data_map(DEFAULT_DATA_MAP)
    base = datetime.now(UTC) - timedelta(hours=2)

    w.registered = [f"{w.prefix}-r{i:04d}" for i in range(REGISTERED)]
    w.consent_only = [f"{w.prefix}-c{i:05d}" for i in range(CONSENT_ONLY)]
    picked = list(w.registered)
    rng.shuffle(picked)
    cut = [ERASURES, RESTRICTIONS, RECTIFICATIONS, ACCESSES]
    w.erased, picked = picked[: cut[0]], picked[cut[0] :]
    w.restricted, picked = picked[: cut[1]], picked[cut[1] :]
    w.rectified, picked = picked[: cut[2]], picked[cut[2] :]
    w.accessed = picked[: cut[3]]
    erased = set(w.erased)

    # Wave 1: registrations (marketing email and partner sharing granted), then consent changes.
    for subject in w.registered:
        w.first_wave.append(_message(USER_REGISTERED, UserRegistered(
            email=f"{subject}@{w.domain}", name=f"Person {subject[-4:]}", locale=Locale.SV, country="SE",
            source=RegistrationSource.WEB,
            consents=[ConsentGrant(purpose=Purpose.MARKETING_EMAIL, granted=True),
                      ConsentGrant(purpose=Purpose.PARTNER_SHARING, granted=True)],
        ), subject, subject, base))
        w.ledger_rows[subject] = 0 if subject in erased else 2
        if subject not in erased:
            w.states[(subject, "marketing_email")] = True
            w.states[(subject, "partner_sharing")] = True
    changes: list[Message] = []
    for i, subject in enumerate(w.consent_only):
        def change(purpose: str, granted: bool, channel: str, minutes: int, s: str = subject) -> Message:
            return _message(CONSENT_CHANGED, ConsentChanged(
                purpose=Purpose(purpose), granted=granted, channel=ConsentChannel(channel), policy_version=POLICY,
            ), s, s, base + timedelta(minutes=minutes))

        changes += [change("marketing_email", True, "preference_center", 1),
                    change("partner_sharing", True, "preference_center", 2),
                    change("marketing_email", False, "email_footer", 3)]
        w.consent_commands[(subject, "marketing_email", "suppress", "marketing_email")] += 1
        w.states[(subject, "marketing_email")] = False
        w.states[(subject, "partner_sharing")] = False
        if i % 2 == 0:
            changes.append(change("partner_sharing", False, "preference_center", 4))
            w.ledger_rows[subject] = 4
            w.consent_commands[(subject, "partners", "revoke_sharing", "partner_sharing")] += 1
        else:  # Global Privacy Control: withdraws every kind of sharing at once
            changes.append(change("partner_sharing", False, "gpc", 4))
            w.ledger_rows[subject] = 6
            w.states[(subject, "third_party_marketing")] = False
            w.states[(subject, "group_sharing")] = False
            w.consent_commands[(subject, "partners", "revoke_sharing", "partner_sharing")] += 1
            w.consent_commands[(subject, "partners", "revoke_sharing", "third_party_marketing")] += 1
            w.consent_commands[(subject, "ipcom_group", "revoke_sharing", "group_sharing")] += 1
    opt_outs: list[Message] = []
    for i, subject in enumerate(w.registered):
        if subject in erased or i % 2:
            continue
        w.opted_out.add(subject)
        opt_outs.append(_message(CONSENT_CHANGED, ConsentChanged(
            purpose=Purpose.MARKETING_EMAIL, granted=False, channel=ConsentChannel.EMAIL_FOOTER, policy_version=POLICY,
        ), subject, subject, base + timedelta(minutes=30)))
        w.ledger_rows[subject] += 1
        w.states[(subject, "marketing_email")] = False
        w.consent_commands[(subject, "marketing_email", "suppress", "marketing_email")] += 1
    step = max(1, len(changes) // max(1, len(opt_outs)))
    for n, message in enumerate(opt_outs):  # spread the footer opt-outs through the consent changes
        changes.insert(min(len(changes), (n + 1) * step + n), message)
    w.first_wave += changes

    # Wave 2: rights requests, each verified; plans from the data map as the dsar service makes them.
    def plan(right: str) -> tuple[cases.Step, ...]:
        if right == cases.ERASURE:
            return cases.erasure_plan(data_map)
        if right == cases.RESTRICTION:
            return cases.restriction_plan(data_map)
        if right == cases.RECTIFICATION:
            return cases.rectification_plan(data_map, ["name"])
        return cases.export_plan(data_map)

    for right, subjects in ((cases.ERASURE, w.erased), (cases.RESTRICTION, w.restricted),
                            (cases.RECTIFICATION, w.rectified), (cases.ACCESS, w.accessed)):
        for subject in subjects:
            request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            w.requests[request_id] = (subject, right)
            if right == cases.ERASURE:
                w.second_wave.append(_message(ERASURE_REQUESTED, ErasureRequested(
                    request_id=uuid.UUID(request_id), ground=ErasureGround.CONSENT_WITHDRAWN, identity_verified=True,
                    requested_via=RequestedVia.WEB_FORM,
                ), subject, subject))
                w.erasure_received[f"dsar:{request_id}:received"] = subject
                w.emails[f"dsar:{request_id}:completed"] = subject
            else:
                details: dict[str, Any] = {}
                if right == cases.RESTRICTION:
                    details = {"circumstance": "accuracy_contested"}
                elif right == cases.RECTIFICATION:
                    details = {"corrections": {"name": f"Rättat Namn {subject[-4:]}"}}
                w.second_wave.append(_message(DSAR_REQUESTED, DsarRequested(
                    request_id=uuid.UUID(request_id), right=Right(right), identity_verified=True,
                    requested_via=RequestedVia.WEB_FORM,
                    details=DsarDetails.model_validate(details),
                ), subject, subject))
                w.emails[f"dsar:{request_id}:received"] = subject
                if right == cases.ACCESS:
                    w.emails[f"dsar:{request_id}:export_ready"] = subject
                else:  # request_completed: what was done and which systems were told
                    w.emails[f"dsar:{request_id}:completed"] = subject
            for s in plan(right):
                w.dsar_commands[(request_id, s.system, s.action, s.purpose or "-")] += 1
    rng.shuffle(w.second_wave)

    # Wave 3: the merger notice reaches everyone in the directory but the erased (gone) and the
    # restricted (only notices about their own requests).
    w.merger.append(_message(MERGER_NOTICE, MergerNotice(
        transaction_id=w.transaction_id, kind=MergerKind.ACQUISITION, counterparty="Acme Holding AB",
        effective_date=date(2026, 3, 1), data_categories=["contact", "account"],
        notice_url="https://isopartner.se/fusion",
    ), None, w.transaction_id))
    w.no_merger = erased | set(w.restricted)
    for subject in w.registered:
        if subject not in w.no_merger:
            w.emails[f"{MERGER_NOTICE}:{w.transaction_id}:{subject}"] = subject
    return w


# --- Kafka: publishing through broker restarts, and the external systems -------------------------------


async def send_reliably(producer: AIOKafkaProducer, messages: list[Message], deadline: float) -> None:
    """Send every message at least once: whatever fails (the broker restarting) is sent again, the same
    bytes, so a consumer sees at most a redelivery of an event id it already has."""
    pending = messages
    delay = 0.2
    while pending:
        failed: list[Message] = []
        sent: list[tuple[Message, asyncio.Future[Any]]] = []
        for message in pending:
            topic, key, value = message
            try:
                sent.append((message, await producer.send(topic, key=key, value=value)))
            except Exception:
                failed.append(message)
        for message, future in sent:
            try:
                await future
            except Exception:
                failed.append(message)
        pending = failed
        if pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(pending)} messages could not be published")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def publish_paced(bootstrap: str, messages: list[Message], *, chunk: int, pause: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for start in range(0, len(messages), chunk):
            await send_reliably(producer, messages[start : start + chunk], time.monotonic() + 120)
            await asyncio.sleep(pause)
    finally:
        await producer.stop()


class Systems:
    """The 8 external systems: every command on their topics is answered on `privacy-acks` at once, a
    re-sent command (same command_id) again, as a real system does. What they saw is kept by command id."""

    def __init__(self, bootstrap: str, prefix: str):
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.seen: dict[str, CommandKey] = {}
        self.deliveries = 0
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        await self._producer.start()
        partitions = []
        for system in EXTERNAL_SYSTEMS:
            topic = command_topic(system)
            found = self._consumer.partitions_for_topic(topic)
            if not found:
                await self._consumer._client.force_metadata_update()
                found = self._consumer.partitions_for_topic(topic) or set()
            partitions += [(topic, p) for p in sorted(found)]
        tps = [TopicPartition(t, p) for t, p in partitions]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now: only commands from here on are ours
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await stop_player(self._task, self._consumer, self._producer)

    async def _run(self) -> None:
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200)
            except Exception:  # the broker restarting
                await asyncio.sleep(0.5)
                continue
            acks: list[Message] = []
            for records in batches.values():
                for record in records:
                    event = event_of(record)
                    if event is None or not str(event.get("subject", "")).startswith(self.prefix):
                        continue  # another test's command on the shared topic
                    acks.append(self._answer(event["subject"], event["data"]))
            if acks:
                await send_reliably(self._producer, acks, time.monotonic() + 300)

    def _answer(self, subject: str, data: dict[str, Any]) -> Message:
        self.deliveries += 1
        owner = data.get("request_id") or subject
        self.seen[data["command_id"]] = (owner, data["system"], data["action"], data.get("purpose") or "-")
        ack = downstream_answer(subject, data)
        return _message(PRIVACY_ACKS, PrivacyAck.model_validate(ack), subject, subject)


# --- the services, isolated from the rest of the session ---------------------------------------------------


@dataclass
class SystemEnv:
    """How the run's service processes are started: the stack's endpoints, with the run's own database
    and consumer groups."""

    stack_env: dict[str, str]
    dsn: str
    groups: dict[str, str]

    def service_env(self, service: str, consent_url: str) -> dict[str, str]:
        env = {**SERVICE_ENV[service], "CONSUMER_GROUP": self.groups[service]}
        if service == "notifier":
            env.update({"CONSENT_BASE_URL": consent_url, "CONSENT_PUBLIC_URL": consent_url})
        return env

    def process(self, service: str, consent_url: str, port: int | None = None) -> ServiceProcess:
        extra = self.service_env(service, consent_url)
        if port is None:
            return ServiceProcess(service, self.stack_env, extra).start()
        return ServiceProcess(service, self.stack_env, extra, port=port).start()


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _start_groups_at_the_end(bootstrap: str, groups: dict[str, str]) -> None:
    """Commit, for each service's new group, the current end of every topic it consumes: the run's
    services see only what is published from now on (the run's own events), none of the session's."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        for service, group in groups.items():
            tps = []
            for topic in CONSUMED[service]:
                found = reader.partitions_for_topic(topic)
                if not found:
                    await reader._client.force_metadata_update()
                    found = reader.partitions_for_topic(topic) or set()
                tps += [TopicPartition(topic, p) for p in sorted(found)]
            ends = await reader.end_offsets(tps)
            committer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
            await committer.start()
            try:
                committer.assign(tps)
                await committer.commit({tp: OffsetAndMetadata(ends[tp], "") for tp in tps})
            finally:
                await committer.stop()
    finally:
        await reader.stop()


@contextlib.asynccontextmanager
async def isolated_system(stack: Any, run: str) -> AsyncIterator[SystemEnv]:
    """A database of the run's own (dropped afterwards) and consumer groups that start at the end of the
    topics. Against an external database that refuses CREATE DATABASE, the shared one is used."""
    env = dict(stack.env())
    shared = env["DATABASE_URL"]
    database = f"faults_{run}"
    created = False
    try:
        conn = await asyncpg.connect(shared, timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{database}"')
            created = True
        finally:
            await conn.close()
    except asyncpg.PostgresError:
        database = ""
    dsn = _with_database(shared, database) if created else shared
    env["DATABASE_URL"] = dsn
    groups = {service: f"faults-{run}-{service}" for service in SERVICES}
    await _start_groups_at_the_end(stack.endpoints.kafka_bootstrap, groups)
    try:
        yield SystemEnv(env, dsn, groups)
    finally:
        if created:
            with contextlib.suppress(Exception):
                conn = await asyncpg.connect(shared, timeout=10)
                try:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                finally:
                    await conn.close()


async def lagging(bootstrap: str, groups: dict[str, str]) -> list[str]:
    """What each group has not committed yet, as `group topic[partition] committed/end`: empty once every
    group has committed the end of every topic it consumes (no event is on its way anywhere)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await reader.start()
    behind: list[str] = []
    try:
        for service, group in groups.items():
            committed = await admin.list_consumer_group_offsets(group)
            tps = [tp for tp in committed if tp.topic in CONSUMED[service]]
            if not tps:
                behind.append(f"{group}: no offsets")
                continue
            ends = await reader.end_offsets(tps)
            behind += [f"{group} {tp.topic}[{tp.partition}] {committed[tp].offset}/{ends[tp]}"
                       for tp in tps if committed[tp].offset < ends[tp]]
        return behind
    finally:
        await reader.stop()
        await admin.close()


# --- faults ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cut:
    """A moment (epoch seconds) at which SMTP sessions ended abruptly, and how many messages that could
    have left accepted but unconfirmed (one per notifier process whose sessions it ended)."""

    at: float
    senders: int
    what: str


class Faults:
    """Faults on the run's processes (`services`: label -> process; the label's prefix is the service)."""

    def __init__(self, stack: Any, system: SystemEnv, services: dict[str, ServiceProcess], rng: random.Random):
        self.stack = stack
        self.system = system
        self.services = services
        self.rng = rng
        self.began = time.monotonic()
        self.began_wall = time.time()
        self.injected: list[str] = []
        #: Where an email accepted by the relay may have been left unconfirmed (the crash window).
        self.cuts: list[Cut] = []

    def now(self) -> float:
        return time.monotonic() - self.began

    def note(self, what: str) -> None:
        entry = f"{self.now():6.1f}s {what}"
        self.injected.append(entry)
        print(f"[faults] {entry}", flush=True)

    def consent_url(self) -> str:
        live = [p for label, p in self.services.items()
                if label.startswith("consent") and p.process is not None and p.process.poll() is None]
        return (live or [p for label, p in self.services.items() if label.startswith("consent")])[0].url

    def kill(self, label: str) -> ServiceProcess:
        old = self.services[label]
        old.kill()
        if old.name == "notifier":
            self.cuts.append(Cut(time.time(), 1, f"{label} SIGKILL"))
        self.note(f"{label} SIGKILL")
        return old

    async def kill_and_restart(self, label: str) -> None:
        old = self.kill(label)
        await asyncio.sleep(self.rng.uniform(0.3, 2.0))
        new = self.system.process(old.name, self.consent_url(), port=old.port)
        self.services[label] = new
        await new.wait_ready(timeout=120)
        self.note(f"{label} restarted and ready")

    async def restart_kafka(self) -> None:
        if self.stack.kafka is None:
            self.note("kafka broker restart skipped (external broker)")
            return
        self.note("kafka broker restart begins")
        await self.stack.kafka.restart()
        self.note("kafka broker back")

    async def restart_postgres(self) -> None:
        if self.stack.postgres is None:
            self.note("postgresql restart skipped (external database)")
            return
        self.note("postgresql restart begins")
        await self.stack.postgres.restart()
        self.note("postgresql back")

    async def smtp_down(self, seconds: float) -> None:
        if self.stack.smtp is None:
            self.note("smtp outage skipped (external relay)")
            return
        await self.stack.smtp.stop()
        notifiers = sum(1 for p in self.services.values()
                        if p.name == "notifier" and p.process is not None and p.process.poll() is None)
        self.cuts.append(Cut(time.time(), notifiers, "smtp sink stopped"))
        self.note(f"smtp sink stopped for {seconds:.1f}s")
        await asyncio.sleep(seconds)
        await self.stack.smtp.start()
        self.note("smtp sink back")

    async def smtp_refusing(self, seconds: float) -> None:
        if self.stack.smtp is None:
            self.note("smtp 451 skipped (external relay)")
            return
        self.stack.smtp.refuse(True)
        self.note(f"smtp sink answers 451 for {seconds:.1f}s")
        try:
            await asyncio.sleep(seconds)
        finally:
            self.stack.smtp.refuse(False)
        self.note("smtp sink accepts again")

    async def run_schedule(self, schedule: list[tuple[float, str, Callable[[], Awaitable[None]]]]) -> None:
        """Each fault at its time (or as soon as the one before has finished)."""
        for at, _name, fault in sorted(schedule, key=lambda item: item[0]):
            wait = at - (time.monotonic() - self.began)
            if wait > 0:
                await asyncio.sleep(wait)
            await fault()


# --- observing the state -----------------------------------------------------------------------------------


async def query(dsn: str, work: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return await work(conn)
    finally:
        await conn.close()


async def poll(check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 1.0) -> bool:
    """True once `check` is; False after `timeout`. A check that fails (the database restarting) is a no."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await check():
                return True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, KafkaError):
            pass
        await asyncio.sleep(interval)
    return False


def mail_files(stack: Any, domain: str) -> list[Path]:
    return sorted(Path(stack.endpoints.mail_dir).glob(f"*@{domain}.eml"))


@dataclass(frozen=True)
class Arrival:
    at: float  # epoch seconds, from the sink's file name
    session: str  # the client's address and port, from the sink's Received header


_PEER = re.compile(r"\(\[([^\]]*)\](?::(\d+))?\)")


@dataclass
class Mailbox:
    """Every stored message to the run's domain: the copies of each (recipient, Message-ID), and each SMTP
    session's arrival times."""

    copies: dict[tuple[str, str], list[Arrival]]
    sessions: dict[str, list[float]]


def delivered(stack: Any, domain: str) -> Mailbox:
    parser = BytesParser(policy=email.policy.default)
    copies: dict[tuple[str, str], list[Arrival]] = defaultdict(list)
    sessions: dict[str, list[float]] = defaultdict(list)
    for path in mail_files(stack, domain):
        with open(path, "rb") as fh:
            headers = parser.parse(fh, headersonly=True)
        key = (str(headers["Delivered-To"]).strip(), str(headers["Message-ID"]).strip())
        peer = _PEER.search(str(headers["Received"] or ""))
        session = f"{peer.group(1)}:{peer.group(2)}" if peer and peer.group(2) else "unknown"
        arrival = Arrival(int(path.name.split("-", 1)[0]) / 1e9, session)
        copies[key].append(arrival)
        sessions[session].append(arrival.at)
    for times in sessions.values():
        times.sort()
    for arrivals in copies.values():
        arrivals.sort(key=lambda a: a.at)
    return Mailbox(dict(copies), dict(sessions))


def crash_window_copies(mailbox: Mailbox, redelivered: Iterable[list[Arrival]], cuts: list[Cut]) -> int:
    """How many second copies the crash window explains. A copy qualifies for a cut when its first copy
    came before the cut and was the last message of its SMTP session up to it (the cut ended that
    session right after it); each cut explains at most `senders` copies. Copies are matched to cuts
    most constrained first, each to the earliest cut it qualifies for that has room."""
    ordered = sorted(cuts, key=lambda c: c.at)
    candidates: list[list[int]] = []
    for arrivals in redelivered:
        if len(arrivals) != 2 or arrivals[0].session == "unknown":
            continue
        first = arrivals[0]
        session = mailbox.sessions.get(first.session, [])
        valid = [i for i, cut in enumerate(ordered)
                 if cut.at >= first.at and not any(first.at < t <= cut.at for t in session)]
        if valid:
            candidates.append(valid)
    room = [cut.senders for cut in ordered]
    explained = 0
    for valid in sorted(candidates, key=lambda v: (v[-1], v[0])):
        for i in valid:
            if room[i] > 0:
                room[i] -= 1
                explained += 1
                break
    return explained


async def observe(dsn: str, w: Workload) -> dict[str, Any]:
    async def read(conn: asyncpg.Connection) -> dict[str, Any]:
        request_ids = [uuid.UUID(r) for r in w.requests]
        return {
            "ledger": await conn.fetch(
                "SELECT subject, count(*) AS n, count(DISTINCT (purpose, effective_at, granted)) AS d "
                "FROM consent.consent_ledger WHERE subject LIKE $1 GROUP BY subject", w.like),
            "states": await conn.fetch(
                "SELECT subject, purpose, granted FROM consent.consent_state WHERE subject LIKE $1", w.like),
            "consent_commands": await conn.fetch(
                "SELECT command_id, subject, system, action, purpose, acked_at FROM consent.commands "
                "WHERE subject LIKE $1", w.like),
            "cases": await conn.fetch(
                "SELECT request_id, subject, case_right, status FROM dsar.cases WHERE request_id = ANY($1::uuid[])",
                request_ids),
            "dsar_commands": await conn.fetch(
                "SELECT command_id, request_id, system, action, purpose, acked_at FROM dsar.commands "
                "WHERE request_id = ANY($1::uuid[])", request_ids),
            "emails": await conn.fetch(
                "SELECT notification_id, subject, status, message_id, origin FROM notifier.emails "
                "WHERE subject LIKE $1", w.like),
            "fanout_done": await conn.fetchval(
                "SELECT done FROM notifier.fanout_jobs WHERE job_id = $1", f"{MERGER_NOTICE}:{w.transaction_id}"),
            "erased_keys_left": sum([
                await conn.fetchval(f"SELECT count(*) FROM {schema}.subject_keys WHERE subject = ANY($1::text[])",
                                    w.erased)
                for schema in ("consent", "dsar", "notifier")
            ]),
            "erased_recipients_left": await conn.fetchval(
                "SELECT count(*) FROM notifier.recipients WHERE subject = ANY($1::text[])", w.erased),
        }

    return dict(await query(dsn, read))


async def wait_settled(stack: Any, system: SystemEnv, w: Workload, timeout: float) -> str | None:
    """Until nothing is left to happen: every case closed, every command acknowledged, no email queued or
    being sent, the ledger complete, every expected email stored, and every consumer group caught up with
    every topic it consumes (an event still on its way could add a row after the check). None once
    settled, else what was still pending when `timeout` ran out."""
    bootstrap = stack.endpoints.kafka_bootstrap
    pending = ["not checked yet"]

    async def settled() -> bool:
        seen = await observe(system.dsn, w)
        waiting = {
            "fan-out not done": not seen["fanout_done"],
            "cases open": len(seen["cases"]) < len(w.requests)
            or any(r["status"] not in cases.TERMINAL for r in seen["cases"]),
            "commands unacknowledged": any(
                r["acked_at"] is None for r in [*seen["consent_commands"], *seen["dsar_commands"]]),
            "emails queued or sending": any(r["status"] in ("queued", "sending") for r in seen["emails"]),
            "ledger incomplete": sum(r["n"] for r in seen["ledger"]) < sum(w.ledger_rows.values()),
            "emails not all stored": len(mail_files(stack, w.domain)) < len(w.emails),
        }
        pending[:] = [what for what, still in waiting.items() if still]
        if not pending:
            pending[:] = await lagging(bootstrap, system.groups)
        return not pending

    if await poll(settled, timeout=timeout, interval=2.0):
        return None
    return "; ".join(pending[:10])


def compare(expected: Counter[Any], observed: Counter[Any]) -> tuple[int, int]:
    missing = sum(max(0, n - observed.get(k, 0)) for k, n in expected.items())
    extra = sum(max(0, n - expected.get(k, 0)) for k, n in observed.items())
    return missing, extra


def assess(w: Workload, seen: dict[str, Any], mailbox: Mailbox, systems: Systems,
           dead_letters: int, faults: Faults) -> dict[str, Any]:
    report: dict[str, Any] = {}

    ledger_observed = Counter({r["subject"]: r["n"] for r in seen["ledger"]})
    ledger_missing, ledger_extra = compare(Counter(w.ledger_rows), ledger_observed)
    ledger_extra += sum(r["n"] - r["d"] for r in seen["ledger"])  # same change recorded twice
    report["ledger_rows"] = {"expected": sum(w.ledger_rows.values()), "observed": sum(ledger_observed.values()),
                             "missing": ledger_missing, "duplicated": ledger_extra}

    states = {(r["subject"], r["purpose"]): r["granted"] for r in seen["states"]}
    wrong = sum(1 for k, v in w.states.items() if k in states and states[k] != v)
    report["consent_states"] = {"expected": len(w.states), "observed": len(states),
                                "missing": sum(1 for k in w.states if k not in states), "wrong": wrong,
                                "unexpected": sum(1 for k in states if k not in w.states)}

    def commands(rows: Iterable[Any], owner: str) -> tuple[Counter[CommandKey], int]:
        counted: Counter[CommandKey] = Counter()
        open_ = 0
        for r in rows:
            counted[(str(r[owner]), r["system"], r["action"], r["purpose"] or "-")] += 1
            open_ += r["acked_at"] is None
        return counted, open_

    consent_observed, consent_open = commands(seen["consent_commands"], "subject")
    missing, extra = compare(w.consent_commands, consent_observed)
    report["consent_commands"] = {"expected": sum(w.consent_commands.values()),
                                  "observed": sum(consent_observed.values()), "missing": missing,
                                  "duplicated": extra, "unacknowledged": consent_open}
    dsar_observed, dsar_open = commands(seen["dsar_commands"], "request_id")
    missing, extra = compare(w.dsar_commands, dsar_observed)
    report["dsar_commands"] = {"expected": sum(w.dsar_commands.values()), "observed": sum(dsar_observed.values()),
                               "missing": missing, "duplicated": extra, "unacknowledged": dsar_open}

    # What the external systems received: each expected command once (by command id; a re-send of
    # the same command id is the protocol working, not a second command).
    external = Counter({k: n for k, n in (w.consent_commands + w.dsar_commands).items() if k[1] in EXTERNAL_SYSTEMS})
    received = Counter(systems.seen.values())
    missing, extra = compare(external, received)
    report["commands_at_systems"] = {"expected": sum(external.values()), "distinct_received": len(systems.seen),
                                     "deliveries": systems.deliveries, "missing": missing, "duplicated": extra}

    statuses = Counter(r["status"] for r in seen["cases"])
    report["dsar_cases"] = {"expected": len(w.requests), "observed": len(seen["cases"]),
                            "completed": statuses.get("completed", 0), "statuses": dict(statuses),
                            "missing": len(w.requests) - len(seen["cases"])}

    # Emails: every copy in the sink, matched to its notification through the Message-ID.
    rows = {r["notification_id"]: r for r in seen["emails"]}
    by_message_id = {r["message_id"]: r["notification_id"] for r in seen["emails"]}
    per_notification: Counter[str] = Counter()
    unexpected = misaddressed = 0
    again: dict[str, list[float]] = {}
    redelivered: list[list[Arrival]] = []
    for (recipient, message_id), copies in mailbox.copies.items():
        times = [a.at for a in copies]
        n = len(times)
        nid = by_message_id.get(message_id)
        if nid is None or (nid not in w.emails and nid not in w.erasure_received):
            unexpected += n
            continue
        per_notification[nid] += n
        if n > 1:  # when each copy arrived, in seconds of the fault timeline
            again[nid] = [round(t - faults.began_wall, 1) for t in sorted(times)]
            redelivered.append(copies)
        if recipient != f"{rows[nid]['subject']}@{w.domain}":
            misaddressed += n
    missing_emails = [nid for nid in w.emails if per_notification[nid] == 0]
    not_sent = [nid for nid in w.emails if nid not in rows or rows[nid]["status"] != "sent"]
    redeliveries = sum(n - 1 for n in per_notification.values() if n > 1)
    # A second copy is the crash window only when a fault cut its first copy's session right after it.
    in_windows = crash_window_copies(mailbox, redelivered, faults.cuts)
    received_sent = sum(1 for nid in w.erasure_received if per_notification[nid])
    received_cancelled = sum(1 for nid in w.erasure_received
                             if not per_notification[nid] and nid in rows and rows[nid]["status"] == "suppressed")
    received_lost = len(w.erasure_received) - received_sent - received_cancelled
    erased = set(w.erased)
    merger_rows_of_erased = sum(
        1 for r in seen["emails"] if r["origin"].startswith(MERGER_NOTICE) and r["subject"] in erased)
    report["emails"] = {
        "expected": len(w.emails), "delivered": sum(1 for nid in w.emails if per_notification[nid]),
        "missing": len(missing_emails), "missing_sample": missing_emails[:5],
        "recorded_not_sent": len(not_sent), "not_sent_sample": not_sent[:5],
        "unexpected": unexpected, "misaddressed": misaddressed,
        "smtp_redeliveries": redeliveries,
        "smtp_redeliveries_in_crash_windows": in_windows,
        "smtp_redelivered": again,
        "crash_windows": [[round(c.at - faults.began_wall, 1), c.senders, c.what] for c in faults.cuts],
        "erasure_received_sent": received_sent,
        "erasure_received_cancelled_by_erasure": received_cancelled,
        "erasure_received_lost_otherwise": received_lost,
        "merger_rows_of_erased": merger_rows_of_erased,
        "files": sum(len(copies) for copies in mailbox.copies.values()),
    }
    report["erased_subjects"] = {"keys_left": seen["erased_keys_left"],
                                 "directory_entries_left": seen["erased_recipients_left"]}
    report["dead_letters"] = dead_letters
    report["missing"] = (report["ledger_rows"]["missing"] + report["consent_states"]["missing"]
                         + report["consent_commands"]["missing"] + report["dsar_commands"]["missing"]
                         + report["commands_at_systems"]["missing"] + report["dsar_cases"]["missing"]
                         + report["emails"]["missing"] + received_lost)
    report["duplicated"] = (report["ledger_rows"]["duplicated"] + report["consent_commands"]["duplicated"]
                            + report["dsar_commands"]["duplicated"] + report["commands_at_systems"]["duplicated"]
                            + report["consent_states"]["unexpected"] + unexpected
                            + redeliveries - in_windows)
    return report


async def count_dead_letters(bootstrap: str, w: Workload) -> int:
    ours = 0
    for topic in DLQ_TOPICS:
        for message in await read_topic(bootstrap, topic):
            key = (message.key or b"").decode(errors="replace")
            if key.startswith(w.prefix) or key == w.transaction_id:
                ours += 1
    return ours




# --- the stages both fault runs go through -------------------------------------------------------------


@dataclass
class Progress:
    """What a fault run notes on its way: when each stage was reached (from the workload's start), and
    each wait that did not end within the limit (a limit only matters when something is wrong)."""

    began: float
    limit: float
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def reached(self, stage: str) -> None:
        self.timings[stage] = time.monotonic() - self.began

    async def wait(self, check: Callable[[], Awaitable[bool]], what: str, interval: float = 1.0) -> None:
        if not await poll(check, timeout=self.limit, interval=interval):
            self.notes.append(f"{what} within {self.limit:.0f} s")


async def run_waves_1_2(bootstrap: str, dsn: str, w: Workload, faults: Awaitable[None], progress: Progress) -> None:
    """Waves 1 and 2 while `faults` run, then until the erasures and restrictions are completed."""
    first = asyncio.create_task(publish_paced(bootstrap, w.first_wave, chunk=250, pause=0.5))
    registered = list(w.registered)

    async def registrations_applied() -> bool:
        async def count(conn: asyncpg.Connection) -> bool:
            ledger = await conn.fetchval(
                "SELECT count(DISTINCT subject) FROM consent.consent_ledger "
                "WHERE subject = ANY($1::text[]) AND channel = 'registration'", registered)
            directory = await conn.fetchval(
                "SELECT count(*) FROM notifier.recipients WHERE subject = ANY($1::text[])", registered)
            return bool(ledger == len(registered) and directory == len(registered))

        return bool(await query(dsn, count))

    await progress.wait(registrations_applied, "registrations were not all applied")
    progress.reached("registrations_applied")
    await publish_paced(bootstrap, w.second_wave, chunk=12, pause=0.5)
    await first
    progress.reached("waves_1_2_published")
    await faults

    erasing = [uuid.UUID(r) for r, (_, right) in w.requests.items() if right in (cases.ERASURE, cases.RESTRICTION)]

    async def erasures_and_restrictions_done() -> bool:
        done = await query(dsn, lambda c: c.fetchval(
            "SELECT count(*) FROM dsar.cases WHERE request_id = ANY($1::uuid[]) AND status = 'completed'", erasing))
        return bool(done == len(erasing))

    await progress.wait(erasures_and_restrictions_done, "erasures and restrictions were not all completed")
    progress.reached("erasures_restrictions_completed")


async def publish_merger(stack: Any, bootstrap: str, w: Workload, rng: random.Random, progress: Progress) -> None:
    """Wave 3: the merger notice, until a random number of its emails have arrived (a fault's moment)."""
    before = len(mail_files(stack, w.domain))
    await publish_paced(bootstrap, w.merger, chunk=1, pause=0)
    kill_after = rng.randrange(40, 200)

    async def some_merger_mail() -> bool:
        return len(mail_files(stack, w.domain)) >= before + kill_after

    await progress.wait(some_merger_mail, f"{kill_after} merger emails had not arrived", interval=0.2)


@dataclass(frozen=True)
class Outcome:
    seen: dict[str, Any]
    mailbox: Mailbox
    dead_letters: int


async def settle_and_observe(stack: Any, system: SystemEnv, w: Workload, progress: Progress) -> Outcome:
    if (pending := await wait_settled(stack, system, w, timeout=progress.limit)) is not None:
        progress.notes.append(f"the system had not settled within {progress.limit:.0f} s: {pending}")
    progress.reached("settled")
    return Outcome(await observe(system.dsn, w), delivered(stack, w.domain),
                   await count_dead_letters(stack.endpoints.kafka_bootstrap, w))


def write_report(name: str, report: dict[str, Any]) -> None:
    out = ROOT / "var" / "reports"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"faults-{name}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"\nFAULT REPORT ({name}):", json.dumps(report, indent=2, ensure_ascii=False))


def assert_nothing_lost_or_duplicated(w: Workload, report: dict[str, Any]) -> None:
    assert w.events >= 10_000
    assert report["missing"] == 0, report
    assert report["duplicated"] == 0, report
    assert report["dsar_cases"]["completed"] == len(w.requests), report
    assert report["consent_states"]["wrong"] == 0, report
    assert report["consent_commands"]["unacknowledged"] == 0 and report["dsar_commands"]["unacknowledged"] == 0, report
    assert report["emails"]["recorded_not_sent"] == 0 and report["emails"]["misaddressed"] == 0, report
    assert report["emails"]["merger_rows_of_erased"] == 0, report
    assert report["erased_subjects"] == {"keys_left": 0, "directory_entries_left": 0}, report
    assert report["dead_letters"] == 0, report
