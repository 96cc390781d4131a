"""The committed JSON Schema / AsyncAPI files match the models and are usable documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from schemas import generate, topics
from schemas.envelope import dump_event
from schemas.examples import example_event

GENERATED = generate.render()
SCHEMA_NAMES = sorted(generate.json_schemas())


def test_committed_files_match_the_models() -> None:
    drifted = generate.drift()
    assert not drifted, (
        "generated contract files are out of date: "
        + ", ".join(f"schemas/{p}" for p in drifted)
        + " -- run `python -m schemas.generate` and commit the result"
    )


def test_output_is_deterministic() -> None:
    assert generate.render() == GENERATED


def test_check_mode_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert generate.main(["--check"]) == 0
    assert sorted(generate.drift(tmp_path)) == sorted(GENERATED)
    generate.write(tmp_path)
    assert generate.drift(tmp_path) == []
    (tmp_path / "jsonschema" / "stale.json").write_text("{}")
    (tmp_path / "asyncapi.yaml").write_text("changed")
    assert generate.drift(tmp_path) == ["asyncapi.yaml", "jsonschema/stale.json"]
    generate.write(tmp_path)
    assert generate.drift(tmp_path) == []
    assert not (tmp_path / "jsonschema" / "stale.json").exists()


def test_one_schema_per_topic_and_one_for_the_command_family() -> None:
    expected = set(topics.INBOUND_TOPICS + topics.OUTBOUND_TOPICS) | {"privacy-commands"}
    assert set(SCHEMA_NAMES) == expected
    assert {p for p in GENERATED if p.startswith("jsonschema/")} == {f"jsonschema/{n}.json" for n in expected}


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(GENERATED[f"jsonschema/{name}.json"])
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("topic", topics.DATA_TOPICS)
def test_examples_validate_against_the_json_schema(topic: str) -> None:
    name = "privacy-commands" if topics.is_command_topic(topic) else topic
    _validator(name).validate(json.loads(dump_event(example_event(topic))))


def _json_schema_refuses(topic: str, **changes: Any) -> None:
    name = "privacy-commands" if topics.is_command_topic(topic) else topic
    value = json.loads(dump_event(example_event(topic)))
    value["data"].update(changes)
    assert not _validator(name).is_valid(value), changes


@pytest.mark.parametrize(
    "topic,changes",
    [
        (topics.USER_REGISTERED, {"email": "plain"}),
        (topics.USER_REGISTERED, {"country": "XX"}),
        (topics.USER_REGISTERED, {"extra": 1}),
        (topics.CONSENT_CHANGED, {"granted": "true"}),
        (topics.DSAR_REQUESTED, {"right": "rectification", "details": {}}),
        (topics.DSAR_REQUESTED, {"right": "rectification", "details": {"corrections": {}}}),
        (topics.DSAR_REQUESTED, {"right": "restriction", "details": {"format": "json"}}),
        (topics.DSAR_REQUESTED, {"right": "objection", "details": {}}),
        (topics.PRIVACY_ACKS, {"retained_basis": None}),
        (topics.DSAR_STATUS, {"status": "rejected"}),
        (topics.DSAR_STATUS, {"extended": True}),
        (topics.command_topic("accounts"), {"action": "suppress", "fields": None}),
        (topics.command_topic("accounts"), {"action": "erase"}),
        (topics.command_topic("accounts"), {"action": "erase", "fields": None, "purpose": "analytics"}),
        (topics.command_topic("accounts"), {"action": "export", "fields": None, "request_id": None}),
    ],
)
def test_cross_field_rules_are_in_the_json_schema_too(topic: str, changes: dict[str, Any]) -> None:
    _json_schema_refuses(topic, **changes)


def test_envelope_rules_in_the_json_schema() -> None:
    validator = _validator(topics.USER_REGISTERED)
    good = json.loads(dump_event(example_event(topics.USER_REGISTERED)))
    for attribute, bad in [
        ("type", "consent-changed"),
        ("subject", "has space"),
        ("time", "2024-05-01T10:00:00"),
        ("Bad_Ext", "x"),
        ("ext", 1),
    ]:
        assert not validator.is_valid({**good, attribute: bad}), attribute
    assert not validator.is_valid({k: v for k, v in good.items() if k != "subject"})
    assert validator.is_valid({**good, "traceparent": "00-ab-cd-01"})
    merger = json.loads(dump_event(example_event(topics.MERGER_NOTICE)))
    assert "subject" not in merger and _validator(topics.MERGER_NOTICE).is_valid(merger)


# --- AsyncAPI -------------------------------------------------------------------------------------

DOC: dict[str, Any] = yaml.safe_load(GENERATED[generate.ASYNCAPI_FILE])


def _resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = DOC
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_asyncapi_shape() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    assert DOC["info"]["title"] and DOC["info"]["version"]
    addresses = {channel["address"] for channel in DOC["channels"].values()}
    assert addresses == set(topics.all_topics())
    for op in DOC["operations"].values():
        assert op["action"] in ("send", "receive")
        channel = _resolve(op["channel"]["$ref"])
        for message_ref in op["messages"]:
            assert message_ref["$ref"].startswith(op["channel"]["$ref"] + "/messages/")
            _resolve(message_ref["$ref"])
        assert channel["address"]


def test_asyncapi_refs_resolve() -> None:
    for ref in _refs(DOC):
        if ref.startswith("#/"):
            _resolve(ref)
        else:
            assert ref.startswith("./jsonschema/") and ref[2:] in GENERATED, ref


def test_asyncapi_operations_cover_the_services_view() -> None:
    ops = {(op["action"], _resolve(op["channel"]["$ref"])["address"]) for op in DOC["operations"].values()}
    for topic in topics.INBOUND_TOPICS:
        assert ("receive", topic) in ops
    for topic in topics.OUTBOUND_TOPICS + topics.COMMAND_TOPICS + topics.DLQ_TOPICS:
        assert ("send", topic) in ops
    for system in topics.INTERNAL_SYSTEMS:
        assert ("receive", topics.command_topic(system)) in ops


def test_asyncapi_messages_have_kafka_keys_and_valid_examples() -> None:
    messages = DOC["components"]["messages"]
    for message_id, message in messages.items():
        assert message["bindings"]["kafka"]["key"]["description"]
        if message_id == "deadLetter":
            continue
        name = message["name"]
        validator = _validator(name)
        for example in message["examples"]:
            validator.validate(example["payload"])
    assert "transaction_id" in messages["mergerNotice"]["bindings"]["kafka"]["key"]["description"]
    assert "version" in messages["policyChanged"]["bindings"]["kafka"]["key"]["description"]
