"""One strict data model per contract topic (the ``data`` of the CloudEvent).

Every model forbids unknown fields, rejects unknown enum values and wrong JSON
types (no ``"true"`` -> ``True``, no ``1`` -> ``"1"``), and bounds every string and
collection. Fields the contract marks optional (``or null``, ``for <case>``, or a
stated default) default to ``None`` (or the stated default); every other field is
required. Cross-field rules of the contract are enforced by model validators and
also expressed in the generated JSON Schema (``if``/``then``).

Validation errors never echo the input (``hide_input_in_errors``), so an error
message can go to logs and DLQ headers without leaking PII.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from schemas import topics
from schemas.enums import (
    AckStatus,
    CaseRight,
    CaseStatus,
    CommandAction,
    ConsentChannel,
    ErasureGround,
    ExportFormat,
    Locale,
    MergerKind,
    NotificationCategory,
    ObjectionProcessing,
    Purpose,
    RegistrationSource,
    RequestedVia,
    RestrictionCircumstance,
    Right,
    SystemId,
)
from schemas.fields import (
    AuditAction,
    Basis,
    Categories,
    ContractDate,
    CountryCode,
    Detail,
    Email,
    ExportChunk,
    ExportObject,
    ExportPart,
    FieldMap,
    Identifier,
    Label,
    NotificationId,
    Params,
    Phone,
    Ref,
    Sha256Hex,
    ShortText,
    SubjectId,
    Summary,
    TemplateName,
    Timestamp,
    Url,
    Uuid,
    Version,
)

MAX_CONSENTS = len(Purpose)
EARLIEST_BIRTH_DATE = date(1900, 1, 1)


class StrictModel(BaseModel):
    """Base of every contract model: immutable, no extra fields, no input echoed in errors."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
        validate_default=False,
    )


class EventData(StrictModel):
    """Base of the ``data`` model of a topic."""

    #: The topic this model is the ``data`` of (for the command family, the topic prefix).
    TOPIC: ClassVar[str]

    @classmethod
    def accepts_topic(cls, topic: str) -> bool:
        return topic == cls.TOPIC

    def check_envelope(self, topic: str, subject: str | None) -> None:
        """Rules that need the envelope; raise ``ValueError`` to reject."""


def _if_then(field: str, value: str, then: dict[str, Any]) -> dict[str, Any]:
    return {"if": {"properties": {field: {"const": value}}, "required": [field]}, "then": then}


# --- inbound -----------------------------------------------------------------------------------


class ConsentGrant(StrictModel):
    purpose: Purpose
    granted: StrictBool


class UserRegistered(EventData):
    """``user-registered``. Only ``email`` is required by the contract.

    ``consents`` lists each purpose at most once. ``birth_date`` lies between
    1900-01-01 and tomorrow (UTC). ``parent_account`` is a different subject id.
    """

    TOPIC: ClassVar[str] = topics.USER_REGISTERED

    email: Email
    name: ShortText | None = None
    company: ShortText | None = None
    phone: Phone | None = None
    locale: Locale = Locale.SV
    country: CountryCode | None = None
    birth_date: ContractDate | None = None
    source: RegistrationSource | None = None
    consents: list[ConsentGrant] = Field(default_factory=list, max_length=MAX_CONSENTS)
    parent_account: SubjectId | None = None

    @field_validator("birth_date")
    @classmethod
    def _plausible_birth_date(cls, value: date | None) -> date | None:
        if value is not None:
            tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
            if not EARLIEST_BIRTH_DATE <= value <= tomorrow:
                raise ValueError("birth_date must lie between 1900-01-01 and today")
        return value

    @field_validator("consents")
    @classmethod
    def _one_grant_per_purpose(cls, value: list[ConsentGrant]) -> list[ConsentGrant]:
        if len({grant.purpose for grant in value}) != len(value):
            raise ValueError("each purpose may appear at most once in consents")
        return value

    def check_envelope(self, topic: str, subject: str | None) -> None:
        if self.parent_account is not None and self.parent_account == subject:
            raise ValueError("parent_account must differ from the event subject")


class ConsentChanged(EventData):
    """``consent-changed``. A ``gpc`` signal only withdraws (``granted`` false)."""

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [_if_then("channel", ConsentChannel.GPC.value, {"properties": {"granted": {"const": False}}})]
        }
    )

    TOPIC: ClassVar[str] = topics.CONSENT_CHANGED

    purpose: Purpose
    granted: StrictBool
    channel: ConsentChannel
    policy_version: Version

    @model_validator(mode="after")
    def _gpc_only_withdraws(self) -> Self:
        # Global Privacy Control is an opt-out signal: a "grant" through it means nothing and would
        # otherwise be dropped without a trace.
        if self.channel is ConsentChannel.GPC and self.granted:
            raise ValueError("a gpc signal can only withdraw consent: granted must be false for channel gpc")
        return self


