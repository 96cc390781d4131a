"""One valid, deterministic example event per topic (docs, AsyncAPI examples, tests)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

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
    Purpose,
    RegistrationSource,
    RequestedVia,
    Right,
    SystemId,
)
from schemas.envelope import CloudEvent, new_event
from schemas.events import (
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

EXAMPLE_TIME = datetime(2024, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
EXAMPLE_SUBJECT = "usr_4f9c2a"
EXAMPLE_SOURCE = "urn:isopartner:platform:web"
EXAMPLE_REQUEST_ID = UUID("6f1c3a52-8a61-4a43-9d0e-0d7a3a4f3b10")
EXAMPLE_COMMAND_ID = UUID("0b7d9e8e-33a4-4e5f-a3a9-6f0f5a3c2d11")
_EVENT_IDS = {
    topic: f"00000000-0000-4000-8000-{index:012d}" for index, topic in enumerate(topics.DATA_TOPICS, start=1)
}


def example_data(topic: str) -> EventData:
    """A valid ``data`` model for ``topic`` (a ``rectify`` command for the command family)."""
    if topics.is_command_topic(topic):
        return PrivacyCommand(
            command_id=EXAMPLE_COMMAND_ID,
            system=SystemId(topics.command_system(topic)),
            action=CommandAction.RECTIFY,
            request_id=EXAMPLE_REQUEST_ID,
            fields={"phone": "+46 8 123 456 78"},
            respond_by=EXAMPLE_TIME + timedelta(days=7),
        )
    builders: dict[str, EventData] = {
        topics.USER_REGISTERED: UserRegistered(
            email="anna.svensson@example.se",
            name="Anna Svensson",
            company="Exempel AB",
            phone="+46 70 123 45 67",
            locale=Locale.SV,
            country="SE",
            birth_date=date(1990, 4, 12),
            source=RegistrationSource.SEMINAR,
            consents=[
                ConsentGrant(purpose=Purpose.MARKETING_EMAIL, granted=True),
                ConsentGrant(purpose=Purpose.ANALYTICS, granted=False),
            ],
            parent_account=None,
        ),
        topics.CONSENT_CHANGED: ConsentChanged(
            purpose=Purpose.MARKETING_EMAIL,
            granted=False,
            channel=ConsentChannel.EMAIL_FOOTER,
            policy_version="2021-10-30",
        ),
        topics.ERASURE_REQUESTED: ErasureRequested(
            request_id=EXAMPLE_REQUEST_ID,
            ground=ErasureGround.CONSENT_WITHDRAWN,
            identity_verified=False,
            requested_via=RequestedVia.WEB_FORM,
        ),
        topics.DSAR_REQUESTED: DsarRequested(
            request_id=EXAMPLE_REQUEST_ID,
            right=Right.PORTABILITY,
            identity_verified=False,
            requested_via=RequestedVia.EMAIL,
            details=DsarDetails(format=ExportFormat.JSON),
        ),
        topics.MERGER_NOTICE: MergerNotice(
            transaction_id="tx-2024-001",
            kind=MergerKind.ACQUISITION,
            counterparty="Example Holding AB",
            effective_date=date(2024, 9, 1),
            data_categories=["contact", "account"],
            notice_url="https://www.isopartner.se/merger/tx-2024-001",
        ),
        topics.POLICY_CHANGED: PolicyChanged(
            version="2024-06-01",
            effective_date=date(2024, 6, 1),
            material=True,
            summary_sv="Vi har uppdaterat hur länge vi sparar uppgifter.",
            summary_en="We have updated how long we keep data.",
            url="https://www.isopartner.se/integritetspolicy",
        ),
        topics.LEGAL_DISCLOSURE: LegalDisclosure(
            case_ref="AM-1234-24",
            authority="Polismyndigheten",
            legal_basis="Rättegångsbalken 27 kap.",
            data_categories=["contact"],
            may_notify_subject=True,
            recipient_country="SE",
            outside_eea=False,
        ),
        topics.PRIVACY_ACKS: PrivacyAck(
            command_id=EXAMPLE_COMMAND_ID,
            system=SystemId.BILLING,
            status=AckStatus.RETAINED,
            retained_basis="Bokföringslagen 7:2 (7 years)",
            detail="invoices kept, other data restricted",
        ),
        topics.DSAR_STATUS: DsarStatus(
            request_id=EXAMPLE_REQUEST_ID,
            right=CaseRight.PORTABILITY,
            status=CaseStatus.IN_PROGRESS,
            due_at=EXAMPLE_TIME + timedelta(days=30),
            extended=False,
        ),
        topics.NOTIFICATION_REQUESTED: NotificationRequested(
            notification_id=f"dsar:{EXAMPLE_REQUEST_ID}:verification",
            template="verification_code",
            category=NotificationCategory.TRANSACTIONAL,
            locale=Locale.SV,
            params={"code": "482913", "expires_minutes": 1440},
        ),
        topics.PRIVACY_AUDIT: PrivacyAudit(
            action="command.sent",
            actor="dsar",
            ref=str(EXAMPLE_COMMAND_ID),
            detail="rectify sent to accounts",
        ),
    }
    if topic not in builders:
        raise topics.UnknownTopic(topic)
    return builders[topic]


def example_event(topic: str) -> CloudEvent[Any]:
    """A valid event for ``topic`` with a fixed id and time."""
    return new_event(
        topic,
        example_data(topic),
        source=EXAMPLE_SOURCE,
        subject=None if topic in topics.SUBJECTLESS_TOPICS else EXAMPLE_SUBJECT,
        time=EXAMPLE_TIME,
        id=_EVENT_IDS[topic],
    )
