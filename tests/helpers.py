"""Helpers for integration tests: publish and read events, run services as real processes, wait.

Services run as subprocesses (`python -m services.<name> worker`) against the session's stack and
are stopped by process id, exactly as in production (SIGTERM) or abruptly (SIGKILL) for fault tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import typing
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devstack import standins
from devstack._proc import free_port as devstack_free_port
from privacy_runtime.codec import DecodeError, decode
from privacy_runtime.datamap import load_data_map
from privacy_runtime.migrations import apply_migrations
from privacy_runtime.notice_secrets import SECRET_PARAMS, NoticeSecrets
from privacy_runtime.settings import DEFAULT_DATA_MAP as DEFAULT_DATA_MAP_PATH
from schemas.envelope import new_event
from schemas.events import EventData, PrivacyAck
from schemas.topics import EXTERNAL_SYSTEMS, PRIVACY_ACKS, command_topic

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

#: One master key and admin token for every service a test session starts.
TEST_MASTER_KEY = base64.b64encode(b"k" * 32).decode()
TEST_ADMIN_TOKEN = "test-admin-token"

WEB_PORT_ENV = {"consent": "CONSENT_WEB_PORT", "dsar": "DSAR_WEB_PORT", "notifier": "NOTIFIER_WEB_PORT",
                "office": "OFFICE_WEB_PORT", "privacy_center": "PRIVACY_CENTER_WEB_PORT"}


def free_port() -> int:
    """A free port on 127.0.0.1 that no other part of this test process was given (`devstack`'s)."""
    return devstack_free_port()


def subject_id(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def built_service(service: str) -> Any:
    """A stream service as its `create_service` builds it (no I/O: built, not started)."""
    app = importlib.import_module(f"services.{service}.app")
    settings_type = typing.get_type_hints(app.create_service)["settings"]
    return app.create_service(settings_type(privacy_master_key=TEST_MASTER_KEY))


def consumed_topics(service: str) -> tuple[str, ...]:
    """The topics a stream service consumes, as it registers them, so a list elsewhere cannot drift."""
    return tuple(built_service(service).runtime.topics)


def registered_paths(service: str) -> set[str]:
    """The HTTP paths a stream service serves, as it registers them."""
    return {route.path for route in built_service(service).runtime.routes}


async def wait_until(check: Callable[[], Awaitable[T]], timeout: float = 30.0, interval: float = 0.2,
                     what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


async def publish(
    bootstrap: str,
    topic: str,
    data: EventData,
    *,
    subject: str | None,
    key: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> str:
    """Publish one contract event; returns its id."""
    event = new_event(topic, data, subject=subject, source="urn:test", time=time, id=event_id)
    await publish_raw(bootstrap, topic, (key or subject or "").encode(), event.model_dump_json().encode())
    return str(event.id)


@dataclass(frozen=True)
class Outgoing:
    """One event for `publish_many`; the Kafka key defaults to the subject."""

    data: EventData
    subject: str | None = None
    key: str | None = None
    event_id: str | None = None
    time: datetime | None = None


async def publish_many(bootstrap: str, topic: str, events: list[Outgoing]) -> list[str]:
    """Publish many contract events through one producer (fast for bulk setup); returns their ids."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    ids: list[str] = []
    try:
        pending = []
        for item in events:
            event = new_event(topic, item.data, subject=item.subject, source="urn:test", time=item.time,
                              id=item.event_id)
            key = (item.key or item.subject or "").encode() or None
            pending.append(await producer.send(topic, key=key, value=event.model_dump_json().encode()))
            ids.append(str(event.id))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return ids


async def publish_raw(bootstrap: str, topic: str, key: bytes | None, value: bytes | None,
                      headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=key, value=value, headers=headers)
    finally:
        await producer.stop()


async def commit_group_offsets(bootstrap: str, group: str, topics: list[str], *, to_end: bool = False,
                               timeout: float = 60.0) -> None:
    """Commit offset 0 (or the end, `to_end`) on every partition of `topics` for `group`, which must have
    no live members: where a service started in that group will begin reading."""
    deadline = time.monotonic() + timeout
    while True:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            for topic in topics:
                consumer._client.add_topic(topic)
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for topic in topics
                          for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not partitions:
                raise LookupError(f"no partitions known for {topics}")
            consumer.assign(partitions)
            await consumer.commit(await consumer.end_offsets(partitions) if to_end else dict.fromkeys(partitions, 0))
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
        finally:
            await consumer.stop()
        await asyncio.sleep(1.0)


@contextlib.contextmanager
def running_client(name: str, env: dict[str, str]) -> Iterator[httpx.Client]:
    """A service started as a real process, and an HTTP client for it; on leaving, the service must
    still be up (nothing the client sent crashed it), then it is stopped."""
    service = ServiceProcess(name, env).start()
    try:
        asyncio.run(service.wait_ready())
        with httpx.Client(base_url=service.url, timeout=10) as client:
            yield client
        assert service.process is not None and service.process.poll() is None, "the service is still up"
    finally:
        service.stop()


async def read_topic(bootstrap: str, topic: str, *, timeout: float = 30.0) -> list[Any]:
    """Every message currently on `topic` (see `read_from_start`)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return await read_from_start(consumer, topic, timeout=timeout)
    finally:
        await consumer.stop()


async def read_from_start(consumer: AIOKafkaConsumer, topic: str, *, timeout: float = 30.0) -> list[Any]:
    """Every message currently on `topic`, read by a started consumer without a group from the beginning
    up to the end offsets seen at the start. Fails rather than return part of it: a check that something
    is absent must have read everything."""
    partitions = consumer.partitions_for_topic(topic) or set()
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    if not tps:
        return []
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    end = await consumer.end_offsets(tps)
    messages: list[Any] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        positions = [await consumer.position(tp) for tp in tps]
        if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
            break
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"read {len(messages)} messages of {topic} but not to its end in {timeout} s")
        batch = await consumer.getmany(timeout_ms=200)
        for records in batch.values():
            messages.extend(records)
    return messages


async def wait_for_messages(bootstrap: str, topic: str, match: Callable[[Any], bool], *, count: int = 1,
                            timeout: float = 30.0) -> list[Any]:
    async def found() -> list[Any]:
        hits = [m for m in await read_topic(bootstrap, topic) if match(m)]
        return hits if len(hits) >= count else []

    return await wait_until(found, timeout=timeout, what=f"{count} matching message(s) on {topic}")


DEFAULT_DATA_MAP = load_data_map(DEFAULT_DATA_MAP_PATH)

#: What billing answers an `erase` with (the data map: Bokföringslagen keeps accounting records).
BILLING_BASIS = "Bokföringslagen 7:2: accounting records are kept for 7 years"


def downstream_answer(subject: str, command: dict[str, Any], *, export: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `privacy-acks` data a well-behaved downstream system sends for `command` (its event data),
    as the local stand-ins answer it: done, except billing keeping its records on erase; an export
    carries `export` or a small fragment."""
    return standins.answer(DEFAULT_DATA_MAP, subject, command, export=export)


@contextlib.asynccontextmanager
async def scratch_schema(dsn: str, prefix: str, migrations: Path, *, max_size: int = 2) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh schema `<prefix>_<random>` with the runtime's and `migrations`' SQL applied,
    dropped afterwards: a service's tables without the service, for tests of its SQL."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, server_settings={"search_path": schema})
    assert pool is not None
    try:
        await apply_migrations(pool, schema, migrations)
        yield pool
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


def opened_notification(data: dict[str, Any]) -> dict[str, Any]:
    """A `notification-requested` event's data with its sealed secrets (codes, links) opened, as the
    notifier sees it; fails if a secret travelled in the clear."""
    assert not set(data.get("params", {})) & SECRET_PARAMS, f"a secret param in the clear: {data['params']}"
    secrets = NoticeSecrets(base64.b64decode(TEST_MASTER_KEY))
    return {**data, "params": secrets.open(str(data["notification_id"]), data.get("params", {}))}


def event_of(message: Any) -> dict[str, Any] | None:
    """The message's CloudEvent as a dict, or None when it is not a valid event of its topic: dead-letter
    tests put malformed messages on the same shared topics on purpose."""
    try:
        decode(message.topic, message.key, message.value)
    except DecodeError:
        return None
    return dict(json.loads(message.value))


def header(message: Any, name: str) -> str | None:
    for key, value in message.headers or []:
        if key == name:
            return bytes(value).decode()
    return None


#: The services that consume topics, each in a consumer group (the web services only call them).
CONSUMING_SERVICES = ("consent", "dsar", "notifier")


def module_group(service: str, suffix: str) -> str:
    """A service's consumer group for one test module."""
    return f"privacy-{service}-{suffix}"


@dataclass
class ServiceProcess:
    """A service running as a real process against the test stack."""

    name: str
    stack_env: Mapping[str, str]
    extra_env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    #: Set per test module (tests/conftest.py, `module_consumer_groups`): a service started without a
    #: CONSUMER_GROUP of its own reads in `privacy-<service>-<suffix>`, a group that starts at the end of
    #: every topic when the module starts, so it never consumes what earlier modules left on the topics.
    group_suffix: typing.ClassVar[str | None] = None
    #: An idle service's empty fetches every 20 ms (the production default) cost it and the broker
    #: about 4% of a core each, and the suite's services sit idle most of the time: measured on the dsar
    #: and consent e2e files, 100 ms took ~10% of their CPU off in the same wall time. The bench keeps
    #: the default (None: not set), so that it measures the services as deployed.
    idle_fetch_wait_ms: typing.ClassVar[str | None] = "100"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
        env.update(self.stack_env)
        env.update({
            "PRIVACY_MASTER_KEY": TEST_MASTER_KEY,
            "ADMIN_TOKEN": TEST_ADMIN_TOKEN,
            WEB_PORT_ENV[self.name]: str(self.port),
            "STATE_DIR": str(ROOT / "var" / "state" / f"{self.name}-{self.port}"),
            "PUBLIC_BASE_URL": self.url,
            "PYTHONUNBUFFERED": "1",
        })
        if self.idle_fetch_wait_ms is not None:
            env.setdefault("KAFKA_FETCH_MAX_WAIT_MS", self.idle_fetch_wait_ms)
        env.update(self.extra_env)
        if "CONSUMER_GROUP" not in env and self.group_suffix is not None:
            env["CONSUMER_GROUP"] = module_group(self.name, self.group_suffix)
        return env

    def start(self) -> ServiceProcess:
        log_dir = ROOT / "var" / "test-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.name}-{self.port}.log"
        handle = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}", "worker", "-l", "warning"],
            cwd=ROOT, env=self.env(), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    @contextlib.asynccontextmanager
    async def running(self, timeout: float = 60.0) -> AsyncIterator[ServiceProcess]:
        """The service started and ready for the block (a fixture's body), stopped after it."""
        self.start()
        try:
            await self.wait_ready(timeout)
            yield self
        finally:
            self.stop()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        async def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}; log:\n{self.log_tail()}")
            try:
                async with httpx.AsyncClient(timeout=1.0) as client:
                    response = await client.get(f"{self.url}/readyz")
                return response.status_code == 200
            except httpx.HTTPError:
                return False

        try:
            await wait_until(ready, timeout=timeout, interval=0.25, what=f"{self.name} /readyz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log ---\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def terminate(self, bound: float) -> tuple[int, float]:
        """SIGTERM to the process (not its group), as an orchestrator stops it; returns (exit code,
        seconds to exit). Fails, after SIGKILL, when it does not exit within `bound`."""
        assert self.process is not None
        started = time.monotonic()
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            code = self.process.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"no exit {bound}s after SIGTERM; log:\n{self.log_tail()}") from None
        return code, time.monotonic() - started


async def stop_player(task: asyncio.Task[None] | None, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
    """Stop a test's stand-in for downstream systems: its loop first, then its Kafka clients."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await consumer.stop()
    await producer.stop()


class Player(typing.Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


PlayerT = TypeVar("PlayerT", bound=Player)


@contextlib.asynccontextmanager
async def playing(player: PlayerT) -> AsyncIterator[PlayerT]:
    """A stand-in for downstream systems running for the block (a fixture's body)."""
    await player.start()
    try:
        yield player
    finally:
        await player.stop()


class CommandPlayer:
    """A test's stand-in for downstream systems: reads their command topics in a group of its own
    (only what is sent after `start`; `from_now=False`: from the start of each topic), hands each command
    to `on_command` and answers on `privacy-acks` with `answer`.

    From now by default: the command topics of a worker's stack hold every earlier module's commands
    (tens of thousands after a fault run), which a player reading from the start had to answer first;
    the dsar e2e file's cases then timed out when it ran after the system fault run."""

    source = "urn:test:systems"

    def __init__(self, bootstrap: str, systems: Iterable[str], *, from_now: bool = True):
        self.bootstrap = bootstrap
        self.topics = [command_topic(s) for s in systems]
        self.group = f"test-systems-{uuid.uuid4().hex[:8]}"
        self.from_now = from_now
        self._consumer = AIOKafkaConsumer(*self.topics, bootstrap_servers=bootstrap, group_id=self.group,
                                          auto_offset_reset="earliest")
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.from_now:
            await commit_group_offsets(self.bootstrap, self.group, self.topics, to_end=True)
        await self._producer.start()
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await stop_player(self._task, self._consumer, self._producer)

    async def _run(self) -> None:
        async for message in self._consumer:
            event = event_of(message)
            if event is None or "subject" not in event:
                continue  # another test's malformed message on the shared topic
            await self.on_command(event["subject"], event["data"])

    async def on_command(self, subject: str, command: dict[str, Any]) -> None:
        raise NotImplementedError

    async def answer(self, subject: str, ack: dict[str, Any]) -> None:
        event = new_event(PRIVACY_ACKS, PrivacyAck.model_validate(ack), subject=subject, source=self.source)
        await self._producer.send_and_wait(PRIVACY_ACKS, key=subject.encode(), value=event.model_dump_json().encode())


async def get_json(url: str, **kwargs: Any) -> tuple[int, Any]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.get(url, **kwargs)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


SERVICE_SCHEMAS = ("consent", "dsar", "notifier")


async def dump_tables(dsn: str, schemas: Sequence[str] = SERVICE_SCHEMAS) -> str:
    """Every row of every table of the services' schemas as text: what someone who copies the database
    sees (bytea as hex)."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema = ANY($1::text[]) AND table_type = 'BASE TABLE'", list(schemas))
        chunks: list[str] = []
        for row in tables:
            rows = await conn.fetch(f'SELECT t::text AS line FROM "{row[0]}"."{row[1]}" t')
            chunks.extend(r["line"] for r in rows)
        return "\n".join(chunks)
    finally:
        await conn.close()


class ExternalSystems:
    """Every external system, played by the local stand-ins `make run` starts (billing keeps invoices),
    from the end of each command topic; `received` holds (system, command data, subject) answered."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.group = f"policy-standins-{uuid.uuid4().hex[:8]}"
        self.answered: list[tuple[str, dict[str, Any]]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def received(self) -> list[tuple[str, dict[str, Any], str]]:
        return [(command["system"], command, subject) for subject, command in self.answered]

    async def start(self) -> None:
        await commit_group_offsets(self.bootstrap, self.group, [command_topic(s) for s in EXTERNAL_SYSTEMS],
                                   to_end=True)
        settings = standins.StandinSettings(kafka_bootstrap_servers=self.bootstrap)
        self._task = asyncio.create_task(standins.play(settings, self._stop, group=self.group, seen=self.answered))

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            await asyncio.wait_for(self._task, timeout=30)
