"""End-to-end checks of the embedded stack: real Kafka, PostgreSQL and SMTP, plus restarts."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devstack.smtp_sink import MaildirHandler, count_messages, read_messages, wait_for_messages
from devstack.stack import Stack
from devstack.topics import partitions_for
from schemas.topics import all_topics

pytestmark = pytest.mark.stack


def _mail(subject: str, *to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "noreply@isopartner.example"
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content("Hej! Detta är ett testmeddelande.")
    return msg


async def _consume_at(bootstrap: str, topic: str, partition: int, offset: int, count: int) -> list[bytes]:
    """Read ``count`` values from one partition starting at ``offset`` (no group, no rebalance)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        values: list[bytes] = []
        while len(values) < count:
            batch = await consumer.getmany(tp, timeout_ms=10_000)
            if not batch:
                break
            values += [record.value for record in batch.get(tp, []) if record.value is not None]
        return values
    finally:
        await consumer.stop()


def test_env_names_the_contract_variables(stack: Stack) -> None:
    env = stack.env()
    embedded_sink = {"SMTP_STARTTLS"} if stack.smtp is not None else set()
    assert set(env) == {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "SMTP_HOST", "SMTP_PORT"} | embedded_sink
    if stack.smtp is not None:  # the sink has no TLS; the notifier requires STARTTLS unless told otherwise
        assert env["SMTP_STARTTLS"] == "false"
    assert env["DATABASE_URL"].startswith("postgresql://privacy:privacy@127.0.0.1:")
    assert env["DATABASE_URL"].endswith("/privacy")
    assert stack.startup_seconds is not None
    print(f"stack start-up {stack.startup_seconds:.1f}s {stack.timings}", file=sys.stderr)


async def test_every_contract_topic_exists_with_its_partitions(stack: Stack) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.endpoints.kafka_bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(list(all_topics()))}
    finally:
        await admin.close()
    for name in all_topics():
        assert described[name]["error_code"] == 0, name
        assert len(described[name]["partitions"]) == partitions_for(name, stack.partitions), name
    assert len(described["user-registered"]["partitions"]) == 4
    assert len(described["user-registered.dlq"]["partitions"]) == 1


async def test_kafka_produce_and_consume(stack: Stack) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    value = f'{{"id": "{uuid.uuid4()}"}}'.encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        meta = await producer.send_and_wait("user-registered", value, key=b"subject-1")
    finally:
        await producer.stop()
    assert await _consume_at(bootstrap, "user-registered", meta.partition, meta.offset, 1) == [value]


async def test_postgres_accepts_the_privacy_role(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.endpoints.database_url)
    try:
        assert await conn.fetchval("SELECT current_user") == "privacy"
        await conn.execute("CREATE SCHEMA IF NOT EXISTS devstack_test")
        await conn.execute("CREATE TABLE IF NOT EXISTS devstack_test.t (v text)")
        await conn.execute("INSERT INTO devstack_test.t VALUES ($1)", "åäö")
        assert await conn.fetchval("SELECT v FROM devstack_test.t") == "åäö"
    finally:
        await conn.close()


async def test_smtp_sink_stores_one_eml_per_recipient(stack: Stack) -> None:
    assert stack.smtp is not None
    subject = f"hello {uuid.uuid4()}"
    ep = stack.endpoints
    before = count_messages(ep.mail_dir)
    await aiosmtplib.send(
        _mail(subject, "a@example.se", "b@example.se"), hostname=ep.smtp_host, port=ep.smtp_port
    )
    await wait_for_messages(ep.mail_dir, before + 2)
    mine = [m for m in read_messages(ep.mail_dir) if m["Subject"] == subject]
    assert sorted(str(m["Delivered-To"]) for m in mine) == ["a@example.se", "b@example.se"]
    body = mine[0].get_body(("plain",))
    assert body is not None and "testmeddelande" in body.get_content()
    assert not list((ep.mail_dir / "tmp").iterdir())


async def test_smtp_refuse_mode_answers_451(stack: Stack) -> None:
    assert stack.smtp is not None
    ep = stack.endpoints
    stack.smtp.refuse(True)
    try:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as err:
            await aiosmtplib.send(_mail("refused", "c@example.se"), hostname=ep.smtp_host, port=ep.smtp_port)
        assert [r.code for r in err.value.recipients] == [451]
    finally:
        stack.smtp.refuse(False)
    await aiosmtplib.send(_mail("accepted again", "c@example.se"), hostname=ep.smtp_host, port=ep.smtp_port)


async def test_kafka_restart_keeps_ports_data_and_clients(stack: Stack) -> None:
    if stack.kafka is None:
        pytest.skip("external Kafka")
    bootstrap = stack.endpoints.kafka_bootstrap
    old_pid = stack.kafka.pid
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await producer.start()
    try:
        first = await producer.send_and_wait("privacy-audit", b"before", key=b"k")
        await stack.kafka.restart()
        assert stack.kafka.pid != old_pid
        assert stack.endpoints.kafka_bootstrap == bootstrap
        second = await producer.send_and_wait("privacy-audit", b"after", key=b"k")
    finally:
        await producer.stop()
    assert second.partition == first.partition and second.offset == first.offset + 1
    assert await _consume_at(bootstrap, "privacy-audit", first.partition, first.offset, 2) == [
        b"before",
        b"after",
    ]


