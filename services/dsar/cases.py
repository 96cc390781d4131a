"""Data-subject-request cases as pure functions over an immutable `Case` value.

Every operation takes a case (plus the facts it needs, including `now`) and returns a `Decision`: the
new case and the effects the caller must carry out in the same transaction (publish the status,
request a notification, issue commands, assemble an export, shred the subject's key, ...). Nothing
here does I/O, reads the clock or draws random numbers, so the whole workflow is unit-testable and a
replay of the same inputs makes the same decision (command ids are derived, not random: keyed with the
case's own random secret, which the caller draws when the case is opened, so no system can compute
another system's command id from the request id it sees).

Statuses are exactly the contract's `dsar-status` statuses; `TRANSITIONS` is the only way between
them and `_move` refuses anything else, so no sequence of operations reaches an illegal state.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from privacy_runtime.datamap import RETAIN, DataMap
from schemas.enums import (
    AckStatus,
    CaseRight,
    CaseStatus,
    ErasureGround,
    ExportFormat,
    ObjectionProcessing,
    RequestedVia,
    RestrictionCircumstance,
    Right,
)
from services.dsar import reviews
from services.dsar.reviews import Review

# --- statuses, rights, transitions ----------------------------------------------------------------

RECEIVED = CaseStatus.RECEIVED
IDENTITY_PENDING = CaseStatus.IDENTITY_PENDING
IN_PROGRESS = CaseStatus.IN_PROGRESS
AWAITING_SYSTEMS = CaseStatus.AWAITING_SYSTEMS
COMPLETED = CaseStatus.COMPLETED
REJECTED = CaseStatus.REJECTED
CANCELLED = CaseStatus.CANCELLED
CLOSED_UNVERIFIED = CaseStatus.CLOSED_UNVERIFIED

STATUSES: tuple[CaseStatus, ...] = tuple(CaseStatus)
TERMINAL: frozenset[CaseStatus] = frozenset({COMPLETED, REJECTED, CANCELLED, CLOSED_UNVERIFIED})
OPEN: frozenset[CaseStatus] = frozenset(STATUSES) - TERMINAL

ERASURE = CaseRight.ERASURE
ACCESS = CaseRight.ACCESS
PORTABILITY = CaseRight.PORTABILITY
RECTIFICATION = CaseRight.RECTIFICATION
RESTRICTION = CaseRight.RESTRICTION
OBJECTION = CaseRight.OBJECTION
RIGHTS: tuple[CaseRight, ...] = tuple(CaseRight)
#: A request the services opened themselves (child's registration, retention sweep).
INTERNAL = RequestedVia.INTERNAL
RETENTION_EXPIRED = ErasureGround.RETENTION_EXPIRED
#: Why a retention erasure waits for an operator: the sweep sees only the events the dsar service
#: consumes (registrations, consent changes, rights requests), not logins or purchases, so "inactive"
#: may be a paying customer whose account still needs the data.
RETENTION_REVIEW = reviews.retention_expired().text
#: Why a retention erasure waiting for review was cancelled (see `subject_active`).
ACTIVE_AGAIN = "the subject was active again"

#: status -> statuses it may move to. Terminal statuses lead nowhere.
TRANSITIONS: Mapping[CaseStatus, frozenset[CaseStatus]] = {
    RECEIVED: frozenset({IDENTITY_PENDING, IN_PROGRESS, REJECTED, CANCELLED}),
    IDENTITY_PENDING: frozenset({IN_PROGRESS, CLOSED_UNVERIFIED, REJECTED, CANCELLED}),
    # in_progress -> completed: nothing to send (marketing objection, operator-resolved review).
    IN_PROGRESS: frozenset({AWAITING_SYSTEMS, COMPLETED, REJECTED, CANCELLED}),
    # awaiting_systems -> in_progress: a system answered `failed`, the case goes to manual review.
    # No rejection once commands are out: systems may already have acted on them.
    AWAITING_SYSTEMS: frozenset({IN_PROGRESS, COMPLETED, CANCELLED}),
    COMPLETED: frozenset(),
    REJECTED: frozenset(),
    CANCELLED: frozenset(),
    CLOSED_UNVERIFIED: frozenset(),
}

#: Ack statuses that settle a step; `failed` sends the case to manual review instead.
SETTLED = frozenset({AckStatus.DONE, AckStatus.NOT_FOUND, AckStatus.RETAINED})
ACK_STATUSES = SETTLED | {AckStatus.FAILED}

#: Objections that are absolute (Art. 21(2)-(3)); the consent service withdraws them itself.
ABSOLUTE_OBJECTIONS = frozenset({"marketing", "profiling"})
#: The purposes the consent service withdraws for an absolute objection (named in the email).
ABSOLUTE_OBJECTION_PURPOSES: Mapping[str, tuple[str, ...]] = {
    "marketing": ("marketing_email", "third_party_marketing", "profiling"),
    "profiling": ("profiling",),
}
#: Rights whose completion is told to the subject with `request_completed` (Art. 12(3), 19).
#: Erasure has its own email; access and portability end with the `export_ready` link.
OUTCOME_NOTIFIED: frozenset[CaseRight] = frozenset({RECTIFICATION, RESTRICTION, OBJECTION})

#: Systems told last in an erasure. The order of an erasure is:
#:   1. `erase` (and revoke/restrict) to every other system, the dsar service itself included;
#:   2. when all of them answered: request the `erasure_completed` email (unsealed, so it survives
#:      the shredding in step 4), then send `erase` to the notifier, which still holds the address;
#:   3. the notifier answers;
#:   4. the case completes and the dsar service shreds the subject's key.
#: The notifier consumes `notification-requested` and its command topic independently, so step 2
#: publishes the email request first (outbox order) but cannot force the notifier to render it
#: before it erases; the notifier's erase handler must first take what is already queued for the
#: subject, or the email can no longer be addressed.
LAST_SYSTEMS: frozenset[str] = frozenset({"notifier"})
FIRST_PHASE = 1
LAST_PHASE = 2

MAX_EXTENSION_MONTHS = 2
DUE_SOON = timedelta(days=3)

#: Command ids of cases stored before they had a `command_secret` (see `_command_id`).
COMMAND_NAMESPACE = uuid.UUID("4d1c5b7e-0f3a-4e59-9d0c-5b8a2f6e7d13")

IMY = {"authority": "Integritetsskyddsmyndigheten (IMY)", "authority_url": "https://www.imy.se"}


class CaseError(ValueError):
    """The operation does not apply to the case as it stands (HTTP 409 / ignored on a stream)."""


class IllegalTransition(CaseError):
    pass


# --- deadlines ----------------------------------------------------------------------------------

#: Deadlines are counted in calendar months where the controller is (tzdata is a pinned dependency).
CONTROLLER_TIME_ZONE = ZoneInfo("Europe/Stockholm")


def add_months(moment: datetime, months: int) -> datetime:
    """The same day `months` calendar months later, clamped to the month's end (Jan 31 -> Feb 28/29).

    Same time of day: earlier than Regulation 1182/71's end-of-day reading, so never late.
    """
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def due_date(received_at: datetime, extension_months: int = 0) -> datetime:
    """One calendar month after receipt (Art. 12(3)), plus any extension, counted from receipt on the
    controller's calendar (Sweden): a request received on 31 March at 00:30 in Stockholm is due on
    30 April, which in UTC would have been 1 May. In UTC, like every time the service keeps."""
    local = add_months(received_at.astimezone(CONTROLLER_TIME_ZONE), 1 + extension_months)
    return local.astimezone(UTC)


def span(delta: timedelta) -> str:
    """A period in words for reasons shown to people ("14 days", "2 hours", "30 seconds")."""
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


# --- the case value -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One command to one system, and what the system answered."""

    system: str
    action: str
    purpose: str | None = None
    phase: int = FIRST_PHASE
    #: What the data map says the system will answer (`retained` under a legal hold), and why.
    expect: str | None = None
    basis: str | None = None
    attempt: int = 1
    command_id: str | None = None
    outcome: str | None = None
    retained_basis: str | None = None

    @property
    def key(self) -> str:
        return f"{self.system}:{self.action}:{self.purpose or '-'}"

    @property
    def issued(self) -> bool:
        return self.command_id is not None

    @property
    def settled(self) -> bool:
        return self.outcome in SETTLED


