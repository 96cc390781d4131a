"""``privacyctl audit verify``: walk each service's hash-chained audit trail in PostgreSQL, and compare
it with the entries the service published on ``privacy-audit`` (a copy the database cannot take back)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from privacyctl.config import CtlSettings
from privacyctl.errors import LOCAL_STACK_HINT, CtlError, redact_url

SERVICES = ("consent", "dsar", "notifier")
#: The CloudEvents `source` of each service's events (privacy_runtime.service.ServiceRuntime).
SOURCE_PREFIX = "urn:isopartner:privacy:"
#: Published entries compared with the database per query.
COMPARE_BATCH = 5000


@dataclass
class ChainReport:
    service: str
    checked: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    #: The consent service's ledger seals (services/consent/seals.py): what was checked, in words.
    ledger: str | None = None
    #: The comparison with privacy-audit, in words (None: not compared).
    published: str | None = None


def _where(dsn: str) -> str:
    try:
        parts = urlsplit(dsn)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    except ValueError:
        return redact_url(dsn)


async def published_entries(kafka: CtlSettings) -> AsyncIterator[tuple[str, str, int, str]]:
    """(service, chain, seq, hash) of every audit entry on privacy-audit, up to the end offsets seen at
    the start. Events without a chain position (published before positions were) are skipped."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from privacy_runtime.audit import AUDIT_CHAIN, AUDIT_HASH, AUDIT_SEQ
    from privacyctl.kafka import _start, client_options
    from schemas.topics import PRIVACY_AUDIT

    consumer = AIOKafkaConsumer(**client_options(kafka), enable_auto_commit=False, auto_offset_reset="earliest")
    await _start(consumer, kafka)
    try:
        partitions = [TopicPartition(PRIVACY_AUDIT, p) for p in sorted(await _partitions(consumer, kafka))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        idle = 0.0
        while pending := [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(*pending, timeout_ms=1000, max_records=5000)
            if not batch:
                idle += 1.0
                if idle >= kafka.privacyctl_timeout:
                    raise CtlError(f"no progress reading {PRIVACY_AUDIT!r} for {kafka.privacyctl_timeout:g} s")
                continue
            idle = 0.0
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= end[tp]:
                        break
                    entry = _position(record.value, AUDIT_SEQ, AUDIT_HASH, AUDIT_CHAIN)
                    if entry is not None:
                        yield entry
    finally:
        await consumer.stop()


async def _partitions(consumer: Any, kafka: CtlSettings) -> set[int]:
    from aiokafka import AIOKafkaProducer

    from privacyctl.kafka import _start, client_options
    from schemas.topics import PRIVACY_AUDIT

    if PRIVACY_AUDIT not in await consumer.topics():
        raise CtlError(f"topic {PRIVACY_AUDIT!r} does not exist: nothing was ever published to compare with")
    # A consumer without a subscription keeps no topic metadata; a producer fetches it (as replay does).
    producer = AIOKafkaProducer(**client_options(kafka))
    await _start(producer, kafka)
    try:
        return set(await producer.partitions_for(PRIVACY_AUDIT))
    finally:
        await producer.stop()


def _position(value: bytes | None, seq_key: str, hash_key: str, chain_key: str) -> tuple[str, str, int, str] | None:
    try:
        event = json.loads(value or b"")
        source = str(event["source"])
        position = (str(event[chain_key]), int(event[seq_key]), str(event[hash_key]))
    except (ValueError, KeyError, TypeError):
        return None
    if not source.startswith(SOURCE_PREFIX):
        return None
    return (source[len(SOURCE_PREFIX):], *position)


async def compare_published(conns: dict[str, Any], reports: dict[str, ChainReport], kafka: CtlSettings) -> None:
    """Check each published entry of these services against their chains; add problems and a summary.

    Entries of another chain of the same service (another database: staging, a restored copy) are
    counted, not compared; a chain rewritten from its first entry on would show up there too."""
    from privacy_runtime.audit import compare_with_published

    chains = {service: await conn.fetchval("SELECT hash FROM audit_log WHERE seq = 1")
              for service, conn in conns.items()}
    compared = dict.fromkeys(conns, 0)
    other = dict.fromkeys(conns, 0)
    newest = dict.fromkeys(conns, 0)
    waiting: dict[str, list[tuple[int, str]]] = {service: [] for service in conns}

    async def flush(service: str) -> None:
        problems = await compare_with_published(conns[service], waiting[service])
        reports[service].problems.extend((p.seq, p.problem) for p in problems)
        compared[service] += len(waiting[service])
        waiting[service] = []

    async for service, chain, seq, digest in published_entries(kafka):
        if service not in conns:
            continue
        if chain != chains[service]:
            other[service] += 1
            continue
        waiting[service].append((seq, digest))
        newest[service] = max(newest[service], seq)
        if len(waiting[service]) >= COMPARE_BATCH:
            await flush(service)
    for service in conns:
        await flush(service)
        reports[service].problems.sort()
        words = f"privacy-audit: {compared[service]} published entries compared (newest seq {newest[service]})"
        if other[service]:
            words += f"; {other[service]} from another chain of {service} (another database) not compared"
        reports[service].published = words


async def verify(
    dsn: str, services: tuple[str, ...], timeout: float = 10.0, kafka: CtlSettings | None = None
) -> list[ChainReport]:
    """Each service's chain (and the consent ledger's seals); with `kafka`, also compared with what the
    services published on privacy-audit."""
    import asyncpg

    from privacy_runtime.audit import verify_chain

    conns: dict[str, Any] = {}

    reports: list[ChainReport] = []
    for service in services:
        try:
            conn = await asyncpg.connect(dsn, timeout=timeout, server_settings={"search_path": service})
        except (TimeoutError, OSError) as exc:
            raise CtlError(
                f"cannot connect to PostgreSQL at {_where(dsn)} ({type(exc).__name__}: {exc}).\n"
                f"Set DATABASE_URL (postgresql://user:password@host:port/database); {LOCAL_STACK_HINT}."
            ) from None
        except asyncpg.InvalidPasswordError:
            raise CtlError(f"PostgreSQL refused the user or password in DATABASE_URL ({redact_url(dsn)}).") from None
        except asyncpg.InvalidCatalogNameError:
            raise CtlError(f"the database named in DATABASE_URL does not exist ({redact_url(dsn)}).") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise CtlError(f"cannot use DATABASE_URL ({redact_url(dsn)}): {exc}") from None
        try:
            table = await conn.fetchval("SELECT to_regclass('audit_log')::text")
            if table is None:
                raise CtlError(
                    f"schema {service!r} has no audit_log table: has the {service} service started against "
                    "this database (it applies its migrations at start)?"
                )
            checked, problems = await verify_chain(conn)
            report = ChainReport(service, checked, [(p.seq, p.problem) for p in problems])
            if service == "consent" and await conn.fetchval("SELECT to_regclass('ledger_seals')::text"):
                from services.consent.seals import verify as verify_ledger

                ledger = await verify_ledger(conn)
                report.problems.extend((p.seq, p.problem) for p in ledger.problems)
                report.ledger = (f"ledger: {ledger.rows_checked} rows in {ledger.seals_checked} sealed batches "
                                 f"checked ({ledger.not_anchored_yet} not anchored yet"
                                 + (f", {ledger.unsealed_rows} rows from before sealing" if ledger.unsealed_rows
                                    else "") + ")")
            reports.append(report)
            conns[service] = conn
        finally:
            if service not in conns:
                await conn.close()
    try:
        if kafka is not None:
            await compare_published(conns, {r.service: r for r in reports}, kafka)
    finally:
        await asyncio.gather(*(conn.close() for conn in conns.values()))
    return reports
