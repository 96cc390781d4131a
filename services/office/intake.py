"""Intake: what reached the privacy address by email or phone, turned into contract events.

A request is published as `dsar-requested` (or `erasure-requested`) with `identity_verified: false`, so
the dsar service sends the subject a one-time code before anything is done; an opt-out is
`consent-changed` with channel `support`. Parsing and building are pure; publishing goes through the
office's outbox with its audit entry (see `record_request`, `record_opt_out`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from schemas.enums import (
    ConsentChannel,
    ErasureGround,
    ExportFormat,
    ObjectionProcessing,
    Purpose,
    RequestedVia,
    RestrictionCircumstance,
    Right,
)
from schemas.events import ConsentChanged, DsarDetails, DsarRequested, ErasureRequested, EventData
from schemas.topics import CONSENT_CHANGED, DSAR_REQUESTED, ERASURE_REQUESTED

#: The privacy policy's version the opt-out is recorded under (the policy of 2021-10-30).
POLICY_VERSION = "2021-10-30"
ERASURE = "erasure"
RIGHTS: tuple[str, ...] = (*(r.value for r in Right), ERASURE)
#: How a request reached the office: a letter or email to the privacy address, or a call to support.
VIA: tuple[str, ...] = (RequestedVia.EMAIL.value, RequestedVia.SUPPORT.value)
#: Grounds an operator may record (retention expiry is the services' own, never a person's request).
GROUNDS: tuple[str, ...] = tuple(g.value for g in ErasureGround if g is not ErasureGround.RETENTION_EXPIRED)
CIRCUMSTANCES: tuple[str, ...] = tuple(c.value for c in RestrictionCircumstance)
PROCESSING: tuple[str, ...] = tuple(p.value for p in ObjectionProcessing)
FORMATS: tuple[str, ...] = tuple(f.value for f in ExportFormat)
#: Purposes a person opts out of by email (the ones a withdrawal can stop).
OPT_OUT_PURPOSES: tuple[str, ...] = (
    Purpose.MARKETING_EMAIL.value, Purpose.THIRD_PARTY_MARKETING.value, Purpose.PARTNER_SHARING.value,
    Purpose.GROUP_SHARING.value, Purpose.PROFILING.value, Purpose.ANALYTICS.value, Purpose.PERSONALIZATION.value,
)
MAX_CORRECTIONS = 20


class IntakeError(ValueError):
    """The form does not describe a request the contract can carry: `key` names the office's text that
    says what to fix (`intake.error.*` in `texts`), `values` fill it in."""

    def __init__(self, key: str, **values: object):
        super().__init__(key if not values else f"{key} {values}")
        self.key = f"intake.error.{key}"
        self.values = values


@dataclass(frozen=True)
class RequestIntake:
    right: str
    via: str
    ground: str | None = None
    circumstance: str | None = None
    processing: str | None = None
    format: str | None = None
    corrections: dict[str, str] = field(default_factory=dict)


def _choice(form: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = (form.get(name) or "").strip()
    if value not in allowed:
        raise IntakeError(name)  # "choose the <name>"
    return value


def parse_corrections(text: str) -> dict[str, str]:
    """`field: new value` lines (e.g. `email: anna@example.se`) -> {field: value}."""
    corrections: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if not sep or not name or not value:
            raise IntakeError("correction_line")
        corrections[name] = value
    if not corrections:
        raise IntakeError("no_corrections")
    if len(corrections) > MAX_CORRECTIONS:
        raise IntakeError("too_many", n=MAX_CORRECTIONS)
    return corrections


def parse_request(form: Mapping[str, str]) -> RequestIntake:
    right = _choice(form, "right", RIGHTS)
    via = _choice(form, "requested_via", VIA)
    if right == ERASURE:
        return RequestIntake(right, via, ground=_choice(form, "ground", GROUNDS))
    if right == Right.RESTRICTION:
        return RequestIntake(right, via, circumstance=_choice(form, "circumstance", CIRCUMSTANCES))
    if right == Right.OBJECTION:
        return RequestIntake(right, via, processing=_choice(form, "processing", PROCESSING))
    if right == Right.PORTABILITY:
        return RequestIntake(right, via, format=_choice(form, "format", FORMATS))
    if right == Right.RECTIFICATION:
        return RequestIntake(right, via, corrections=parse_corrections(form.get("corrections") or ""))
    return RequestIntake(right, via)


def request_event(intake: RequestIntake, request_id: uuid.UUID) -> tuple[str, EventData]:
    """The contract event for a request taken in by the office (identity not yet verified)."""
    try:
        if intake.right == ERASURE:
            return ERASURE_REQUESTED, ErasureRequested(
                request_id=request_id, ground=ErasureGround(intake.ground or ""), identity_verified=False,
                requested_via=RequestedVia(intake.via))
        details = DsarDetails.model_validate({
            "corrections": intake.corrections or None, "circumstance": intake.circumstance,
            "processing": intake.processing, "format": intake.format})
        return DSAR_REQUESTED, DsarRequested(
            request_id=request_id, right=Right(intake.right), identity_verified=False,
            requested_via=RequestedVia(intake.via), details=details)
    except (ValidationError, ValueError) as exc:
        raise IntakeError("contract", problem=_first_error(exc)) from None


def opt_out_events(purposes: list[str]) -> list[tuple[str, EventData]]:
    """One `consent-changed` (withdrawn, channel support) per purpose the person opted out of."""
    chosen = [p for p in purposes if p in OPT_OUT_PURPOSES]
    if not chosen or len(chosen) != len(purposes):
        raise IntakeError("purposes")
    return [(CONSENT_CHANGED, ConsentChanged(purpose=Purpose(p), granted=False, channel=ConsentChannel.SUPPORT,
                                             policy_version=POLICY_VERSION)) for p in dict.fromkeys(chosen)]


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
    return str(exc)
