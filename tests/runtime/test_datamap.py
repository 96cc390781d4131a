"""The data map is a data file: routing follows it without code, and ids outside the contract are refused."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.stack import Stack
from privacy_runtime.datamap import DataMapError, load_data_map, parse_data_map
from privacy_runtime.settings import DEFAULT_DATA_MAP
from schemas.events import ConsentChanged, UserRegistered
from schemas.topics import CONSENT_CHANGED, USER_REGISTERED, command_topic
from services.consent.ledger import systems_by_purpose
from tests.helpers import ServiceProcess, get_json, publish, read_topic, subject_id, wait_for_messages, wait_until

DEFAULT = yaml.safe_load(DEFAULT_DATA_MAP.read_text(encoding="utf-8"))


def _with_support_doing_marketing() -> dict[str, Any]:
    """An operator's change: the support desk also sends marketing email."""
    doc = copy.deepcopy(DEFAULT)
    doc["systems"]["support"]["purposes"] = [*doc["systems"]["support"]["purposes"], "marketing_email"]
    return doc


def test_routing_follows_the_file() -> None:
    assert systems_by_purpose(load_data_map(DEFAULT_DATA_MAP))["marketing_email"] == ["marketing_email"]
    assert systems_by_purpose(parse_data_map(_with_support_doing_marketing()))["marketing_email"] == [
        "marketing_email", "support"]


@pytest.mark.parametrize("change, message", [
    (lambda d: d["systems"].__setitem__("crm", dict(d["systems"]["support"])), "'crm' is not a system id"),
    (lambda d: d["systems"]["support"].__setitem__("purposes", ["support", "spam"]), "unknown purpose 'spam'"),
    (lambda d: d["systems"]["billing"].pop("retained_basis"), "retain needs a retained_basis"),
    (lambda d: d["systems"]["logs"].__setitem__("on_erase", "shred"), "on_erase must be erase or retain"),
    (lambda d: d["systems"]["logs"].pop("location"), "missing 'location'"),
])
def test_a_map_outside_the_contract_is_refused_with_the_reason(change: Callable[[dict[str, Any]], object], message: str) -> None:
    doc = copy.deepcopy(DEFAULT)
    change(doc)
    with pytest.raises(DataMapError, match=message):
        parse_data_map(doc)


@pytest.fixture(scope="module")
async def consent_with_changed_map(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServiceProcess]:
    path: Path = tmp_path_factory.mktemp("datamap") / "data_map.yaml"
    path.write_text(yaml.safe_dump(_with_support_doing_marketing()), encoding="utf-8")
    # Its own consumer group, so it sees this test's events without taking partitions from others.
    async with ServiceProcess("consent", stack.env(), {
        "DATA_MAP_PATH": str(path), "CONSUMER_GROUP": f"privacy-consent-map-{uuid.uuid4().hex[:6]}",
        "COMMAND_RESEND_BASE_SECONDS": "3600",
    }).running() as service:
        yield service


@pytest.mark.stack
async def test_a_changed_data_map_routes_an_opt_out_to_the_systems_it_names(stack: Stack, consent_with_changed_map: ServiceProcess) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("map")
    await publish(bootstrap, USER_REGISTERED, UserRegistered(email=f"{subject}@example.com", country="SE"),
                  subject=subject)

    async def known() -> bool:
        status, _ = await get_json(f"{consent_with_changed_map.url}/v1/decisions",
                                   params={"subject": subject, "purpose": "marketing_email"})
        return status == 200

    await wait_until(known, what="the registration")
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="marketing_email", granted=False, channel="email_footer", policy_version="v1"), subject=subject)
    ours = lambda m: m.key == subject.encode()  # noqa: E731
    to_support = await wait_for_messages(bootstrap, command_topic("support"), ours)
    assert b'"suppress"' in to_support[0].value
    assert [m for m in await read_topic(bootstrap, command_topic("marketing_email")) if ours(m)]
