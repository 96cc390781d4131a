"""The contract's Kafka security settings are honoured, against a real broker listener with SASL.

A second broker (its own root and ports) serves a SASL_PLAINTEXT listener with PLAIN, SCRAM-SHA-256
and SCRAM-SHA-512 for the user `privacy`. The consent service is given only that listener: its faust
consumer must authenticate to see any event, and our own aiokafka producer (outbox relay, dead
letters) must authenticate to publish anything. A wrong password leaves the service not ready with an
authentication error in its log; it never falls back to working without credentials.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr

from devstack.kafka import KafkaBroker
from devstack.stack import Stack
from devstack.topics import create_topics
from privacy_runtime.faust_shell import faust_broker_credentials
from privacy_runtime.kafka import aiokafka_options
from privacy_runtime.settings import ServiceSettings
from schemas.enums import ConsentChannel, Purpose, RegistrationSource
from schemas.envelope import new_event
from schemas.events import ConsentChanged, ConsentGrant, UserRegistered
from schemas.topics import CONSENT_CHANGED, USER_REGISTERED, command_topic, dlq_topic
from tests.helpers import ServiceProcess, get_json, read_from_start, subject_id, wait_until
from tests.security.support import forget, sweep_record

pytestmark = pytest.mark.stack

USER = "privacy"
PASSWORD = "sasl-Secret-42"


def _settings(**values: Any) -> ServiceSettings:
    """Settings as the services build them from the environment (no master key needed here)."""
    if "kafka_sasl_password" in values and values["kafka_sasl_password"] is not None:
        values["kafka_sasl_password"] = SecretStr(values["kafka_sasl_password"])
    return ServiceSettings.model_construct(**values)


def _client_options(bootstrap: str, mechanism: str, password: str = PASSWORD) -> dict[str, Any]:
    """The test's own clients use the services' code path, so they see the same settings."""
    return aiokafka_options(_settings(
        kafka_bootstrap_servers=bootstrap, kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism, kafka_sasl_username=USER, kafka_sasl_password=password,
    ))


# --- settings mapping (no broker) --------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "mechanism", "expected_protocol"), [
    ("SASL_PLAINTEXT", "PLAIN", "SASL_PLAINTEXT"),
    ("sasl_plaintext", "scram-sha-512", "SASL_PLAINTEXT"),
    ("SASL_SSL", "SCRAM-SHA-256", "SASL_SSL"),
    ("PLAINTEXT", "PLAIN", "SASL_PLAINTEXT"),  # a mechanism without SASL_* would otherwise skip auth
    ("SASL_PLAINTEXT", None, "SASL_PLAINTEXT"),  # SASL without a mechanism: PLAIN, as Kafka's default
    ("SSL", None, "SSL"),
    ("PLAINTEXT", None, "PLAINTEXT"),
])
def test_faust_consumer_and_aiokafka_producer_get_the_same_security(
    protocol: str, mechanism: str | None, expected_protocol: str
) -> None:
    """faust's consumer/producer settings (via faust's own conversion) equal our producers' settings."""
    settings = _settings(kafka_bootstrap_servers="127.0.0.1:1", kafka_security_protocol=protocol,
                         kafka_sasl_mechanism=mechanism, kafka_sasl_username=USER, kafka_sasl_password=PASSWORD)
    ours = aiokafka_options(settings)
    faust_side = credentials_to_aiokafka_auth(faust_broker_credentials(settings))
    assert ours["security_protocol"] == faust_side["security_protocol"] == expected_protocol
    for key in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
        assert ours.get(key) == faust_side.get(key), key
    if expected_protocol.startswith("SASL_"):
        assert ours["sasl_mechanism"] == (mechanism or "PLAIN").upper()
        assert (ours["sasl_plain_username"], ours["sasl_plain_password"]) == (USER, PASSWORD)
    assert ("ssl_context" in ours) == ("SSL" in expected_protocol) == (faust_side.get("ssl_context") is not None)


def test_unknown_security_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="KAFKA_SECURITY_PROTOCOL"):
        aiokafka_options(_settings(kafka_security_protocol="SASL_PLAIN"))


# --- a real SASL listener --------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def sasl_kafka(stack: Stack) -> AsyncIterator[KafkaBroker]:
    """A second broker, own root and ports, with a SASL_PLAINTEXT listener; stopped by pid."""
    root = stack.root / "sasl-kafka"
    shutil.rmtree(root, ignore_errors=True)  # SCRAM users are written when the data dir is formatted
    broker = KafkaBroker(root, cache_dir=stack.cache_dir, sasl_users={USER: PASSWORD}, num_partitions=2,
                         heap="256m")
    record = None
    try:
        await broker.start()
        record = sweep_record(stack, "sasl-kafka", "kafka-sasl", broker.pid)
        admin_options = _client_options(broker.sasl_bootstrap, "SCRAM-SHA-512")
        bootstrap = admin_options.pop("bootstrap_servers")
        await create_topics(",".join(bootstrap), partitions=2, admin_options=admin_options)
        yield broker
    finally:
        await broker.stop()
        forget(record)


async def test_broker_refuses_plaintext_and_wrong_passwords_on_the_sasl_listener(sasl_kafka: KafkaBroker) -> None:
    for options in (
        {"bootstrap_servers": sasl_kafka.sasl_bootstrap},  # no SASL at all
        _client_options(sasl_kafka.sasl_bootstrap, "PLAIN", password="wrong"),
        _client_options(sasl_kafka.sasl_bootstrap, "SCRAM-SHA-512", password="wrong"),
    ):
        producer = AIOKafkaProducer(request_timeout_ms=3000, **options)
        try:
            with pytest.raises(Exception):  # noqa: B017  (KafkaConnectionError after SaslAuthenticationFailed)
                await asyncio.wait_for(producer.start(), 15)
        finally:
            await producer.stop()


