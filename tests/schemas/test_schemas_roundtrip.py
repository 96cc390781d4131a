"""Property: any valid event survives JSON serialisation unchanged (and matches its JSON Schema)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import enums, fields, generate, topics
from schemas.envelope import CloudEvent, dump_event, new_event, parse_event
from schemas.events import (
    DSAR_DETAILS_RULES,
    PURPOSE_ACTIONS,
    ConsentChanged,
    ConsentGrant,
    DsarDetails,
    DsarRequested,
    DsarStatus,
    ErasureRequested,
    EventData,
    LegalDisclosure,
    MergerNotice,
    NotificationRequested,
    PolicyChanged,
    PrivacyAck,
    PrivacyAudit,
    PrivacyCommand,
    UserRegistered,
)

OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])
NOW = datetime.now(UTC)


def text(min_size: int = 0, max_size: int = 40, multiline: bool = False) -> st.SearchStrategy[str]:
    extra = "\t\n\r" if multiline else ""
    alphabet = st.characters(exclude_categories=("Cc", "Cs"), include_characters=extra)
    return st.text(alphabet, min_size=min_size, max_size=max_size)


def regex(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def timestamps(max_value: datetime = datetime(2100, 1, 1)) -> st.SearchStrategy[datetime]:
    return st.datetimes(min_value=datetime(2000, 1, 2), max_value=max_value, timezones=OFFSETS)


subjects = regex(fields.SUBJECT_PATTERN)
uuids = st.uuids()
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1))
birth_dates = st.dates(min_value=date(1900, 1, 1), max_value=NOW.date())
countries = st.sampled_from(sorted(fields.ISO_COUNTRIES))
urls = st.builds(
    lambda host, path: f"https://{host}.se/{path}", regex(r"[a-z0-9]{1,20}"), regex(r"[a-z0-9/]{0,30}")
)
emails = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    regex(r"[a-zåäö0-9._%+-]{1,20}"),
    regex(r"[a-z0-9-]{1,20}"),
    regex(r"[a-z]{2,6}"),
)
versions = regex(fields.VERSION_PATTERN)
labels = text(1, 60)
categories = st.lists(text(1, 30), max_size=5)
field_maps = st.dictionaries(
    regex(fields.FIELD_NAME_PATTERN), text(0, 50, multiline=True), min_size=1, max_size=5
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text(0, 20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text(0, 10), children, max_size=3),
    max_leaves=10,
)


@st.composite
def dsar_requests(draw: st.DrawFn) -> DsarRequested:
    right = draw(st.sampled_from(list(enums.Right)))
    _, allowed = DSAR_DETAILS_RULES[right]
    details = DsarDetails(
        corrections=draw(field_maps) if "corrections" in allowed else None,
        circumstance=draw(st.sampled_from(list(enums.RestrictionCircumstance)))
        if "circumstance" in allowed
        else None,
        processing=draw(st.sampled_from(list(enums.ObjectionProcessing)))
        if "processing" in allowed
        else None,
        format=draw(optional(st.sampled_from(list(enums.ExportFormat)))) if "format" in allowed else None,
    )
    return DsarRequested(
        request_id=draw(uuids),
        right=right,
        identity_verified=draw(st.booleans()),
        requested_via=draw(st.sampled_from(list(enums.RequestedVia))),
        details=details,
    )


@st.composite
def commands(draw: st.DrawFn, system: str) -> PrivacyCommand:
    action = draw(st.sampled_from(list(enums.CommandAction)))
    needs_request = action is enums.CommandAction.EXPORT
    return PrivacyCommand(
        command_id=draw(uuids),
        system=enums.SystemId(system),
        action=action,
        purpose=draw(st.sampled_from(list(enums.Purpose))) if action in PURPOSE_ACTIONS else None,
        request_id=draw(uuids) if needs_request else draw(optional(uuids)),
        fields=draw(field_maps) if action is enums.CommandAction.RECTIFY else None,
        respond_by=draw(timestamps()),
    )


@st.composite
def acks(draw: st.DrawFn) -> PrivacyAck:
    status = draw(st.sampled_from(list(enums.AckStatus)))
    basis = text(1, 80, multiline=True)
    return PrivacyAck(
        command_id=draw(uuids),
        system=draw(st.sampled_from(list(enums.SystemId))),
        status=status,
        retained_basis=draw(basis) if status is enums.AckStatus.RETAINED else draw(optional(basis)),
        export=draw(optional(st.dictionaries(text(0, 10), json_values, max_size=4))),
        detail=draw(optional(text(0, 80, multiline=True))),
    )


@st.composite
def statuses(draw: st.DrawFn) -> DsarStatus:
    status = draw(st.sampled_from(list(enums.CaseStatus)))
    extended = draw(st.booleans())
    needs_reason = extended or status is enums.CaseStatus.REJECTED
    reason = text(1, 80, multiline=True)
    return DsarStatus(
        request_id=draw(uuids),
        right=draw(st.sampled_from(list(enums.CaseRight))),
        status=status,
        due_at=draw(timestamps()),
        extended=extended,
        reason=draw(reason) if needs_reason else draw(optional(reason)),
    )


@st.composite
def registrations(draw: st.DrawFn) -> UserRegistered:
    purposes = draw(st.lists(st.sampled_from(list(enums.Purpose)), unique=True, max_size=5))
    return UserRegistered(
        email=draw(emails),
        name=draw(optional(text(0, 60))),
        company=draw(optional(text(0, 60))),
        phone=draw(optional(text(0, 20))),
        locale=draw(st.sampled_from(list(enums.Locale))),
        country=draw(optional(countries)),
        birth_date=draw(optional(birth_dates)),
        source=draw(optional(st.sampled_from(list(enums.RegistrationSource)))),
        consents=[ConsentGrant(purpose=p, granted=draw(st.booleans())) for p in purposes],
        parent_account=draw(optional(regex(r"parent-[a-z0-9]{1,10}"))),
    )


def data_for(topic: str) -> st.SearchStrategy[EventData]:
    if topics.is_command_topic(topic):
        return commands(topics.command_system(topic))
    strategies: dict[str, st.SearchStrategy[Any]] = {
        topics.USER_REGISTERED: registrations(),
        topics.CONSENT_CHANGED: st.builds(
            dict,
            purpose=st.sampled_from(list(enums.Purpose)),
            granted=st.booleans(),
            channel=st.sampled_from(list(enums.ConsentChannel)),
            policy_version=versions,
        ).map(  # a gpc signal only withdraws
            lambda d: ConsentChanged(**{**d, "granted": d["granted"] and d["channel"] != enums.ConsentChannel.GPC})
        ),
        topics.ERASURE_REQUESTED: st.builds(
            ErasureRequested,
            request_id=uuids,
            ground=st.sampled_from(list(enums.ErasureGround)),
            identity_verified=st.booleans(),
            requested_via=st.sampled_from(list(enums.RequestedVia)),
        ),
        topics.DSAR_REQUESTED: dsar_requests(),
        topics.MERGER_NOTICE: st.builds(
            MergerNotice,
            transaction_id=regex(fields.SUBJECT_PATTERN),
            kind=st.sampled_from(list(enums.MergerKind)),
            counterparty=labels,
            effective_date=dates,
            data_categories=categories,
            notice_url=urls,
        ),
        topics.POLICY_CHANGED: st.builds(
            PolicyChanged,
            version=versions,
            effective_date=dates,
            material=st.booleans(),
            summary_sv=text(1, 200, multiline=True),
            summary_en=text(1, 200, multiline=True),
            url=urls,
        ),
        topics.LEGAL_DISCLOSURE: st.builds(
            LegalDisclosure,
            case_ref=labels,
            authority=labels,
            legal_basis=text(1, 100, multiline=True),
            data_categories=categories,
            may_notify_subject=st.booleans(),
            recipient_country=countries,
            outside_eea=st.booleans(),
        ),
        topics.PRIVACY_ACKS: acks(),
        topics.DSAR_STATUS: statuses(),
        topics.NOTIFICATION_REQUESTED: st.builds(
            NotificationRequested,
            notification_id=regex(fields.NOTIFICATION_ID_PATTERN),
            template=regex(fields.TEMPLATE_PATTERN),
            category=st.sampled_from(list(enums.NotificationCategory)),
            locale=st.sampled_from(list(enums.Locale)),
            params=st.dictionaries(regex(fields.PARAM_NAME_PATTERN), json_values, max_size=4),
        ),
        topics.PRIVACY_AUDIT: st.builds(
            PrivacyAudit,
            action=regex(fields.AUDIT_ACTION_PATTERN),
            actor=labels,
            ref=text(1, 60),
            detail=optional(text(0, 100, multiline=True)),
        ),
    }
    return strategies[topic]


@st.composite
def events(draw: st.DrawFn) -> CloudEvent[Any]:
    topic = draw(st.sampled_from(topics.DATA_TOPICS))
    data = draw(data_for(topic))
    subject = draw(subjects)
    if isinstance(data, UserRegistered) and data.parent_account == subject:
        subject = "x" + subject[:127]
    if topic in topics.SUBJECTLESS_TOPICS:
        subject = draw(optional(subjects))
    return new_event(
        topic,
        data,
        source=draw(st.sampled_from(["/services/dsar", "urn:isopartner:consent", "https://isopartner.se/x"])),
        subject=subject,
        time=draw(timestamps(max_value=datetime(2024, 12, 31))),
        id=draw(st.uuids().map(str) | regex(r"[A-Za-z0-9._:-]{1,64}")),
        extensions=draw(
            st.dictionaries(regex(r"[a-z0-9]{1,20}"), text(0, 40), max_size=2).filter(
                lambda ext: not set(ext) & set(CloudEvent.model_fields)
            )
        ),
    )


SCHEMAS = generate.json_schemas()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_round_trip_through_json(event: CloudEvent[Any]) -> None:
    encoded = dump_event(event)
    decoded = json.loads(encoded)
    assert parse_event(encoded, event.type) == event
    assert parse_event(decoded, event.type) == event
    assert parse_event(encoded) == event
    assert dump_event(parse_event(encoded, event.type)) == encoded
    name = "privacy-commands" if topics.is_command_topic(event.type) else event.type
    jsonschema.Draft202012Validator(SCHEMAS[name]).validate(decoded)
