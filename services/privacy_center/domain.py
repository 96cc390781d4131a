"""The privacy center's decisions as pure functions: what a form asks for, which events it becomes,
the ids that make a second submit a no-op, and what the services' answers mean for the pages.

No I/O here: views read the form and the services, call these, and write what they return.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.enums import (
    ConsentChannel,
    ErasureGround,
    ExportFormat,
    ObjectionProcessing,
    RequestedVia,
    RestrictionCircumstance,
    Right,
)
from schemas.events import ConsentChanged, DsarDetails, DsarRequested, ErasureRequested, EventData
from schemas.topics import CONSENT_CHANGED, DSAR_REQUESTED, ERASURE_REQUESTED

#: Every purpose, in the order a person reads them: what the service needs first, sharing last.
PURPOSES: tuple[str, ...] = (
    "service_delivery", "payments", "support", "security", "bookkeeping", "service_improvement",
    "personalization", "analytics", "marketing_email", "third_party_marketing", "partner_sharing",
    "group_sharing", "profiling",
)
#: What a person can switch: the purposes that rest on consent (or, outside the EEA, may be opted
#: out of). The rest rest on contract, law or legitimate interest (objection is its own right).
SWITCHABLE: frozenset[str] = frozenset({
    "analytics", "profiling", "third_party_marketing", "marketing_email", "partner_sharing", "group_sharing",
})
RIGHTS: tuple[str, ...] = ("access", "portability", "rectification", "erasure", "restriction", "objection")
FORMATS: tuple[str, ...] = tuple(f.value for f in ExportFormat)
#: The grounds a person can name (the retention sweep's own ground is not theirs to choose).
GROUNDS: tuple[str, ...] = tuple(g.value for g in ErasureGround if g is not ErasureGround.RETENTION_EXPIRED)
CIRCUMSTANCES: tuple[str, ...] = tuple(c.value for c in RestrictionCircumstance)
PROCESSINGS: tuple[str, ...] = tuple(p.value for p in ObjectionProcessing)
#: The registration's fields a person can ask to correct (form fields named after them).
RECTIFIABLE: tuple[str, ...] = ("name", "email", "company", "phone", "country")
MAX_NOTE = 2000
MAX_CORRECTION = 200

_NAMESPACE = uuid.UUID("6f1d3c1e-8a59-4f0e-9a0c-2b51c1b7d0a4")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,251}\.[^@\s]{1,63}$")


class FormProblem(ValueError):
    """The form cannot be accepted; `key` names the message that says why (in the person's language)."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


Fields = Callable[[str], "str | None"]


# --- addresses, tokens, ids ----------------------------------------------------------------------


def normalise_email(text: str | None) -> str | None:
    """The address as the directory's keyed hash sees it (trimmed, lower case), or None if it is none."""
    if text is None:
        return None
    address = text.strip().lower()
    if len(address) > 254 or not _EMAIL.match(address):
        return None
    return address


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(b"privacy-center-sign-in:" + token.encode()).hexdigest()


def is_token(text: str) -> bool:
    return 20 <= len(text) <= 128 and re.fullmatch(r"[A-Za-z0-9_-]+", text) is not None


def submission_id(text: str | None) -> uuid.UUID:
    """The form's own id (a hidden field, new with every page): what makes a second submit a no-op."""
    try:
        return uuid.UUID(str(text))
    except ValueError:
        raise FormProblem("form.stale") from None


def request_id_for(submission: uuid.UUID) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"request:{submission}"))


def event_id_for(submission: uuid.UUID, what: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"event:{submission}:{what}"))


def sign_in_notification_id(hashed_token: str) -> str:
    return f"privacy-center:sign-in:{hashed_token[:40]}"


def rate_key(kind: str, value: str) -> str:
    """Rate-limit key naming no one in memory: a hash of the address or client."""
    return kind + ":" + hashlib.sha256(value.encode()).hexdigest()[:32]


def client_of(remote: str | None, forwarded_for: str | None, trust_forwarded: bool) -> str:
    if trust_forwarded and forwarded_for:
        return forwarded_for.split(",")[0].strip()[:64] or "unknown"
    return (remote or "unknown")[:64]


# --- forms -> events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    topic: str
    data: EventData
    event_id: str


@dataclass(frozen=True)
class RightRequest:
    right: str
    request_id: str
    event: Outgoing
    #: What the person wrote beside the event's own fields (explanation, reasons): kept sealed.
    note: str | None = None


def _choice(fields: Fields, name: str, allowed: Sequence[str]) -> str:
    value = (fields(name) or "").strip()
    if value not in allowed:
        raise FormProblem(f"form.missing.{name}")
    return value


def _note(fields: Fields, required: bool) -> str | None:
    text = (fields("explanation") or "").strip()
    if len(text) > MAX_NOTE:
        raise FormProblem("form.too_long")
    if required and not text:
        raise FormProblem("form.missing.explanation")
    return text or None


