"""Topic lookups, Kafka keys and the enums against the contract text."""

from __future__ import annotations

import pytest

from schemas import enums, topics
from schemas.envelope import CloudEvent, envelope_model_for
from schemas.events import PrivacyCommand
from schemas.examples import EXAMPLE_SUBJECT, example_event
from schemas.registry import data_model_for, key_field, key_for, subject_required


@pytest.mark.parametrize("topic", topics.DATA_TOPICS)
def test_every_topic_has_models(topic: str) -> None:
    model = data_model_for(topic)
    envelope = envelope_model_for(topic)
    assert issubclass(envelope, CloudEvent)
    assert envelope is envelope_model_for(topic)  # cached
    assert envelope.model_fields["data"].annotation is model


def test_every_command_topic_uses_the_command_model() -> None:
    assert len(topics.COMMAND_TOPICS) == len(topics.ALL_SYSTEMS)
    for system in topics.ALL_SYSTEMS:
        assert data_model_for(topics.command_topic(system)) is PrivacyCommand


@pytest.mark.parametrize(
    "topic",
    ["", "nope", "privacy-commands.", "privacy-commands.crm", "user-registered.dlq", "privacy-commands"],
)
def test_unknown_topics(topic: str) -> None:
    with pytest.raises(topics.UnknownTopic):
        data_model_for(topic)
    with pytest.raises(topics.UnknownTopic):
        envelope_model_for(topic)


def test_dlq_topics_have_no_model() -> None:
    for topic in topics.DLQ_TOPICS:
        with pytest.raises(topics.UnknownTopic):
            data_model_for(topic)


@pytest.mark.parametrize("topic", topics.DATA_TOPICS)
def test_key_for(topic: str) -> None:
    event = example_event(topic)
    if topic == topics.MERGER_NOTICE:
        assert key_for(topic, event) == "tx-2024-001"
        assert key_field(topic) == "data.transaction_id"
    elif topic == topics.POLICY_CHANGED:
        assert key_for(topic, event) == "2024-06-01"
        assert key_field(topic) == "data.version"
    else:
        assert key_for(topic, event) == EXAMPLE_SUBJECT
        assert key_field(topic) == "subject"
    assert subject_required(topic) is (topic not in topics.SUBJECTLESS_TOPICS)


def test_key_for_refuses_an_event_of_another_topic() -> None:
    with pytest.raises(ValueError):
        key_for(topics.CONSENT_CHANGED, example_event(topics.USER_REGISTERED))
    with pytest.raises(topics.UnknownTopic):
        key_for("nope", example_event(topics.USER_REGISTERED))


def test_topic_helpers() -> None:
    assert topics.command_system("privacy-commands.ipcom_group") == "ipcom_group"
    with pytest.raises(topics.UnknownTopic):
        topics.command_system("privacy-commands.crm")
    assert set(topics.DATA_TOPICS) | set(topics.DLQ_TOPICS) == set(topics.all_topics())


CONTRACT_ENUMS: dict[type[enums.StrEnum], list[str]] = {
    enums.Purpose: (
        "service_delivery payments support security bookkeeping service_improvement personalization "
        "analytics marketing_email third_party_marketing partner_sharing group_sharing profiling"
    ).split(),
    enums.Locale: ["sv", "en"],
    enums.RegistrationSource: "web seminar partner survey social_login support import".split(),
    enums.ConsentChannel: (
        "email_footer preference_center support registration cookie_banner gpc api".split()
    ),
    enums.ErasureGround: (
        "no_longer_necessary consent_withdrawn objection_legitimate_interest marketing_objection "
        "unlawful_processing child_data retention_expired"
    ).split(),
    enums.RequestedVia: "email web_form support internal".split(),
    enums.Right: "access portability rectification restriction objection".split(),
    enums.CaseRight: "access portability rectification restriction objection erasure".split(),
    enums.RestrictionCircumstance: (
        "accuracy_contested unlawful_processing legal_claims objection_pending".split()
    ),
    enums.ObjectionProcessing: "marketing profiling legitimate_interest".split(),
    enums.ExportFormat: ["json", "csv"],
    enums.MergerKind: "merger acquisition asset_sale reorganisation".split(),
    enums.AckStatus: "done failed not_found retained".split(),
    enums.CommandAction: (
        "suppress unsuppress revoke_sharing restore_sharing erase restrict lift_restriction rectify export"
    ).split(),
    enums.CaseStatus: (
        "received identity_pending in_progress awaiting_systems completed rejected cancelled "
        "closed_unverified"
    ).split(),
    enums.NotificationCategory: ["transactional", "marketing"],
    enums.SystemId: list(topics.ALL_SYSTEMS),
}


@pytest.mark.parametrize("enum", list(CONTRACT_ENUMS), ids=lambda e: e.__name__)
def test_enum_values_are_the_contract(enum: type[enums.StrEnum]) -> None:
    assert [member.value for member in enum] == CONTRACT_ENUMS[enum]


def test_purpose_count() -> None:
    assert len(enums.Purpose) == 13
