"""Every topic's model accepts its valid example and refuses contract violations."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import topics
from schemas.envelope import MAX_FUTURE_SKEW, dump_event, new_event, parse_event
from schemas.events import (
    ConsentChanged,
    DsarRequested,
    PrivacyCommand,
    UserRegistered,
    data_model_for,
)
from schemas.examples import EXAMPLE_SUBJECT, example_data, example_event

ALL = topics.DATA_TOPICS
SUBJECT_TOPICS = tuple(t for t in ALL if t not in topics.SUBJECTLESS_TOPICS)

#: One enum-typed data field per topic (privacy-audit has no enum field).
ENUM_FIELD: dict[str, str] = {
    topics.USER_REGISTERED: "locale",
    topics.CONSENT_CHANGED: "channel",
    topics.ERASURE_REQUESTED: "ground",
    topics.DSAR_REQUESTED: "right",
    topics.MERGER_NOTICE: "kind",
    topics.POLICY_CHANGED: "material",  # no enum here: replaced below by a bool check
    topics.LEGAL_DISCLOSURE: "recipient_country",
    topics.PRIVACY_ACKS: "status",
    topics.DSAR_STATUS: "status",
    topics.NOTIFICATION_REQUESTED: "category",
    **{t: "action" for t in topics.COMMAND_TOPICS},
}
ENUM_FIELD.pop(topics.POLICY_CHANGED)
ENUM_TOPICS = tuple(ENUM_FIELD)


def raw(topic: str) -> dict[str, Any]:
    """The valid example of ``topic`` as decoded JSON."""
    decoded: dict[str, Any] = json.loads(dump_event(example_event(topic)))
    return decoded


def fresh(topic: str) -> dict[str, Any]:
    """Like :func:`raw`, with ``time`` = now (for tests of the time window)."""
    event = raw(topic)
    event["time"] = datetime.now(UTC).isoformat()
    return event


def refuses(topic: str, value: dict[str, Any]) -> ValidationError:
    """Assert that ``value`` is refused both as a mapping and as JSON bytes."""
    with pytest.raises(ValidationError) as from_json:
        parse_event(json.dumps(value).encode(), topic)
    with pytest.raises(ValidationError):
        parse_event(copy.deepcopy(value), topic)
    return from_json.value


def accepts(topic: str, value: dict[str, Any]) -> None:
    parse_event(json.dumps(value).encode(), topic)
    parse_event(copy.deepcopy(value), topic)


def _wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "true"
    if isinstance(value, str):
        return 123
    if isinstance(value, list):
        return "x"
    if isinstance(value, dict):
        return ["x"]
    if isinstance(value, int | float):
        return "1"
    return 1.5  # None -> a number, wrong for every optional field here


# --- valid ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ALL)
def test_valid_example_parses_from_bytes_str_and_mapping(topic: str) -> None:
    event = example_event(topic)
    encoded = dump_event(event)
    assert parse_event(encoded, topic) == event
    assert parse_event(encoded.decode(), topic) == event
    assert parse_event(json.loads(encoded), topic) == event
    assert parse_event(encoded) == event  # envelope chosen by `type`
    assert isinstance(event.data, data_model_for(topic))


@pytest.mark.parametrize("topic", ALL)
def test_minimal_optional_fields_default_to_none(topic: str) -> None:
    value = raw(topic)
    model = data_model_for(topic)
    for name, field in model.model_fields.items():
        if not field.is_required() and field.default is None:
            value["data"].pop(name, None)
    if topic == topics.PRIVACY_ACKS:  # retained needs its basis
        value["data"]["status"] = "done"
    if topic in topics.COMMAND_TOPICS:  # rectify needs fields; pick an action that needs nothing
        value["data"]["action"] = "erase"
    event = parse_event(value, topic)
    for name, field in model.model_fields.items():
        if not field.is_required() and field.default is None:
            assert getattr(event.data, name) is None


def test_user_registered_defaults() -> None:
    data = UserRegistered.model_validate({"email": "a@example.se"})
    assert data.locale == "sv"
    assert data.consents == []
    assert data.name is data.country is data.birth_date is data.source is data.parent_account is None


def test_datacontenttype_may_be_omitted_but_is_always_written() -> None:
    value = raw(topics.CONSENT_CHANGED)
    del value["datacontenttype"]
    event = parse_event(value, topics.CONSENT_CHANGED)
    assert json.loads(dump_event(event))["datacontenttype"] == "application/json"


def test_subject_may_be_absent_on_subjectless_topics_and_is_not_written() -> None:
    for topic in topics.SUBJECTLESS_TOPICS:
        value = raw(topic)
        assert "subject" not in value
        assert parse_event(value, topic).subject is None
        value["subject"] = "all-users"
        assert parse_event(value, topic).subject == "all-users"


def test_extension_attributes_are_kept() -> None:
    value = raw(topics.USER_REGISTERED)
    value["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = parse_event(value, topics.USER_REGISTERED)
    assert event.extensions == {"traceparent": value["traceparent"]}
    assert json.loads(dump_event(event))["traceparent"] == value["traceparent"]


def test_new_event_fills_id_and_time() -> None:
    before = datetime.now(UTC)
    event = new_event(topics.CONSENT_CHANGED, example_data(topics.CONSENT_CHANGED), source="/x", subject="u1")
    assert event.id and event.type == topics.CONSENT_CHANGED
    assert before <= event.time <= datetime.now(UTC)
    assert event.time.utcoffset() == timedelta(0)
    other = new_event(topics.CONSENT_CHANGED, example_data(topics.CONSENT_CHANGED), source="/x", subject="u1")
    assert other.id != event.id


def test_new_event_rejects_data_of_another_topic() -> None:
    with pytest.raises(ValidationError):
        new_event(topics.CONSENT_CHANGED, example_data(topics.USER_REGISTERED), source="/x", subject="u1")


def test_events_are_immutable() -> None:
    event = example_event(topics.CONSENT_CHANGED)
    with pytest.raises(ValidationError):
        event.subject = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        event.data.granted = True  # type: ignore[attr-defined]


# --- refused: generic rules, for every topic -------------------------------------------------------


@pytest.mark.parametrize("topic", ENUM_TOPICS)
def test_unknown_enum_value(topic: str) -> None:
    value = raw(topic)
    value["data"][ENUM_FIELD[topic]] = "no_such_value"
    refuses(topic, value)


@pytest.mark.parametrize("topic", ALL)
def test_wrong_type_of_every_data_field(topic: str) -> None:
    example = raw(topic)
    for name, current in example["data"].items():
        value = copy.deepcopy(example)
        value["data"][name] = _wrong_type(current)
        try:
            refuses(topic, value)
        except pytest.fail.Exception:  # pragma: no cover - message names the field
            pytest.fail(f"{topic}: data.{name} accepted a wrong type")


@pytest.mark.parametrize("topic", ALL)
def test_no_string_to_bool_or_number_coercion(topic: str) -> None:
    example = raw(topic)
    bools = [name for name, v in example["data"].items() if isinstance(v, bool)]
    for name in bools:
        for wrong in ("true", "false", 1, 0, "1", None):
            value = copy.deepcopy(example)
            value["data"][name] = wrong
            refuses(topic, value)


@pytest.mark.parametrize("topic", ALL)
def test_missing_required_data_field(topic: str) -> None:
    model = data_model_for(topic)
    required = [name for name, field in model.model_fields.items() if field.is_required()]
    assert required, topic
    for name in required:
        value = raw(topic)
        del value["data"][name]
        refuses(topic, value)


@pytest.mark.parametrize("topic", ALL)
@pytest.mark.parametrize("attribute", ["specversion", "id", "type", "source", "time", "data"])
def test_missing_envelope_attribute(topic: str, attribute: str) -> None:
    value = raw(topic)
    del value[attribute]
    refuses(topic, value)


@pytest.mark.parametrize("topic", SUBJECT_TOPICS)
def test_missing_subject_on_subject_topic(topic: str) -> None:
    value = raw(topic)
    del value["subject"]
    refuses(topic, value)
    value["subject"] = None
    refuses(topic, value)


@pytest.mark.parametrize("topic", ALL)
def test_extra_data_field(topic: str) -> None:
    value = raw(topic)
    value["data"]["unexpected"] = "x"
    refuses(topic, value)


@pytest.mark.parametrize(
    "name,extension",
    [("Bad_Name", "x"), ("has-dash", "x"), ("waytoolongextensionname", "x"), ("ok", 1), ("ok", None)],
)
def test_bad_extension_attribute(name: str, extension: Any) -> None:
    value = raw(topics.USER_REGISTERED)
    value[name] = extension
    refuses(topics.USER_REGISTERED, value)


def test_too_many_extension_attributes() -> None:
    value = raw(topics.USER_REGISTERED)
    value.update({f"ext{i}": "x" for i in range(9)})
    refuses(topics.USER_REGISTERED, value)


@pytest.mark.parametrize("topic", ALL)
@pytest.mark.parametrize("subject", ["", "has space", "ä", "a/b", "a" * 129, "x\n", 123])
def test_bad_subject_id(topic: str, subject: Any) -> None:
    value = raw(topic)
    value["subject"] = subject
    refuses(topic, value)


@pytest.mark.parametrize("topic", ALL)
@pytest.mark.parametrize(
    "time",
    [
        "2024-05-01T10:00:00",  # naive
        "2024-05-01 10:00:00",  # naive
        "2024-05-01",  # a date
        "1714550400",  # unix time as a string
        1714550400,  # unix time
        "1999-12-31T23:59:59Z",  # before 2000
        "not a time",
    ],
)
def test_bad_event_time(topic: str, time: Any) -> None:
    value = raw(topic)
    value["time"] = time
    refuses(topic, value)


@pytest.mark.parametrize("topic", ALL)
def test_far_future_event_time(topic: str) -> None:
    value = raw(topic)
    value["time"] = (datetime.now(UTC) + MAX_FUTURE_SKEW + timedelta(minutes=5)).isoformat()
    refuses(topic, value)
    value["time"] = (datetime.now(UTC) + MAX_FUTURE_SKEW - timedelta(minutes=5)).isoformat()
    accepts(topic, value)


def test_naive_datetime_object_refused_by_new_event() -> None:
    with pytest.raises(ValidationError):
        new_event(
            topics.CONSENT_CHANGED,
            example_data(topics.CONSENT_CHANGED),
            source="/x",
            subject="u1",
            time=datetime(2024, 1, 1, 12, 0),
        )


@pytest.mark.parametrize(
    "attribute,bad",
    [
        ("specversion", "0.3"),
        ("specversion", 1.0),
        ("id", ""),
        ("id", 5),
        ("id", "x" * 129),
        ("id", "a\x00b"),
        ("source", ""),
        ("source", "has space"),
        ("source", "/" * 513),
        ("type", "user-registered"),
        ("type", "consent-changed.dlq"),
        ("datacontenttype", "text/plain"),
        ("datacontenttype", "application/json; charset=utf-8"),
        ("data", None),
        ("data", "{}"),
    ],
)
def test_bad_envelope_attribute(attribute: str, bad: Any) -> None:
    value = raw(topics.CONSENT_CHANGED)
    value[attribute] = bad
    refuses(topics.CONSENT_CHANGED, value)


def test_not_json_is_a_validation_error() -> None:
    for junk in (b"", b"{", b"\xff\xfe", b"[]", b"null", b'"x"'):
        with pytest.raises(ValidationError):
            parse_event(junk, topics.USER_REGISTERED)
        with pytest.raises(ValidationError):
            parse_event(junk)


def test_unknown_type_without_topic_is_a_validation_error() -> None:
    value = raw(topics.USER_REGISTERED)
    value["type"] = "user-registered.dlq"
    with pytest.raises(ValidationError):
        parse_event(json.dumps(value))


def test_unknown_topic_argument() -> None:
    with pytest.raises(topics.UnknownTopic):
        parse_event(dump_event(example_event(topics.USER_REGISTERED)), "nope")


def test_errors_do_not_echo_input() -> None:
    value = raw(topics.USER_REGISTERED)
    value["data"]["email"] = "secret.person@@example.se"
    value["data"]["name"] = 12345678
    error = refuses(topics.USER_REGISTERED, value)
    assert "secret.person" not in str(error)
    assert "12345678" not in str(error)


# --- refused: field rules --------------------------------------------------------------------------


def _data_refused(topic: str, **changes: Any) -> None:
    value = raw(topic)
    value["data"].update(changes)
    refuses(topic, value)


def _data_accepted(topic: str, **changes: Any) -> None:
    value = raw(topic)
    value["data"].update(changes)
    accepts(topic, value)


@pytest.mark.parametrize(
    "email",
    ["", "plain", "a@b", "a b@example.se", "a@@example.se", "a@example..se", "a@.se", "x" * 250 + "@e.se"],
)
def test_bad_email(email: str) -> None:
    _data_refused(topics.USER_REGISTERED, email=email)


@pytest.mark.parametrize("email", ["a@example.se", "first.last+tag@sub.example.com", "åsa@exempel.se"])
def test_good_email(email: str) -> None:
    _data_accepted(topics.USER_REGISTERED, email=email)


@pytest.mark.parametrize("country", ["se", "SWE", "XX", "", "S"])
def test_bad_country(country: str) -> None:
    _data_refused(topics.USER_REGISTERED, country=country)
    _data_refused(topics.LEGAL_DISCLOSURE, recipient_country=country)


@pytest.mark.parametrize(
    "birth_date", ["1990-02-30", "1990-1-1", "1899-12-31", "2990-01-01", "1990-01-01T00:00:00Z", 19900101]
)
def test_bad_birth_date(birth_date: Any) -> None:
    _data_refused(topics.USER_REGISTERED, birth_date=birth_date)


def test_text_limits_and_control_characters() -> None:
    _data_refused(topics.USER_REGISTERED, name="x" * 201)
    _data_accepted(topics.USER_REGISTERED, name="x" * 200)
    _data_refused(topics.USER_REGISTERED, name="a\x00b")
    _data_refused(topics.USER_REGISTERED, name="line\nbreak")
    _data_refused(topics.POLICY_CHANGED, summary_sv="x" * 5001)
    _data_refused(topics.POLICY_CHANGED, summary_sv="")
    _data_accepted(topics.POLICY_CHANGED, summary_sv="Rad ett\nRad två\r\n\tindrag")
    _data_refused(topics.POLICY_CHANGED, summary_en="bad\x00")
    _data_refused(topics.MERGER_NOTICE, data_categories=["x"] * 51)
    _data_refused(topics.MERGER_NOTICE, data_categories=[""])
    _data_refused(topics.MERGER_NOTICE, notice_url="ftp://example.se/x")
    _data_refused(topics.MERGER_NOTICE, notice_url="https://")
    _data_refused(topics.MERGER_NOTICE, transaction_id="has space")


def test_consents() -> None:
    grants = [{"purpose": "analytics", "granted": True}, {"purpose": "analytics", "granted": False}]
    _data_refused(topics.USER_REGISTERED, consents=grants)
    _data_refused(topics.USER_REGISTERED, consents=[{"purpose": "analytics", "granted": True, "x": 1}])
    _data_refused(topics.USER_REGISTERED, consents=[{"purpose": "nope", "granted": True}])
    _data_refused(topics.USER_REGISTERED, consents=[{"purpose": "analytics", "granted": "yes"}])
    _data_refused(topics.USER_REGISTERED, consents=[{"purpose": "analytics"}])


def test_parent_account() -> None:
    _data_accepted(topics.USER_REGISTERED, parent_account="primary-1")
    _data_refused(topics.USER_REGISTERED, parent_account="not valid")
    _data_refused(topics.USER_REGISTERED, parent_account=EXAMPLE_SUBJECT)


@pytest.mark.parametrize("request_id", ["", "123", "6f1c3a528a614a439d0e0d7a3a4f3b10", "urn:uuid:x", 5])
def test_bad_uuid(request_id: Any) -> None:
    _data_refused(topics.ERASURE_REQUESTED, request_id=request_id)


@pytest.mark.parametrize(
    "right,details,ok",
    [
        ("access", {}, True),
        ("access", {"format": "csv"}, True),
        ("portability", {}, True),
        ("portability", {"format": "json"}, True),
        ("portability", {"format": "xml"}, False),
        ("rectification", {"corrections": {"phone": "+46 8 1"}}, True),
        ("rectification", {}, False),
        ("rectification", {"corrections": {}}, False),
        ("rectification", {"corrections": {"phone": 1}}, False),
        ("rectification", {"corrections": {"bad key": "x"}}, False),
        ("rectification", {"corrections": {f"f{i}": "x" for i in range(51)}}, False),
        ("restriction", {"circumstance": "legal_claims"}, True),
        ("restriction", {}, False),
        ("restriction", {"circumstance": "because"}, False),
        ("objection", {"processing": "marketing"}, True),
        ("objection", {}, False),
        ("objection", {"processing": "marketing", "format": "json"}, False),
        ("access", {"corrections": {"name": "x"}}, False),
        ("access", {"unknown": 1}, False),
    ],
)
def test_dsar_details(right: str, details: dict[str, Any], ok: bool) -> None:
    (_data_accepted if ok else _data_refused)(topics.DSAR_REQUESTED, right=right, details=details)


def test_dsar_details_may_be_omitted_when_not_needed() -> None:
    value = raw(topics.DSAR_REQUESTED)
    del value["data"]["details"]
    event = parse_event(value, topics.DSAR_REQUESTED)
    assert isinstance(event.data, DsarRequested)
    assert event.data.details.format is None
    value["data"]["right"] = "objection"
    refuses(topics.DSAR_REQUESTED, value)


def test_privacy_ack_rules() -> None:
    _data_refused(topics.PRIVACY_ACKS, status="retained", retained_basis=None)
    _data_refused(topics.PRIVACY_ACKS, system="crm")
    _data_accepted(topics.PRIVACY_ACKS, status="done", retained_basis=None, export={"rows": [{"a": 1}]})
    _data_refused(topics.PRIVACY_ACKS, export={"big": "x" * (900 * 1024)})
    _data_refused(topics.PRIVACY_ACKS, export={"nul": "a\x00"})
    deep: Any = "leaf"
    for _ in range(40):
        deep = {"d": deep}
    _data_refused(topics.PRIVACY_ACKS, export=deep)
    _data_refused(topics.PRIVACY_ACKS, export=["not", "an", "object"])


COMMAND = topics.command_topic("accounts")


@pytest.mark.parametrize(
    "changes,ok",
    [
        ({"action": "suppress", "fields": None, "purpose": "marketing_email"}, True),
        ({"action": "suppress", "fields": None}, False),
        ({"action": "revoke_sharing", "fields": None, "purpose": "partner_sharing"}, True),
        ({"action": "revoke_sharing", "fields": None}, False),
        ({"action": "unsuppress", "fields": None, "purpose": "marketing_email"}, True),
        ({"action": "erase", "fields": None}, True),
        ({"action": "erase", "fields": None, "purpose": "analytics"}, False),
        ({"action": "erase"}, False),  # fields only for rectify
        ({"action": "rectify", "fields": {}}, False),
        ({"action": "rectify", "fields": None}, False),
        ({"action": "export", "fields": None}, True),
        ({"action": "export", "fields": None, "request_id": None}, False),
        ({"action": "restrict", "fields": None, "request_id": None}, True),
        ({"respond_by": "2024-05-08T10:00:00"}, False),
        ({"respond_by": None}, False),
        ({"system": "billing"}, False),  # not the system of the topic
    ],
)
def test_command_rules(changes: dict[str, Any], ok: bool) -> None:
    (_data_accepted if ok else _data_refused)(COMMAND, **changes)


@pytest.mark.parametrize("topic", topics.COMMAND_TOPICS)
def test_command_for_each_system(topic: str) -> None:
    event = parse_event(raw(topic), topic)
    assert isinstance(event.data, PrivacyCommand)
    assert topics.command_topic(event.data.system) == topic
    other = raw(topic)
    other["type"] = topics.command_topic("billing" if "billing" not in topic else "accounts")
    refuses(topic, other)


def test_dsar_status_rules() -> None:
    _data_refused(topics.DSAR_STATUS, status="rejected")
    _data_accepted(topics.DSAR_STATUS, status="rejected", reason="Art. 12(5): manifestly unfounded")
    _data_refused(topics.DSAR_STATUS, extended=True)
    _data_refused(topics.DSAR_STATUS, extended=True, reason="")
    _data_accepted(topics.DSAR_STATUS, extended=True, reason="complex request")
    _data_accepted(topics.DSAR_STATUS, right="erasure")
    _data_refused(topics.DSAR_STATUS, status="done")
    _data_refused(topics.DSAR_STATUS, due_at="2024-06-01")


def test_notification_params() -> None:
    _data_accepted(topics.NOTIFICATION_REQUESTED, params={"a": [1, 2.5, None, True, {"b": "c"}]})
    _data_refused(topics.NOTIFICATION_REQUESTED, params={"bad-name": 1})
    _data_refused(topics.NOTIFICATION_REQUESTED, params={f"p{i}": 1 for i in range(51)})
    _data_refused(topics.NOTIFICATION_REQUESTED, params={"p": "x" * (64 * 1024)})
    _data_refused(topics.NOTIFICATION_REQUESTED, template="Has Space")
    _data_refused(topics.NOTIFICATION_REQUESTED, locale="de")


def test_audit_rules() -> None:
    _data_refused(topics.PRIVACY_AUDIT, action="Not Valid")
    _data_refused(topics.PRIVACY_AUDIT, actor="")
    _data_refused(topics.PRIVACY_AUDIT, ref="")


def test_python_objects_are_accepted_like_their_json_forms() -> None:
    data = ConsentChanged(purpose="analytics", granted=True, channel="api", policy_version="v1")  # type: ignore[arg-type]
    assert data.purpose == "analytics"
    with pytest.raises(ValidationError):
        ConsentChanged(purpose="analytics", granted="yes", channel="api", policy_version="v1")  # type: ignore[arg-type]


def test_a_gpc_signal_can_only_withdraw() -> None:
    assert ConsentChanged(purpose="partner_sharing", granted=False, channel="gpc", policy_version="v1")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="gpc signal can only withdraw"):
        ConsentChanged(purpose="partner_sharing", granted=True, channel="gpc", policy_version="v1")  # type: ignore[arg-type]


def test_generic_envelope_checks_type_against_data() -> None:
    from schemas.envelope import CloudEvent

    value = raw(topics.CONSENT_CHANGED)
    event = CloudEvent[ConsentChanged].model_validate(value)
    assert isinstance(event.data, ConsentChanged)
    value["type"] = topics.ERASURE_REQUESTED
    with pytest.raises(ValidationError):
        CloudEvent[ConsentChanged].model_validate(value)
    with pytest.raises(ValidationError):  # untyped data is refused: use envelope_model_for(topic)
        CloudEvent.model_validate(raw(topics.CONSENT_CHANGED))


def test_package_exports() -> None:
    import schemas

    event = schemas.new_event(
        topics.CONSENT_CHANGED, example_data(topics.CONSENT_CHANGED), source="/x", subject="u1"
    )
    assert schemas.parse_event(schemas.dump_event(event)) == event
    assert schemas.key_for(topics.CONSENT_CHANGED, event) == "u1"