def _service(stack: Stack, broker: KafkaBroker, mechanism: str, password: str) -> ServiceProcess:
    env = {**stack.env(), "KAFKA_BOOTSTRAP_SERVERS": broker.sasl_bootstrap}
    return ServiceProcess("consent", env, {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": mechanism,
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": password,
        "COMMAND_RESEND_BASE_SECONDS": "3600",
    })


async def _publish(options: dict[str, Any], topic: str, key: str, value: bytes) -> None:
    producer = AIOKafkaProducer(acks="all", **options)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=key.encode(), value=value)
    finally:
        await producer.stop()


async def _messages_for(options: dict[str, Any], topic: str, key: str) -> list[Any]:
    """Every message on `topic` with `key`, read through an authenticated consumer (no group)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **options)
    await consumer.start()
    try:
        return [r for r in await read_from_start(consumer, topic) if r.key == key.encode()]
    finally:
        await consumer.stop()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
async def test_consent_service_works_through_sasl(stack: Stack, sasl_kafka: KafkaBroker, mechanism: str) -> None:
    """Consumer (faust) and producer (outbox relay, dead letters) both authenticate with the settings."""
    options = _client_options(sasl_kafka.sasl_bootstrap, mechanism)
    service = _service(stack, sasl_kafka, mechanism, PASSWORD).start()
    try:
        await service.wait_ready(timeout=45)
        subject = subject_id(f"sasl-{mechanism.lower()}")
        registered = new_event(USER_REGISTERED, UserRegistered(
            email=f"{subject}@example.com", country="SE", source=RegistrationSource.WEB,
            consents=[ConsentGrant(purpose=Purpose.MARKETING_EMAIL, granted=True)],
        ), subject=subject, source="urn:test", time=datetime.now(UTC) - timedelta(minutes=5))
        await _publish(options, USER_REGISTERED, subject, registered.model_dump_json().encode())

        async def decision() -> Any:
            status, body = await get_json(f"{service.url}/v1/decisions",
                                          params={"subject": subject, "purpose": "marketing_email"})
            return body if status == 200 else None

        assert (await wait_until(decision, timeout=20, what="the registration via SASL"))["allowed"] is True

        changed = new_event(CONSENT_CHANGED, ConsentChanged(
            purpose=Purpose.MARKETING_EMAIL, granted=False, channel=ConsentChannel.EMAIL_FOOTER, policy_version="2021-10-30",
        ), subject=subject, source="urn:test")
        await _publish(options, CONSENT_CHANGED, subject, changed.model_dump_json().encode())

        async def withdrawn() -> bool:
            body = await decision()
            return body is not None and body["allowed"] is False

        await wait_until(withdrawn, timeout=20, what="the opt-out via SASL (faust consumer)")

        # The suppress command leaves through the outbox relay's producer, on the SASL listener only.
        async def suppressed() -> list[Any]:
            return await _messages_for(options, command_topic("marketing_email"), subject)

        commands = await wait_until(suppressed, timeout=20, what="the outbox relay to publish via SASL")
        assert json.loads(commands[0].value)["data"]["action"] == "suppress"

        # A malformed event is dead-lettered by the same authenticated producer.
        await _publish(options, CONSENT_CHANGED, subject, b"{not json")

        async def dead_lettered() -> list[Any]:
            return await _messages_for(options, dlq_topic(CONSENT_CHANGED), subject)

        letters = await wait_until(dead_lettered, timeout=20, what="the dead letter via SASL")
        assert bytes(letters[0].value) == b"{not json"

        conn = await asyncpg.connect(stack.endpoints.database_url)
        try:
            pending = await conn.fetchval(
                "SELECT count(*) FROM consent.outbox WHERE subject = $1 AND published_at IS NULL", subject)
        finally:
            await conn.close()
        assert pending == 0
    finally:
        service.stop()
    assert "SaslAuthenticationFailed" not in (service.log_path.read_text(errors="replace") if service.log_path else "")


async def test_wrong_password_leaves_the_service_not_ready(stack: Stack, sasl_kafka: KafkaBroker) -> None:
    """No silent fallback: with a wrong password nothing becomes ready and the log names the cause.

    The service keeps retrying with backoff (as for a broker that is down) rather than crashing, and a
    SIGTERM still stops it promptly and cleanly."""
    service = _service(stack, sasl_kafka, "PLAIN", "not-the-password").start()
    assert service.process is not None
    try:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            try:
                async with httpx.AsyncClient(timeout=1.0) as client:
                    status: int | str = (await client.get(f"{service.url}/readyz")).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            assert status != 200, f"ready with a wrong password; log:\n{service.log_tail()}"
            assert service.process.poll() is None, f"exited instead of waiting; log:\n{service.log_tail()}"
            await asyncio.sleep(0.5)
        log = service.log_path.read_text(errors="replace") if service.log_path else ""
        assert "SaslAuthenticationFailed" in log, service.log_tail()
        assert "Kafka at" in log and "retrying" in log, service.log_tail()
        started = time.monotonic()
        service.stop(timeout=15)
        assert service.process.returncode == 0, service.log_tail()
        assert time.monotonic() - started < 10
    finally:
        service.stop()