@dataclass(frozen=True)
class Case:
    request_id: str
    subject: str
    right: CaseRight
    status: CaseStatus
    received_at: datetime
    due_at: datetime
    identity_verified: bool
    requested_via: RequestedVia
    #: When identity was asked for (the first one-time code went out): the unverified period runs from it.
    identity_requested_at: datetime | None = None
    #: Request details without PII: the erasure ground, Art. 18 circumstance, objected processing,
    #: export format, and the *names* of corrected fields (the values are sealed by the store).
    ground: ErasureGround | None = None
    circumstance: RestrictionCircumstance | None = None
    processing: ObjectionProcessing | None = None
    export_format: ExportFormat | None = None
    corrected_fields: tuple[str, ...] = ()
    #: Of the corrected fields, those no system in the data map holds: nothing to correct there.
    fields_not_held: tuple[str, ...] = ()
    extension_months: int = 0
    extension_reason: str | None = None
    manual_review: bool = False
    #: Why it waits for an operator, in English (the API's sentence), and as a code with parameters for
    #: a reader who says it in words of its own (see `reviews`). Set and cleared together.
    review_reason: str | None = None
    review_code: str | None = None
    review_params: dict[str, str] = field(default_factory=dict)
    #: Why the case was rejected, cancelled or closed (named in the status event and the email).
    reason: str | None = None
    steps: tuple[Step, ...] = ()
    phase: int = 0
    #: The completion email was requested (set with the effect, so a re-run never asks twice).
    completion_notified: bool = False
    restriction_lifted: bool = False
    #: The email that the restriction is being lifted was requested (with the lift, before it takes effect).
    lift_notified: bool = False
    closed_at: datetime | None = None
    #: Hex key of the case's command ids (drawn at random when the case is opened). A command id is the
    #: capability to answer that command: derived from the request id alone, a system that sees the
    #: request id (in its own command) could compute, and settle, another system's.
    command_secret: str = ""

    @property
    def extended(self) -> bool:
        return self.extension_months > 0

    @property
    def original_due_at(self) -> datetime:
        return due_date(self.received_at)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def status_reason(self) -> str | None:
        """The `reason` of the status event: required by the contract when rejected or extended."""
        return self.reason or self.review_reason or self.extension_reason

    @property
    def review(self) -> Review | None:
        return Review(self.review_code, self.review_params) if self.review_code else None

    @property
    def retained(self) -> list[dict[str, str]]:
        """Systems that kept data under a legal obligation, with the basis they gave."""
        return [
            {"system": s.system, "basis": s.retained_basis or s.basis or "legal obligation"}
            for s in self.steps
            if s.outcome == "retained"
        ]

    @property
    def told(self) -> list[str]:
        """Systems that acknowledged the case's commands (Art. 19: recipients told)."""
        return sorted({s.system for s in self.steps if s.settled})

    @property
    def lift_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.action == "lift_restriction")


