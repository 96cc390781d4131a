"""Kafka client configuration from the contract's environment variables (optional SASL/TLS)."""

from __future__ import annotations

import ssl
from typing import Any

import faust
from aiokafka import AIOKafkaProducer

from privacy_runtime.settings import ServiceSettings


def _ssl_context(settings: ServiceSettings) -> ssl.SSLContext | None:
    if "SSL" not in settings.kafka_security_protocol.upper():
        return None
    return ssl.create_default_context(cafile=settings.kafka_ssl_cafile)


def aiokafka_options(settings: ServiceSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client, honouring KAFKA_SECURITY_PROTOCOL and SASL."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers(),
        "security_protocol": settings.kafka_security_protocol.upper(),
    }
    context = _ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism.upper()
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        )
    return options


def faust_broker_credentials(settings: ServiceSettings) -> Any:
    """The same security settings in faust's terms (None for PLAINTEXT)."""
    context = _ssl_context(settings)
    if settings.kafka_sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else "",
            mechanism=settings.kafka_sasl_mechanism.upper(),
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def faust_broker_urls(settings: ServiceSettings) -> list[str]:
    return [f"kafka://{server}" for server in settings.bootstrap_servers()]


def make_producer(settings: ServiceSettings, **overrides: Any) -> AIOKafkaProducer:
    """A durable producer: every write acknowledged by all in-sync replicas, idempotent retries."""
    options = aiokafka_options(settings)
    options.update(acks="all", enable_idempotence=True, linger_ms=1, max_batch_size=256 * 1024)
    options.update(overrides)
    return AIOKafkaProducer(**options)
