"""The office's runtime: the pages kit's (its own schema with the runtime's outbox and audit chain,
the outbox relay), plus a Kafka consumer with no group that reads the dead-letter topics.

Intake events go through the outbox in the same transaction as their audit entry, so an intake is
never published unaudited nor audited unpublished."""

from __future__ import annotations

import contextlib
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from privacy_runtime.kafka import aiokafka_options
from privacy_runtime.pages.runtime import PageRuntime
from services.office.deadletters import DeadLetterReader
from services.office.settings import OfficeSettings

NAME = "office"
SQL_DIR = Path(__file__).with_name("migrations")


class OfficeRuntime(PageRuntime):
    def __init__(self, settings: OfficeSettings):
        super().__init__(NAME, settings, SQL_DIR)
        self.office_settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: DeadLetterReader | None = None

    @property
    def dead_letters(self) -> DeadLetterReader:
        assert self._reader is not None, "office runtime not started"
        return self._reader

    async def start(self) -> None:
        await super().start()
        assert self._producer is not None
        self._consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                          **aiokafka_options(self.settings))
        await self._consumer.start()
        self._reader = DeadLetterReader(self._consumer, self._producer)

    async def stop(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        await super().stop()