#: The fields of `Case` that hold one of the contract's enums (what a stored case is read back as).
ENUM_FIELDS: Mapping[str, type[StrEnum]] = {
    "right": CaseRight, "status": CaseStatus, "requested_via": RequestedVia, "ground": ErasureGround,
    "circumstance": RestrictionCircumstance, "processing": ObjectionProcessing, "export_format": ExportFormat,
}


# --- effects the caller carries out ---------------------------------------------------------------


@dataclass(frozen=True)
class StatusChanged:
    previous: CaseStatus | None
    status: CaseStatus


@dataclass(frozen=True)
class DeadlineExtended:
    months: int
    reason: str


@dataclass(frozen=True)
class Notify:
    """A `notification-requested` whose id is `dsar:<request_id>:<suffix>` (replay-stable)."""

    template: str
    suffix: str
    params: Mapping[str, Any]
    #: Published unsealed so that shredding the subject's key right after cannot drop it.
    survive_erasure: bool = False


@dataclass(frozen=True)
class IssueCommands:
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class SendVerificationCode:
    pass


@dataclass(frozen=True)
class AssembleExport:
    pass


@dataclass(frozen=True)
class ShredSubject:
    pass


@dataclass(frozen=True)
class CancelOtherCases:
    reason: str


@dataclass(frozen=True)
class Note:
    """An audit entry that is not a status change."""

    action: str
    detail: Mapping[str, Any] = field(default_factory=dict)


Effect = (
    StatusChanged
    | DeadlineExtended
    | Notify
    | IssueCommands
    | SendVerificationCode
    | AssembleExport
    | ShredSubject
    | CancelOtherCases
    | Note
)


@dataclass(frozen=True)
class Decision:
    case: Case
    effects: tuple[Effect, ...] = ()

    def then(self, other: Decision) -> Decision:
        return Decision(other.case, self.effects + other.effects)


# --- plans from the data map ----------------------------------------------------------------------


def _phase_of(system: str) -> int:
    return LAST_PHASE if system in LAST_SYSTEMS else FIRST_PHASE


def erasure_plan(data_map: DataMap) -> tuple[Step, ...]:
    """Per system: `erase`; a legal hold also answers `retained` and gets `restrict` for the rest;
    sharing recipients get `revoke_sharing` first (Art. 17(2), 19). Internal services included."""
    steps: list[Step] = []
    for system in data_map.systems.values():
        phase = _phase_of(system.id)
        if system.revoke_before_erase:
            # Published before the erase on the same subject-keyed partition, so it arrives first.
            steps += [Step(system.id, "revoke_sharing", purpose, phase) for purpose in system.purposes]
        if system.on_erase == RETAIN:
            steps.append(Step(system.id, "erase", phase=phase, expect="retained", basis=system.retained_basis))
            steps.append(Step(system.id, "restrict", phase=phase))
        else:
            steps.append(Step(system.id, "erase", phase=phase))
    return tuple(steps)


def export_plan(data_map: DataMap) -> tuple[Step, ...]:
    """`export` to every system that holds anything about a person (fields or categories)."""
    return tuple(Step(s.id, "export") for s in data_map.systems.values() if s.fields or s.holds)


def rectification_plan(data_map: DataMap, fields: Iterable[str]) -> tuple[Step, ...]:
    """`rectify` to every system whose data-map fields include a corrected field (notifier too)."""
    return tuple(Step(s.id, "rectify") for s in data_map.systems_holding_fields(set(fields)))


def restriction_plan(data_map: DataMap, action: str = "restrict", phase: int = FIRST_PHASE) -> tuple[Step, ...]:
    """`restrict` (or `lift_restriction`) to every system, consent included (its decisions deny)."""
    return tuple(Step(s.id, action, phase=phase) for s in data_map.systems.values())


def objection_plan(data_map: DataMap) -> tuple[Step, ...]:
    """An upheld objection to legitimate-interest processing: `suppress` every such purpose where it is
    used, and to the consent service, whose decisions then deny it; the consent service also withdraws
    the purposes that rest on legitimate interest only where the subject lives (marketing outside the
    EEA), which it alone knows, and tells their systems."""
    legitimate = sorted(p.id for p in data_map.purposes.values() if p.legal_basis.startswith("legitimate interest"))
    used = tuple(
        Step(s.id, "suppress", purpose)
        for s in data_map.systems.values()
        for purpose in s.purposes
        if purpose in legitimate
    )
    told = {s.system for s in used}
    consent = () if "consent" in told or "consent" not in data_map.systems else tuple(
        Step("consent", "suppress", purpose) for purpose in legitimate)
    return used + consent