def right_request(fields: Fields, submission: uuid.UUID) -> RightRequest:
    """The event one right's form asks for (identity verified: the person is signed in)."""
    right = _choice(fields, "right", RIGHTS)
    request_id = request_id_for(submission)
    event_id = event_id_for(submission, right)
    via = RequestedVia.WEB_FORM
    if right == "erasure":
        ground = _choice(fields, "ground", GROUNDS)
        data: EventData = ErasureRequested(request_id=uuid.UUID(request_id), ground=ErasureGround(ground),
                                           identity_verified=True, requested_via=via)
        return RightRequest(right, request_id, Outgoing(ERASURE_REQUESTED, data, event_id), _note(fields, False))
    note: str | None = None
    if right in ("access", "portability"):
        details = DsarDetails(format=ExportFormat(_choice(fields, "format", FORMATS)))
    elif right == "rectification":
        corrections = {}
        for name in RECTIFIABLE:
            value = (fields(name) or "").strip()
            if len(value) > MAX_CORRECTION:
                raise FormProblem("form.too_long")
            if value:
                corrections[name] = value
        if not corrections:
            raise FormProblem("form.missing.corrections")
        note = _note(fields, True)
        details = DsarDetails(corrections=corrections)
    elif right == "restriction":
        details = DsarDetails(circumstance=RestrictionCircumstance(_choice(fields, "circumstance", CIRCUMSTANCES)))
        note = _note(fields, False)
    else:
        details = DsarDetails(processing=ObjectionProcessing(_choice(fields, "processing", PROCESSINGS)))
        note = _note(fields, False)
    data = DsarRequested(request_id=uuid.UUID(request_id), right=Right(right), identity_verified=True,
                         requested_via=via, details=details)
    return RightRequest(right, request_id, Outgoing(DSAR_REQUESTED, data, event_id), note)


def consent_changes(fields: Fields, names: set[str], current: Mapping[str, bool], switchable: set[str],
                    submission: uuid.UUID, policy_version: str) -> list[Outgoing]:
    """`consent-changed` for each switchable purpose the form sets to something else than it is now.

    Fields are named by purpose id with the values `on` and `off`; a field for a purpose that is not
    switchable, or another value, is refused (nothing is half done)."""
    wanted: dict[str, bool] = {}
    for name in sorted(names):
        if name in ("csrf_token", "submission"):
            continue
        if name not in switchable:
            raise FormProblem("form.unknown_purpose")
        value = fields(name)
        if value not in ("on", "off"):
            raise FormProblem("form.bad_choice")
        wanted[name] = value == "on"
    return [
        Outgoing(CONSENT_CHANGED,
                 ConsentChanged(purpose=purpose, granted=granted,  # type: ignore[arg-type]  # validated
                                channel=ConsentChannel.PREFERENCE_CENTER, policy_version=policy_version),
                 event_id_for(submission, f"consent:{purpose}:{'on' if granted else 'off'}"))
        for purpose, granted in wanted.items() if current.get(purpose) != granted
    ]


# --- what the services answer, for the pages ---------------------------------------------------


@dataclass(frozen=True)
class PurposeView:
    purpose: str
    allowed: bool
    basis: str
    switchable: bool
    #: The person's own choice as the ledger has it (None: never asked or never answered).
    granted: bool | None
    since: datetime | None
    #: Why not allowed when a choice does not explain it: restriction, objection, age.
    blocked_by: str | None = None


def purpose_views(consents: Mapping[str, Any]) -> list[PurposeView]:
    by_purpose = {str(p.get("purpose")): p for p in consents.get("purposes", []) if isinstance(p, dict)}
    minor = bool(consents.get("under_18_at_registration"))
    restricted = bool(consents.get("restricted"))
    objections = set(consents.get("objections") or [])
    views = []
    for purpose in PURPOSES:
        entry = by_purpose.get(purpose)
        if entry is None:
            continue
        consent = entry.get("consent") or None
        granted = bool(consent["granted"]) if consent else None
        since = datetime.fromisoformat(consent["effective_at"]) if consent and consent.get("effective_at") else None
        blocked = None
        if restricted:
            blocked = "restricted"
        elif minor and purpose in SWITCHABLE:
            blocked = "minor"
        elif objections and not entry.get("allowed"):
            blocked = "objection"
        views.append(PurposeView(purpose, bool(entry.get("allowed")), str(entry.get("basis") or ""),
                                 purpose in SWITCHABLE and not minor, granted, since, blocked))
    return views


def current_choices(views: Sequence[PurposeView]) -> dict[str, bool]:
    """What each switchable purpose is now, as its switch shows it: allowed or not."""
    return {v.purpose: v.allowed for v in views if v.switchable}


@dataclass(frozen=True)
class RequestView:
    request_id: str
    right: str
    status: str
    received_at: datetime
    due_at: datetime
    extended: bool
    overdue: bool
    open: bool
    reason: str | None
    timeline: list[tuple[datetime, str]] = field(default_factory=list)


TERMINAL = frozenset({"completed", "rejected", "cancelled", "closed_unverified"})


def erasure_completed(answer: Mapping[str, Any]) -> bool:
    """Whether the person's requests (dsar's answer) include a completed erasure: nothing of theirs may
    be shown or kept here any more."""
    return any(isinstance(r, Mapping) and r.get("right") == "erasure" and r.get("status") == "completed"
               for r in answer.get("requests", []))


def request_views(answer: Mapping[str, Any]) -> list[RequestView]:
    views = []
    for r in answer.get("requests", []):
        timeline = [(datetime.fromisoformat(r["received_at"]), "received")]
        timeline += [(datetime.fromisoformat(t["at"]), str(t["event"])) for t in r.get("timeline", [])]
        views.append(RequestView(
            request_id=str(r["request_id"]), right=str(r["right"]), status=str(r["status"]),
            received_at=datetime.fromisoformat(r["received_at"]), due_at=datetime.fromisoformat(r["due_at"]),
            extended=bool(r.get("extended")), overdue=bool(r.get("overdue")),
            open=str(r["status"]) not in TERMINAL, reason=r.get("reason") or r.get("extension_reason"),
            timeline=timeline,
        ))
    return views
