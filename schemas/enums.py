"""Every enumeration of the contract (see DESIGN.md), as ``StrEnum`` types.

Values are the wire values; members compare equal to their string value, so
``Purpose.ANALYTICS == "analytics"``. Unknown values are rejected by the models.
"""

from __future__ import annotations

from enum import StrEnum

from schemas.topics import ALL_SYSTEMS


class Purpose(StrEnum):
    """The 13 processing purposes."""

    SERVICE_DELIVERY = "service_delivery"
    PAYMENTS = "payments"
    SUPPORT = "support"
    SECURITY = "security"
    BOOKKEEPING = "bookkeeping"
    SERVICE_IMPROVEMENT = "service_improvement"
    PERSONALIZATION = "personalization"
    ANALYTICS = "analytics"
    MARKETING_EMAIL = "marketing_email"
    THIRD_PARTY_MARKETING = "third_party_marketing"
    PARTNER_SHARING = "partner_sharing"
    GROUP_SHARING = "group_sharing"
    PROFILING = "profiling"


class Locale(StrEnum):
    SV = "sv"
    EN = "en"


class RegistrationSource(StrEnum):
    """``user-registered.source``."""

    WEB = "web"
    SEMINAR = "seminar"
    PARTNER = "partner"
    SURVEY = "survey"
    SOCIAL_LOGIN = "social_login"
    SUPPORT = "support"
    IMPORT = "import"


class ConsentChannel(StrEnum):
    """``consent-changed.channel``."""

    EMAIL_FOOTER = "email_footer"
    PREFERENCE_CENTER = "preference_center"
    SUPPORT = "support"
    REGISTRATION = "registration"
    COOKIE_BANNER = "cookie_banner"
    GPC = "gpc"
    API = "api"


class ErasureGround(StrEnum):
    """``erasure-requested.ground`` (GDPR Art. 17(1) grounds, plus retention expiry)."""

    NO_LONGER_NECESSARY = "no_longer_necessary"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    OBJECTION_LEGITIMATE_INTEREST = "objection_legitimate_interest"
    MARKETING_OBJECTION = "marketing_objection"
    UNLAWFUL_PROCESSING = "unlawful_processing"
    CHILD_DATA = "child_data"
    RETENTION_EXPIRED = "retention_expired"


class RequestedVia(StrEnum):
    EMAIL = "email"
    WEB_FORM = "web_form"
    SUPPORT = "support"
    INTERNAL = "internal"


class Right(StrEnum):
    """``dsar-requested.right`` (GDPR Art. 15, 16, 18, 20, 21). Erasure has its own topic."""

    ACCESS = "access"
    PORTABILITY = "portability"
    RECTIFICATION = "rectification"
    RESTRICTION = "restriction"
    OBJECTION = "objection"


class CaseRight(StrEnum):
    """``dsar-status.right``: the rights of :class:`Right` plus ``erasure``.

    The dsar service runs cases for ``erasure-requested`` too and reports their
    status on ``dsar-status``, so the status topic needs the extra value.
    """

    ACCESS = "access"
    PORTABILITY = "portability"
    RECTIFICATION = "rectification"
    RESTRICTION = "restriction"
    OBJECTION = "objection"
    ERASURE = "erasure"


class RestrictionCircumstance(StrEnum):
    """``dsar-requested.details.circumstance`` (GDPR Art. 18(1)(a)-(d))."""

    ACCURACY_CONTESTED = "accuracy_contested"
    UNLAWFUL_PROCESSING = "unlawful_processing"
    LEGAL_CLAIMS = "legal_claims"
    OBJECTION_PENDING = "objection_pending"


class ObjectionProcessing(StrEnum):
    """``dsar-requested.details.processing`` (GDPR Art. 21)."""

    MARKETING = "marketing"
    PROFILING = "profiling"
    LEGITIMATE_INTEREST = "legitimate_interest"


class ExportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


class MergerKind(StrEnum):
    MERGER = "merger"
    ACQUISITION = "acquisition"
    ASSET_SALE = "asset_sale"
    REORGANISATION = "reorganisation"


class AckStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"
    NOT_FOUND = "not_found"
    RETAINED = "retained"


class CommandAction(StrEnum):
    SUPPRESS = "suppress"
    UNSUPPRESS = "unsuppress"
    REVOKE_SHARING = "revoke_sharing"
    RESTORE_SHARING = "restore_sharing"
    ERASE = "erase"
    RESTRICT = "restrict"
    LIFT_RESTRICTION = "lift_restriction"
    RECTIFY = "rectify"
    EXPORT = "export"


class CaseStatus(StrEnum):
    """``dsar-status.status``."""

    RECEIVED = "received"
    IDENTITY_PENDING = "identity_pending"
    IN_PROGRESS = "in_progress"
    AWAITING_SYSTEMS = "awaiting_systems"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    CLOSED_UNVERIFIED = "closed_unverified"


class NotificationCategory(StrEnum):
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


class SystemId(StrEnum):
    """Every system id of the contract: the downstream systems and the three services.

    Kept equal to :data:`schemas.topics.ALL_SYSTEMS` (checked at import).
    """

    ACCOUNTS = "accounts"
    BILLING = "billing"
    MARKETING_EMAIL = "marketing_email"
    ANALYTICS = "analytics"
    LOGS = "logs"
    SUPPORT = "support"
    PARTNERS = "partners"
    IPCOM_GROUP = "ipcom_group"
    CONSENT = "consent"
    DSAR = "dsar"
    NOTIFIER = "notifier"


if tuple(SystemId) != ALL_SYSTEMS:  # pragma: no cover - guards an edit of one list without the other
    raise RuntimeError("schemas.enums.SystemId and schemas.topics.ALL_SYSTEMS disagree")