# --- internals ------------------------------------------------------------------------------------


def _move(case: Case, status: CaseStatus, now: datetime, **changes: Any) -> Decision:
    if status not in TRANSITIONS[case.status]:
        raise IllegalTransition(f"a case in {case.status} cannot become {status}")
    if status != IN_PROGRESS:
        changes.setdefault("manual_review", False)
    if status in TERMINAL:
        changes.setdefault("closed_at", now)
    moved = replace(case, status=status, **changes)
    return Decision(moved, (StatusChanged(case.status, status),))


def _command_id(case: Case, step: Step) -> str:
    """Replay-stable (the same case and step make the same id) and unguessable without the case's secret."""
    name = f"{case.request_id}:{step.key}:{step.attempt}"
    if not case.command_secret:  # only a case stored before secrets existed (the migration gives them one)
        return str(uuid.uuid5(COMMAND_NAMESPACE, name))
    digest = hmac.new(bytes.fromhex(case.command_secret), name.encode(), hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _issue(case: Case, phase: int) -> Decision:
    """Give every unissued step of `phase` its command id and ask the caller to send them."""
    fresh: list[Step] = []
    steps: list[Step] = []
    for step in case.steps:
        if step.phase == phase and not step.issued:
            step = replace(step, command_id=_command_id(case, step))
            fresh.append(step)
        steps.append(step)
    updated = replace(case, steps=tuple(steps), phase=max(case.phase, phase))
    return Decision(updated, (IssueCommands(tuple(fresh)),) if fresh else ())


def _in_review(review: Review) -> dict[str, Any]:
    """The case's fields of a review: flagged, with the English sentence and the code it is made from."""
    return {"manual_review": True, "review_reason": review.text, **review.fields()}


def _no_review() -> dict[str, Any]:
    """The case's fields once nothing waits for an operator (the flag itself is the caller's)."""
    return {"review_reason": None, "review_code": None, "review_params": {}}


def _review_note(review: Review) -> Note:
    """The audit entry of a case handed to an operator: the sentence, and its code for other words."""
    return Note("case_manual_review", {"reason": review.text, **review.fields()})


def _review(case: Case, review: Review, now: datetime) -> Decision:
    """Hand the case to an operator: in_progress with the manual_review flag."""
    if case.status == IN_PROGRESS:
        decision = Decision(replace(case, **_in_review(review)))
    else:
        decision = _move(case, IN_PROGRESS, now, **_in_review(review))
    return Decision(decision.case, (*decision.effects, _review_note(review)))


def _dispatch(case: Case, steps: tuple[Step, ...], now: datetime) -> Decision:
    """From in_progress: send the first phase and wait, or complete when there is nothing to send."""
    case = replace(case, steps=case.steps + steps, manual_review=False, **_no_review())
    pending = sorted({s.phase for s in case.steps if not s.issued})
    if not pending:
        return _complete(case, now)
    moved = _move(case, AWAITING_SYSTEMS, now)
    return moved.then(_issue(moved.case, pending[0]))


def _completion_email(case: Case) -> Notify:
    return Notify(
        "erasure_completed",
        "completed",
        {"request_id": case.request_id, "retained": case.retained, "systems": sorted({s.system for s in case.steps}),
         "ground": case.ground, "our_initiative": case.requested_via == INTERNAL},
        survive_erasure=True,
    )


def _outcome_email(case: Case, *, lifted: bool = False) -> Notify:
    """`request_completed`: what was done under the request, and which systems were told."""
    if lifted:  # told before the lift takes effect (Art. 18(3)): the systems about to be told
        informed = sorted({s.system for s in case.lift_steps})
    else:
        informed = sorted({s.system for s in case.steps if s.settled and s.action != "lift_restriction"})
    purposes: list[str] = []
    if case.right == OBJECTION:
        purposes = sorted(
            {s.purpose for s in case.steps if s.action == "suppress" and s.purpose}
            | set(ABSOLUTE_OBJECTION_PURPOSES.get(case.processing or "", ()))
        )
    return Notify(
        "request_completed",
        "restriction_lifted" if lifted else "completed",
        {
            "request_id": case.request_id,
            "right": case.right,
            "informed": informed,
            "lifted": lifted,
            "fields": [f for f in case.corrected_fields if f not in case.fields_not_held],
            "not_held": list(case.fields_not_held),
            "processing": case.processing,
            "purposes": purposes,
        },
    )


def _cancel_others(case: Case) -> CancelOtherCases:
    return CancelOtherCases(f"the subject's data was erased under request {case.request_id}")


def _complete(case: Case, now: datetime) -> Decision:
    if case.right == ERASURE:
        # The completion email is requested before the key is shredded (unsealed, so it survives).
        effects: tuple[Effect, ...] = () if case.completion_notified else (_completion_email(case),)
        case = replace(case, completion_notified=True)
        done = _move(case, COMPLETED, now)
        return Decision(done.case, effects + done.effects + (_cancel_others(case), ShredSubject()))
    if case.right in (ACCESS, PORTABILITY):
        done = _move(case, COMPLETED, now)
        return Decision(done.case, (AssembleExport(), *done.effects))
    done = _move(case, COMPLETED, now)
    if case.right not in OUTCOME_NOTIFIED or case.completion_notified:
        return done
    return Decision(replace(done.case, completion_notified=True), (*done.effects, _outcome_email(done.case)))


def _advance(case: Case, now: datetime) -> Decision:
    """After an ack: wait, send the next phase, or complete."""
    if any(s.issued and not s.settled for s in case.steps):
        return Decision(case)
    later = sorted({s.phase for s in case.steps if not s.issued})
    if later:
        # Erasure: every system but the notifier is done; ask for the completion email now, while
        # the notifier still holds the address, and erase the notifier last.
        effects: tuple[Effect, ...] = ()
        if case.right == ERASURE and not case.completion_notified:
            # The email names the subject's other open requests; they are closed with it, so that it
            # names exactly those (one opened meanwhile is closed at completion).
            effects = (_completion_email(case), _cancel_others(case))
            case = replace(case, completion_notified=True)
        return Decision(case, effects).then(_issue(case, later[0]))
    return _complete(case, now)


# --- operations -----------------------------------------------------------------------------------


def receipt_time(stated: datetime, arrived: datetime) -> datetime:
    """When a request counts as received: the time its event states, never later than it arrived (a
    producer's clock running ahead must not push the deadline out)."""
    return min(stated, arrived)


def needs_verification(case: Case) -> bool:
    """Identity is verified before a request is answered, except an absolute objection: an opt-out
    is never made harder (the consent service has already withdrawn it on the same event)."""
    if case.identity_verified:
        return False
    return not (case.right == OBJECTION and case.processing in ABSOLUTE_OBJECTIONS)


def new_case(
    *,
    request_id: str,
    subject: str,
    right: CaseRight | Right,
    received_at: datetime,
    identity_verified: bool,
    requested_via: RequestedVia,
    ground: ErasureGround | None = None,
    circumstance: RestrictionCircumstance | None = None,
    processing: ObjectionProcessing | None = None,
    export_format: ExportFormat | None = None,
    corrected_fields: Iterable[str] = (),
    command_secret: str = "",
) -> Case:
    """A case as received. `command_secret`: random hex the caller draws (see `Case.command_secret`).
    Values are taken by their wire value (a `Right` is the `CaseRight` of the same name)."""
    if right not in RIGHTS:
        raise CaseError(f"unknown right {right!r}")
    return Case(
        request_id=request_id,
        subject=subject,
        right=CaseRight(right),
        status=RECEIVED,
        received_at=received_at,
        due_at=due_date(received_at),
        identity_verified=identity_verified,
        requested_via=RequestedVia(requested_via),
        ground=None if ground is None else ErasureGround(ground),
        circumstance=None if circumstance is None else RestrictionCircumstance(circumstance),
        processing=None if processing is None else ObjectionProcessing(processing),
        export_format=None if export_format is None else ExportFormat(export_format),
        corrected_fields=tuple(sorted(set(corrected_fields))),
        command_secret=command_secret,
    )


def open_case(
    case: Case, data_map: DataMap, now: datetime, *, subject_erased: bool = False, retention_review: bool = True
) -> Decision:
    """A new case in `received`: acknowledge receipt, then verify identity or start the work.

    `retention_review`: a `retention_expired` erasure the services opened themselves waits for an
    operator's approval instead of erasing at once (see RETENTION_REVIEW)."""
    if case.status != RECEIVED or case.steps:
        raise CaseError("open_case needs a fresh case")
    opened = Decision(case, (StatusChanged(None, RECEIVED),))
    if subject_erased:
        # Nothing of this subject is left here to act on, and no address to write to.
        if case.right == ERASURE:
            progress = _move(case, IN_PROGRESS, now)
            done = _move(progress.case, COMPLETED, now, reason="the subject's data was already erased")
            return opened.then(progress).then(done)
        return opened.then(_move(case, CANCELLED, now, reason="the subject's data was erased before this request"))
    if case.requested_via == INTERNAL and case.identity_verified:
        # Opened by the services themselves (a child's registration, retention): there is no request of
        # the subject's to confirm; the erasure email says why it happened.
        if retention_review and case.right == ERASURE and case.ground == RETENTION_EXPIRED:
            progress = _move(case, IN_PROGRESS, now)
            return opened.then(progress).then(_review(progress.case, reviews.retention_expired(), now))
        return opened.then(start(case, data_map, now))
    received = Notify(
        "request_received",
        "received",
        {
            "request_id": case.request_id,
            "right": case.right,
            "due_date": case.due_at.isoformat(),
        },
    )
    opened = Decision(case, (*opened.effects, received))
    if needs_verification(case):
        pending = _move(case, IDENTITY_PENDING, now, identity_requested_at=now)
        return opened.then(Decision(pending.case, (*pending.effects, SendVerificationCode())))
    return opened.then(start(case, data_map, now))


def start(case: Case, data_map: DataMap, now: datetime) -> Decision:
    """Identity is settled: plan the work for the right and send it (or hand it to an operator)."""
    if case.status not in (RECEIVED, IDENTITY_PENDING):
        raise CaseError(f"a case in {case.status} has already started")
    progress = _move(replace(case, identity_verified=True), IN_PROGRESS, now)
    case = progress.case
    if case.right == ERASURE:
        return progress.then(_dispatch(case, erasure_plan(data_map), now))
    if case.right in (ACCESS, PORTABILITY):
        return progress.then(_dispatch(case, export_plan(data_map), now))
    if case.right == RESTRICTION:
        return progress.then(_dispatch(case, restriction_plan(data_map), now))
    if case.right == RECTIFICATION:
        steps = rectification_plan(data_map, case.corrected_fields)
        if not steps:  # an operator finds out where the data is, or rejects with the reason
            return progress.then(_review(case, reviews.fields_not_held(case.corrected_fields), now))
        # The subject is told which of the fields there was nothing of to correct.
        held = {f for system in data_map.systems_holding_fields(set(case.corrected_fields)) for f in system.fields}
        case = replace(case, fields_not_held=tuple(f for f in case.corrected_fields if f not in held))
        return progress.then(_dispatch(case, steps, now))
    # Objection.
    if case.processing in ABSOLUTE_OBJECTIONS:
        # Absolute (Art. 21(2)-(3)): the consent service withdraws on the same event; nothing to weigh.
        return progress.then(_complete(case, now))
    return progress.then(_review(case, reviews.objection_to_weigh(), now))


def verify(case: Case, data_map: DataMap, now: datetime) -> Decision:
    """The subject proved their identity with the one-time code."""
    if case.status != IDENTITY_PENDING:
        raise CaseError(f"a case in {case.status} is not waiting for identity verification")
    return Decision(case, (Note("case_identity_verified", {"method": "one_time_code"}),)).then(
        start(case, data_map, now)
    )


def approve(case: Case, data_map: DataMap, now: datetime) -> Decision:
    """Operator approval: of the identity, of a manual review (retry failed systems, uphold an
    objection, accept a rectification handled by hand, erase an inactive subject), or of a retry of
    the systems that could not lift a completed restriction."""
    if case.status == IDENTITY_PENDING:
        return Decision(case, (Note("case_identity_verified", {"method": "operator"}),)).then(
            start(case, data_map, now)
        )
    if case.status == COMPLETED and case.manual_review:
        return _retry_lift(case)
    if case.status != IN_PROGRESS or not case.manual_review:
        raise CaseError(
            f"nothing to approve: the case is {case.status}"
            + (" without manual review" if case.status == IN_PROGRESS else "")
        )
    failed = [s for s in case.steps if s.outcome == "failed"]
    if failed:
        return _retry_failed(case, failed, data_map, now)
    if case.right == OBJECTION and not case.steps:
        return _dispatch(case, objection_plan(data_map), now)
    if case.right == ERASURE and not case.steps:  # a retention erasure an operator confirmed
        return _dispatch(case, erasure_plan(data_map), now)
    return _complete(replace(case, **_no_review()), now)


def _retry_failed(case: Case, failed: list[Step], data_map: DataMap, now: datetime) -> Decision:
    """Retry each failed system with a new command (new attempt number, new command id).

    A `rectify` goes only to a system the data map (as it is now: it may have been edited since the
    plan) gives one of the corrected fields; one that no longer holds any is left out of the case,
    as it would have been left out of the plan, rather than retried with nothing to send."""
    holding = data_map.systems_holding_fields(set(case.corrected_fields))
    gone = [s for s in failed if s.action == "rectify" and s.system not in {h.id for h in holding}]
    retry = [s for s in failed if s not in gone]
    steps = tuple(
        replace(s, attempt=s.attempt + 1, command_id=None, outcome=None) if s in retry else s
        for s in case.steps
        if s not in gone
    )
    retried = replace(case, steps=steps, manual_review=False, **_no_review())
    left_out: tuple[Effect, ...] = ()
    if gone:
        told = {s.system for s in steps if s.action == "rectify"}
        held = {f for h in holding if h.id in told for f in h.fields}
        retried = replace(retried, fields_not_held=tuple(f for f in case.corrected_fields if f not in held))
        left_out = (Note("case_systems_left_out", {"systems": sorted({s.system for s in gone}),
                                                    "reason": "no longer holds the corrected fields"}),)
        if not told:  # as when the plan finds no holder: an operator finds the data, or accepts
            return Decision(retried, left_out).then(
                _review(retried, reviews.fields_not_held(case.corrected_fields), now))
    if retry:
        moved = _move(retried, AWAITING_SYSTEMS, now)
        reissue = _issue(moved.case, min(s.phase for s in retry))
        note = Note("case_retry_approved", {"systems": sorted({s.system for s in retry})})
        return Decision(reissue.case, (*left_out, note, *moved.effects, *reissue.effects))
    if any(s.issued and not s.settled for s in retried.steps):
        return Decision(retried, left_out).then(_move(retried, AWAITING_SYSTEMS, now))
    return Decision(retried, left_out).then(_complete(retried, now))


def rectify_not_sent(case: Case, systems: Iterable[str], now: datetime) -> Decision:
    """The workflow had nothing to send in these systems' `rectify` (the sealed values can no longer
    be read, e.g. the subject's data is being erased). Unsent, they would never be answered and the
    case would wait forever: they count as failed and the case goes to an operator (approve retries;
    a system the data map no longer gives the fields is then left out)."""
    names = set(systems)
    if case.status not in (IN_PROGRESS, AWAITING_SYSTEMS):
        raise CaseError(f"a case in {case.status} sends no commands")
    steps = tuple(
        replace(s, outcome="failed") if s.action == "rectify" and s.system in names and s.outcome is None else s
        for s in case.steps
    )
    return _review(replace(case, steps=steps), reviews.correction_unreadable(names), now)


def _retry_lift(case: Case) -> Decision:
    """Re-send `lift_restriction` to the systems that answered `failed` (new attempt, new command id)."""
    failed = [s for s in case.lift_steps if s.outcome == "failed"]
    if not failed:
        raise CaseError("nothing to approve: no system failed to lift the restriction")
    steps = tuple(
        replace(s, attempt=s.attempt + 1, command_id=None, outcome=None) if s in failed else s for s in case.steps
    )
    retried = replace(case, steps=steps, manual_review=False, **_no_review())
    reissue = _issue(retried, min(s.phase for s in failed))
    note = Note("case_retry_approved", {"systems": sorted({s.system for s in failed}), "action": "lift_restriction"})
    return Decision(reissue.case, (note, *reissue.effects))


def reject(case: Case, reason: str, now: datetime) -> Decision:
    """Refuse the request with its legal reason; the email names the reason and IMY."""
    reason = reason.strip()
    if not reason:
        raise CaseError("a rejection needs a reason")
    done = _move(case, REJECTED, now, reason=reason)
    if any(s.issued for s in case.steps):
        # Back in review after a failed answer, systems may already have acted: that is not a refusal.
        raise CaseError("commands of this request went out already and systems may have acted on them; "
                        "approve to retry the systems that failed, or resolve it by hand")
    if case.requested_via == INTERNAL:
        # The subject asked for nothing (e.g. a retention erasure an operator kept): nothing to refuse them.
        return done
    email = Notify(
        "request_rejected",
        "rejected",
        {"request_id": case.request_id, "right": case.right, "reason": reason, **IMY},
    )
    return Decision(done.case, (*done.effects, email))


def cancel(case: Case, reason: str, now: datetime) -> Decision:
    if not reason.strip():
        raise CaseError("a cancellation needs a reason")
    return _move(case, CANCELLED, now, reason=reason.strip())


def awaits_retention_review(case: Case) -> bool:
    """A retention erasure the services opened that still waits for an operator's confirmation (no
    command has gone out: once approved, systems may have acted)."""
    return (case.right == ERASURE and case.ground == RETENTION_EXPIRED and case.requested_via == INTERNAL
            and case.status == IN_PROGRESS and case.manual_review and not case.steps)


def subject_active(case: Case, active_at: datetime, inactive_before: datetime, now: datetime) -> Decision:
    """The service saw the subject active at `active_at` (a registration, a consent change, a request of
    their own). A retention erasure still waiting for review loses its ground when that activity is not
    past the retention (`inactive_before`): it is cancelled. Nobody is emailed: the subject asked for
    nothing. Anything else, a case already cancelled included (redelivery), is left as it is."""
    if not awaits_retention_review(case) or active_at < inactive_before:
        return Decision(case)  # an old event arriving late is not the subject coming back
    cancelled = _move(case, CANCELLED, now, reason=ACTIVE_AGAIN, **_no_review())
    note = Note("case_subject_active", {"active_at": active_at.isoformat()})
    return Decision(cancelled.case, (note, *cancelled.effects))


def close_unverified(case: Case, now: datetime, after: timedelta) -> Decision:
    """Identity not verified within `after` of being asked for (the first code; receipt for a case
    stored before that was recorded): close, and tell the subject why."""
    if case.status != IDENTITY_PENDING:
        raise CaseError(f"a case in {case.status} is not waiting for identity verification")
    if now < (case.identity_requested_at or case.received_at) + after:
        raise CaseError("the verification period has not ended")
    reason = f"identity was not verified within {span(after)} of the request"
    done = _move(case, CLOSED_UNVERIFIED, now, reason=reason)
    email = Notify(
        "request_rejected",
        "closed_unverified",
        {"request_id": case.request_id, "right": case.right, "reason": reason, **IMY,
         "unverified_after_minutes": int(after.total_seconds() // 60)},
    )
    return Decision(done.case, (*done.effects, email))


def extend(case: Case, months: int, reason: str, now: datetime) -> Decision:
    """Art. 12(3): up to two more months, once, with a reason told to the subject in the first month."""
    reason = reason.strip()
    if case.terminal:
        raise CaseError(f"a case in {case.status} cannot be extended")
    if months not in (1, 2):
        raise CaseError("months must be 1 or 2")
    if not reason:
        raise CaseError("an extension needs a reason")
    if case.extended:
        raise CaseError("the deadline was already extended once")
    if case.extension_months + months > MAX_EXTENSION_MONTHS:
        raise CaseError("the deadline may be extended by at most two months")
    if now >= case.original_due_at:
        raise CaseError("an extension must be made before the original due date")
    extended = replace(
        case, extension_months=months, extension_reason=reason, due_at=due_date(case.received_at, months)
    )
    email = Notify(
        "deadline_extended",
        "extended",
        {
            "request_id": case.request_id,
            "right": case.right,
            "reason": reason,
            "months": months,
            "original_due_date": case.original_due_at.isoformat(),
            "due_date": extended.due_at.isoformat(),
        },
    )
    return Decision(extended, (DeadlineExtended(months, reason), email))


def record_ack(case: Case, command_id: str, status: str, now: datetime, retained_basis: str | None = None,
               *, problem: str | None = None) -> Decision:
    """A system answered one of the case's commands. `problem`: why an answer cannot be used (a `failed`
    one: an export whose parts do not match their digest, too large, incomplete at `respond_by`)."""
    if status not in ACK_STATUSES:
        raise CaseError(f"unknown ack status {status!r}")
    index = next((i for i, s in enumerate(case.steps) if s.command_id == command_id), None)
    if index is None or case.steps[index].outcome is not None:
        return Decision(case)  # not ours, or an answer to a re-sent command already counted
    step = replace(case.steps[index], outcome=status, retained_basis=retained_basis)
    case = replace(case, steps=(*case.steps[:index], step, *case.steps[index + 1 :]))
    note = Note("case_system_answered", {"system": step.system, "action": step.action, "status": status})
    recorded = Decision(case, (note,))
    if case.terminal:
        # Answers to lifting a completed restriction: the subject was told already. A system that could
        # not lift still restricts the data: the case cannot reopen (completed is final), so it is
        # flagged for an operator, who retries with approve.
        if status == "failed" and step.action == "lift_restriction":
            review = reviews.lift_failed(s.system for s in case.lift_steps if s.outcome == "failed")
            flagged = replace(case, **_in_review(review))
            return Decision(flagged, (note, _review_note(review)))
        return recorded
    if case.status != AWAITING_SYSTEMS:
        return recorded  # answers while under review
    if status == "failed":
        return recorded.then(_review(case, reviews.system_failed(step.system, step.action, problem), now))
    return recorded.then(_advance(case, now))


def restrictions_in_force(case: Case, others: Sequence[Case]) -> list[str]:
    """The subject's other restrictions still holding the data (their commands are out, not lifted)."""
    return sorted(
        o.request_id for o in others
        if o.request_id != case.request_id and o.right == RESTRICTION and not o.restriction_lifted
        and o.status in (IN_PROGRESS, AWAITING_SYSTEMS, COMPLETED)
    )


def lift_restriction(case: Case, data_map: DataMap, others: Sequence[Case] = ()) -> Decision:
    """Lift a completed restriction (Art. 18(3)): `lift_restriction` to every system.

    While another restriction of the subject (`others`: their other cases) still holds, this one is
    recorded as lifted but nothing is sent: the data stays restricted until the last one is lifted."""
    if case.right != RESTRICTION or case.status != COMPLETED:
        raise CaseError("only a completed restriction can be lifted")
    if case.restriction_lifted:
        raise CaseError("the restriction was already lifted")
    if in_force := restrictions_in_force(case, others):
        return Decision(replace(case, restriction_lifted=True),
                        (Note("case_restriction_lifted", {"still_restricted_by": in_force}),))
    phase = case.phase + 1
    lifted = replace(
        case,
        restriction_lifted=True,
        lift_notified=True,
        steps=case.steps + restriction_plan(data_map, "lift_restriction", phase),
    )
    # The subject is told before the restriction is lifted (Art. 18(3)): the email is requested in the
    # same transaction as the commands, ahead of them in the outbox.
    issued = _issue(lifted, phase)
    return Decision(issued.case, (Note("case_restriction_lifted"), _outcome_email(lifted, lifted=True),
                                  *issued.effects))


# --- notifications built outside a decision (they need a random code or token) ----------------


def code_email(case: Case, code: str, number: int, ttl: timedelta) -> Notify:
    """The one-time code; `number` counts the codes of this request (a new code is a new email)."""
    return Notify(
        "verification_code",
        f"code:{number}",
        {
            "code": code,
            "request_id": case.request_id,
            "expires_minutes": max(1, int(ttl.total_seconds() // 60)),
        },
    )


def export_email(case: Case, link: str, expires_at: datetime, max_downloads: int) -> Notify:
    # `download_url` is the notifier template's name for the link; `link` is kept for other readers.
    return Notify(
        "export_ready",
        "export_ready",
        {
            "request_id": case.request_id,
            "download_url": link,
            "link": link,
            "expires_at": expires_at.isoformat(),
            "max_downloads": max_downloads,
        },
    )


def overdue_email(case: Case) -> Notify | None:
    """The deadline passed with the request still open: the subject is told, with their remedies
    (Art. 12(3)-(4)); once per case (the timer claims each overdue case once). Not for a request the
    subject did not make (an unverified one is not theirs yet; an internal one, e.g. a retention
    erasure waiting in review, was never theirs)."""
    if not case.identity_verified or case.requested_via == INTERNAL:
        return None
    return Notify(
        "request_overdue",
        "overdue",
        {"request_id": case.request_id, "right": case.right, "due_date": case.due_at.isoformat()},
    )


# --- timers -----------------------------------------------------------------------------------------


def is_overdue(case: Case, now: datetime) -> bool:
    return not case.terminal and now > case.due_at


def is_due_soon(case: Case, now: datetime, within: timedelta = DUE_SOON) -> bool:
    return not case.terminal and case.due_at - within <= now <= case.due_at