class ErasureRequested(EventData):
    """``erasure-requested``."""

    TOPIC: ClassVar[str] = topics.ERASURE_REQUESTED

    request_id: Uuid
    ground: ErasureGround
    identity_verified: StrictBool
    requested_via: RequestedVia


class DsarDetails(StrictModel):
    """``dsar-requested.details``; which keys are required/allowed depends on the right."""

    corrections: FieldMap | None = None
    circumstance: RestrictionCircumstance | None = None
    processing: ObjectionProcessing | None = None
    format: ExportFormat | None = None


#: right -> (details keys required, details keys allowed). ``format`` is optional for portability
#: (and access); when absent the dsar service uses ``json``.
DSAR_DETAILS_RULES: dict[Right, tuple[frozenset[str], frozenset[str]]] = {
    Right.ACCESS: (frozenset(), frozenset({"format"})),
    Right.PORTABILITY: (frozenset(), frozenset({"format"})),
    Right.RECTIFICATION: (frozenset({"corrections"}), frozenset({"corrections"})),
    Right.RESTRICTION: (frozenset({"circumstance"}), frozenset({"circumstance"})),
    Right.OBJECTION: (frozenset({"processing"}), frozenset({"processing"})),
}
_DETAIL_KEYS = ("corrections", "circumstance", "processing", "format")


def _dsar_schema_rules() -> dict[str, Any]:
    rules = []
    for right, (required, allowed) in DSAR_DETAILS_RULES.items():
        details: dict[str, Any] = {
            "properties": {key: {"type": "null"} for key in _DETAIL_KEYS if key not in allowed}
        }
        if required:
            details["required"] = sorted(required)
            details["properties"].update({key: {"not": {"type": "null"}} for key in sorted(required)})
            if "corrections" in required:
                details["properties"]["corrections"] = {"type": "object", "minProperties": 1}
            then: dict[str, Any] = {"required": ["details"], "properties": {"details": details}}
        else:
            then = {"properties": {"details": details}}
        rules.append(_if_then("right", right.value, then))
    return {"allOf": rules}


class DsarRequested(EventData):
    """``dsar-requested``.

    ``details`` rules: rectification requires non-empty ``corrections``; restriction
    requires ``circumstance``; objection requires ``processing``; access and
    portability may carry ``format``. Keys that do not belong to the right must be
    absent or null.
    """

    model_config = ConfigDict(json_schema_extra=_dsar_schema_rules())

    TOPIC: ClassVar[str] = topics.DSAR_REQUESTED

    request_id: Uuid
    right: Right
    identity_verified: StrictBool
    requested_via: RequestedVia
    details: DsarDetails = Field(default_factory=DsarDetails)

    @model_validator(mode="after")
    def _details_match_right(self) -> Self:
        required, allowed = DSAR_DETAILS_RULES[self.right]
        present = {key for key in _DETAIL_KEYS if getattr(self.details, key) is not None}
        if missing := sorted(required - present):
            raise ValueError(f"details.{missing[0]} is required for right {self.right.value}")
        if extra := sorted(present - allowed):
            raise ValueError(f"details.{extra[0]} is not allowed for right {self.right.value}")
        if self.details.corrections is not None and not self.details.corrections:
            raise ValueError("details.corrections must name at least one field")
        return self


class MergerNotice(EventData):
    """``merger-notice`` (Kafka key: ``transaction_id``)."""

    TOPIC: ClassVar[str] = topics.MERGER_NOTICE

    transaction_id: Identifier
    kind: MergerKind
    counterparty: Label
    effective_date: ContractDate
    data_categories: Categories
    notice_url: Url


class PolicyChanged(EventData):
    """``policy-changed`` (Kafka key: ``version``)."""

    TOPIC: ClassVar[str] = topics.POLICY_CHANGED

    version: Version
    effective_date: ContractDate
    material: StrictBool
    summary_sv: Summary
    summary_en: Summary
    url: Url


