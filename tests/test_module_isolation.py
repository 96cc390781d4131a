"""Each test module's services read only what is published while the module runs (tests/conftest.py,
`module_consumer_groups`): a later module never inherits an earlier one's events."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from devstack.stack import Stack
from schemas.topics import DATA_TOPICS, USER_REGISTERED
from tests.helpers import CONSUMING_SERVICES, ServiceProcess, module_group, publish_raw

pytestmark = pytest.mark.stack


async def test_a_modules_groups_start_at_the_end_of_every_topic(stack: Stack) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    suffix = ServiceProcess.group_suffix
    assert suffix is not None
    await publish_raw(bootstrap, USER_REGISTERED, b"late", b"{}")  # after the module began

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    ends_reader = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await ends_reader.start()
    try:
        for service in CONSUMING_SERVICES:
            group = module_group(service, suffix)
            assert ServiceProcess(service, stack.env()).env()["CONSUMER_GROUP"] == group
            committed = await admin.list_consumer_group_offsets(group)
            assert {tp.topic for tp in committed} == set(DATA_TOPICS), service
            ends = await ends_reader.end_offsets(list(committed))
            behind = {tp.topic for tp, meta in committed.items() if meta.offset < ends[tp]}
            assert behind == {USER_REGISTERED}, (service, behind)  # only what this module published
    finally:
        await ends_reader.stop()
        await admin.close()


def test_a_service_given_its_own_group_keeps_it(stack: Stack) -> None:
    env = ServiceProcess("dsar", stack.env(), {"CONSUMER_GROUP": "faults-run-dsar"}).env()
    assert env["CONSUMER_GROUP"] == "faults-run-dsar"