async def test_kafka_comes_back_after_a_crash(stack: Stack) -> None:
    if stack.kafka is None:
        pytest.skip("external Kafka")
    await stack.kafka.kill()
    await stack.kafka.start()
    producer = AIOKafkaProducer(bootstrap_servers=stack.endpoints.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait("privacy-audit", b"after crash", key=b"k")
    finally:
        await producer.stop()


async def test_postgres_crash_keeps_committed_data(stack: Stack) -> None:
    if stack.postgres is None:
        pytest.skip("external PostgreSQL")
    url = stack.endpoints.database_url
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE IF NOT EXISTS kept (v int)")
    await conn.execute("INSERT INTO kept VALUES (7)")
    await conn.close()
    await stack.postgres.restart(mode="kill")  # crash: committed rows must survive
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT sum(v) FROM kept") == 7
    finally:
        await conn.close()


async def test_smtp_restart_serves_on_the_same_port(stack: Stack) -> None:
    if stack.smtp is None:
        pytest.skip("external SMTP")
    ep = stack.endpoints
    await stack.smtp.restart()
    assert stack.endpoints.smtp_port == ep.smtp_port
    await aiosmtplib.send(_mail("after restart", "d@example.se"), hostname=ep.smtp_host, port=ep.smtp_port)


def test_read_messages_parses_stored_files(tmp_path: Path) -> None:
    handler = MaildirHandler(tmp_path / "mail", tmp_path)
    handler._store("x@example.se", _mail("stored", "x@example.se").as_bytes())
    assert count_messages(tmp_path / "mail") == 1
    assert read_messages(tmp_path / "mail")[0]["Subject"] == "stored"


def test_status_reports_no_stack_in_an_empty_root(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "status", "--root", str(tmp_path)],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 1


def test_servers_named_in_the_environment_are_used_instead(tmp_path: Path) -> None:
    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": "kafka.example:9092",
        "DATABASE_URL": "postgresql://u:p@db.example:5432/privacy",
        "SMTP_HOST": "smtp.example",
        "SMTP_PORT": "587",
    }
    external = Stack(tmp_path, cache_dir=tmp_path, environ=environ)
    assert (external.kafka, external.postgres, external.smtp) == (None, None, None)
    assert external.env() == environ
    # An external relay keeps what the environment says about STARTTLS (required when unset).
    assert Stack(tmp_path, cache_dir=tmp_path, environ={**environ, "SMTP_STARTTLS": "true"}).env() == {
        **environ, "SMTP_STARTTLS": "true"}


def test_the_embedded_sink_is_reached_without_starttls(tmp_path: Path) -> None:
    environ = {"KAFKA_BOOTSTRAP_SERVERS": "kafka.example:9092", "DATABASE_URL": "postgresql://u:p@db.example/p"}
    assert Stack(tmp_path, cache_dir=tmp_path, environ=environ).env()["SMTP_STARTTLS"] == "false"


async def test_kafka_takes_new_ports_when_one_is_taken_before_it_binds(stack: Stack) -> None:
    """A port found free can be taken by another socket before the JVM binds it: the broker starts
    on new ports instead of failing the whole run."""
    from devstack.kafka import KafkaBroker
    from tests.security.support import forget, sweep_record

    root = stack.root / "port-taken"
    shutil.rmtree(root, ignore_errors=True)
    broker = KafkaBroker(root, cache_dir=stack.cache_dir, num_partitions=1, heap="256m")
    record = None
    with _taken_port(broker.host) as taken:
        broker.controller_port = taken  # as if another socket took it after it was chosen
        try:
            await broker.start(within=120)
            record = sweep_record(stack, "port-taken", "kafka-port-taken", broker.pid)
            assert broker.controller_port != taken
            admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
            await admin.start()
            try:
                assert (await admin.describe_cluster())["brokers"]
            finally:
                await admin.close()
        finally:
            await broker.stop()
            forget(record)


async def test_postgres_takes_a_new_port_when_its_own_is_taken_before_it_binds(stack: Stack) -> None:
    """The same race for PostgreSQL: it starts on a new port, and keeps that port across restarts."""
    from devstack.postgres import PostgresServer
    from tests.security.support import forget, sweep_record

    root = stack.root / "pg-port-taken"
    shutil.rmtree(root, ignore_errors=True)
    server = PostgresServer(root, durable=False)
    record = None
    with _taken_port(server.host) as taken:
        server.port = taken  # as if another socket took it after it was chosen
        try:
            await server.start(within=60)
            record = sweep_record(stack, "pg-port-taken", "postgres", server.pid)
            assert server.port != taken
            conn = await asyncpg.connect(server.database_url)
            assert await conn.fetchval("SELECT 1") == 1
            await conn.close()
            moved_to = server.port
            await server.restart()
            assert server.port == moved_to
        finally:
            await server.stop()
            forget(record)


@contextlib.contextmanager
def _taken_port(host: str) -> Iterator[int]:
    """A port another socket listens on while the block runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((host, 0))
        squatter.listen()
        yield squatter.getsockname()[1]


def test_a_local_broker_compiles_with_c1_unless_asked_for_its_peak(tmp_path: Path) -> None:
    from devstack.kafka import KafkaBroker

    libs = tmp_path / "libs"
    quick = KafkaBroker(tmp_path / "a", libs_dir=libs)._java_argv(libs, "kafka.Kafka", "x", heap="64m")
    peak = KafkaBroker(tmp_path / "b", libs_dir=libs, peak_jit=True)._java_argv(libs, "kafka.Kafka", "x",
                                                                                  heap="64m")
    assert "-XX:TieredStopAtLevel=1" in quick  # tests and `make run`: less CPU
    assert "-XX:TieredStopAtLevel=1" not in peak  # the bench: the broker as deployed
    assert Stack(tmp_path / "c", environ={}).kafka.peak_jit is False  # type: ignore[union-attr]
    assert Stack(tmp_path / "d", environ={}, kafka_peak_jit=True).kafka.peak_jit is True  # type: ignore[union-attr]