class LegalDisclosure(EventData):
    """``legal-disclosure``."""

    TOPIC: ClassVar[str] = topics.LEGAL_DISCLOSURE

    case_ref: Label
    authority: Label
    legal_basis: Basis
    data_categories: Categories
    may_notify_subject: StrictBool
    recipient_country: CountryCode
    outside_eea: StrictBool


#: The fields of one part of a chunked export answer: all four or none.
CHUNK_FIELDS = ("part", "parts", "export_chunk", "export_sha256")


def _ack_schema_rules() -> dict[str, Any]:
    not_null = {"not": {"type": "null"}}
    chunked = {
        "required": list(CHUNK_FIELDS),
        "properties": {
            **{name: not_null for name in CHUNK_FIELDS},
            "status": {"const": AckStatus.DONE.value},
            "export": {"type": "null"},
        },
    }
    rules: list[dict[str, Any]] = [
        _if_then(
            "status",
            AckStatus.RETAINED.value,
            {"required": ["retained_basis"], "properties": {"retained_basis": {"type": "string"}}},
        )
    ]
    rules += [
        {"if": {"properties": {name: not_null}, "required": [name]}, "then": chunked} for name in CHUNK_FIELDS
    ]
    return {"allOf": rules}


class PrivacyAck(EventData):
    """``privacy-acks``: a system's answer to a command. ``retained`` requires ``retained_basis``.

    An export too large for one message is answered in parts that share the ``command_id``: each has
    ``status`` done, ``part`` (1..``parts``), ``parts``, ``export_chunk`` (a consecutive slice of the
    UTF-8 JSON text of the whole export object) and ``export_sha256`` (hex SHA-256 of that whole text),
    and no ``export``. The four come together or not at all.
    """

    model_config = ConfigDict(json_schema_extra=_ack_schema_rules())

    TOPIC: ClassVar[str] = topics.PRIVACY_ACKS

    command_id: Uuid
    system: SystemId
    status: AckStatus
    retained_basis: Basis | None = None
    export: ExportObject | None = None
    detail: Detail | None = None
    part: ExportPart | None = None
    parts: ExportPart | None = None
    export_chunk: ExportChunk | None = None
    export_sha256: Sha256Hex | None = None

    @property
    def chunked(self) -> bool:
        """One part of an export answered in several messages."""
        return self.part is not None

    @model_validator(mode="after")
    def _retained_has_basis(self) -> Self:
        if self.status is AckStatus.RETAINED and self.retained_basis is None:
            raise ValueError("retained_basis is required when status is retained")
        return self

    @model_validator(mode="after")
    def _chunk_fields_together(self) -> Self:
        present = [name for name in CHUNK_FIELDS if getattr(self, name) is not None]
        if not present:
            return self
        if len(present) != len(CHUNK_FIELDS):
            missing = [name for name in CHUNK_FIELDS if name not in present]
            raise ValueError(f"a part of a chunked export needs {', '.join(missing)} too")
        assert self.part is not None and self.parts is not None
        if self.part > self.parts:
            raise ValueError("part must lie between 1 and parts")
        if self.status is not AckStatus.DONE:
            raise ValueError("a part of a chunked export has status done")
        if self.export is not None:
            raise ValueError("a part of a chunked export carries export_chunk, not export")
        return self


# --- outbound ----------------------------------------------------------------------------------

#: Actions scoped to one purpose: ``purpose`` is required for these and refused for the others.
PURPOSE_ACTIONS: frozenset[CommandAction] = frozenset(
    {
        CommandAction.SUPPRESS,
        CommandAction.UNSUPPRESS,
        CommandAction.REVOKE_SHARING,
        CommandAction.RESTORE_SHARING,
    }
)


def _command_schema_rules() -> dict[str, Any]:
    rules = [
        _if_then(
            "action",
            action.value,
            {"required": ["purpose"], "properties": {"purpose": {"not": {"type": "null"}}}}
            if action in PURPOSE_ACTIONS
            else {"properties": {"purpose": {"type": "null"}}},
        )
        for action in CommandAction
    ]
    rules.append(
        _if_then(
            "action",
            CommandAction.RECTIFY.value,
            {"required": ["fields"], "properties": {"fields": {"type": "object", "minProperties": 1}}},
        )
    )
    rules.append(
        {
            "if": {"not": {"properties": {"action": {"const": CommandAction.RECTIFY.value}}}},
            "then": {"properties": {"fields": {"type": "null"}}},
        }
    )
    rules.append(
        _if_then(
            "action",
            CommandAction.EXPORT.value,
            {"required": ["request_id"], "properties": {"request_id": {"type": "string"}}},
        )
    )
    return {"allOf": rules}


class PrivacyCommand(EventData):
    """``privacy-commands.<system>``: an instruction to one system, acknowledged on ``privacy-acks``.

    Rules: ``purpose`` is required for suppress/unsuppress/revoke_sharing/restore_sharing
    and refused otherwise; ``fields`` (non-empty) is required for rectify and refused
    otherwise; ``request_id`` is required for export. ``system`` must be the system of
    the topic the command is published on.
    """

    model_config = ConfigDict(json_schema_extra=_command_schema_rules())

    TOPIC: ClassVar[str] = topics.COMMAND_TOPIC_PREFIX

    command_id: Uuid
    system: SystemId
    action: CommandAction
    purpose: Purpose | None = None
    request_id: Uuid | None = None
    fields: FieldMap | None = None
    respond_by: Timestamp

    @classmethod
    def accepts_topic(cls, topic: str) -> bool:
        return topics.is_command_topic(topic)

    @model_validator(mode="after")
    def _fields_match_action(self) -> Self:
        if self.action in PURPOSE_ACTIONS and self.purpose is None:
            raise ValueError(f"purpose is required for action {self.action.value}")
        if self.action not in PURPOSE_ACTIONS and self.purpose is not None:
            raise ValueError(f"purpose is not allowed for action {self.action.value}")
        if self.action is CommandAction.RECTIFY and not self.fields:
            raise ValueError("fields (at least one) are required for action rectify")
        if self.action is not CommandAction.RECTIFY and self.fields is not None:
            raise ValueError(f"fields are not allowed for action {self.action.value}")
        if self.action is CommandAction.EXPORT and self.request_id is None:
            raise ValueError("request_id is required for action export")
        return self

    def check_envelope(self, topic: str, subject: str | None) -> None:
        if topic != topics.command_topic(self.system.value):
            raise ValueError("data.system does not match the command topic")


class DsarStatus(EventData):
    """``dsar-status``. ``reason`` is required when ``status`` is rejected or ``extended`` is true."""

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                _if_then(
                    "status",
                    CaseStatus.REJECTED.value,
                    {"required": ["reason"], "properties": {"reason": {"type": "string", "minLength": 1}}},
                ),
                {
                    "if": {"properties": {"extended": {"const": True}}, "required": ["extended"]},
                    "then": {
                        "required": ["reason"],
                        "properties": {"reason": {"type": "string", "minLength": 1}},
                    },
                },
            ]
        }
    )

    TOPIC: ClassVar[str] = topics.DSAR_STATUS

    request_id: Uuid
    right: CaseRight
    status: CaseStatus
    due_at: Timestamp
    extended: StrictBool
    reason: Detail | None = None

    @model_validator(mode="after")
    def _reason_when_needed(self) -> Self:
        if (self.status is CaseStatus.REJECTED or self.extended) and not self.reason:
            raise ValueError("reason is required when the request is rejected or extended")
        return self


class NotificationRequested(EventData):
    """``notification-requested``. ``notification_id`` is derived from the cause (replay-stable)."""

    TOPIC: ClassVar[str] = topics.NOTIFICATION_REQUESTED

    notification_id: NotificationId
    template: TemplateName
    category: NotificationCategory
    locale: Locale
    params: Params = Field(default_factory=dict)


class PrivacyAudit(EventData):
    """``privacy-audit``. ``detail`` must not contain plaintext PII (not machine-checkable)."""

    TOPIC: ClassVar[str] = topics.PRIVACY_AUDIT

    action: AuditAction
    actor: Label
    ref: Ref
    detail: Detail | None = None


# --- topic table ---------------------------------------------------------------------------------

TOPIC_MODELS: dict[str, type[EventData]] = {
    model.TOPIC: model
    for model in (
        UserRegistered,
        ConsentChanged,
        ErasureRequested,
        DsarRequested,
        MergerNotice,
        PolicyChanged,
        LegalDisclosure,
        PrivacyAck,
        DsarStatus,
        NotificationRequested,
        PrivacyAudit,
    )
}
"""Topic -> data model for the fixed topics; the command family is :class:`PrivacyCommand`."""


def data_model_for(topic: str) -> type[EventData]:
    """The ``data`` model of a contract topic; raises :class:`schemas.topics.UnknownTopic` otherwise."""
    if topic in TOPIC_MODELS:
        return TOPIC_MODELS[topic]
    if topics.is_command_topic(topic):
        return PrivacyCommand
    raise topics.UnknownTopic(topic)
