"""Unit tests of the DSAR case state machine, deadlines, extensions and per-system plans (no I/O)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from privacy_runtime.datamap import DataMap, load_data_map, parse_data_map
from privacy_runtime.settings import DEFAULT_DATA_MAP
from schemas.enums import CaseStatus
from services.dsar import cases
from services.dsar.cases import (
    AWAITING_SYSTEMS,
    CANCELLED,
    CLOSED_UNVERIFIED,
    COMPLETED,
    IDENTITY_PENDING,
    IN_PROGRESS,
    RECEIVED,
    REJECTED,
    TERMINAL,
    TRANSITIONS,
    Case,
    CaseError,
    Decision,
)

DATA_MAP = load_data_map(DEFAULT_DATA_MAP)
T0 = datetime(2024, 3, 10, 9, 30, tzinfo=UTC)
RID = "0b0c8a5e-6c39-4b8e-9a0e-2f4f3f1a7d21"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def make_case(right: str = cases.ERASURE, *, verified: bool = True, **changes: object) -> Case:
    case = cases.new_case(
        request_id=RID,
        subject="user-1",
        right=right,
        received_at=changes.pop("received_at", T0),  # type: ignore[arg-type]
        identity_verified=verified,
        requested_via="web_form",
    )
    return replace(case, **changes)  # type: ignore[arg-type]


def opened(right: str = cases.ERASURE, *, verified: bool = True, **changes: object) -> Decision:
    return cases.open_case(make_case(right, verified=verified, **changes), DATA_MAP, T0)


def statuses(decision: Decision) -> list[str]:
    return [e.status for e in decision.effects if isinstance(e, cases.StatusChanged)]


def effects_of(decision: Decision, kind: type) -> list:
    return [e for e in decision.effects if isinstance(e, kind)]


def pending(case: Case) -> list[cases.Step]:
    return [s for s in case.steps if s.issued and s.outcome is None]


def answer_all(
    case: Case, status_for: Callable[[cases.Step], str] = lambda s: s.expect or "done", now: datetime = T0
) -> tuple[Case, list[Decision]]:
    """Acknowledge every outstanding command (phase by phase) until nothing is outstanding."""
    decisions = []
    while pending(case):
        step = pending(case)[0]
        basis = step.basis if status_for(step) == "retained" else None
        decision = cases.record_ack(case, step.command_id or "", status_for(step), now, basis)
        decisions.append(decision)
        case = decision.case
    return case, decisions


# --- deadlines ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (utc(2024, 1, 31, 12), 1, utc(2024, 2, 29, 12)),  # leap year: clamp to Feb 29
        (utc(2023, 1, 31, 12), 1, utc(2023, 2, 28, 12)),  # common year: Feb 28
        (utc(2100, 1, 31), 1, utc(2100, 2, 28)),  # 2100 is not a leap year
        (utc(2000, 1, 30), 1, utc(2000, 2, 29)),  # 2000 is
        (utc(2024, 3, 31), 1, utc(2024, 4, 30)),
        (utc(2024, 8, 31), 1, utc(2024, 9, 30)),
        (utc(2024, 12, 15, 8, 5), 1, utc(2025, 1, 15, 8, 5)),  # over the year end, time of day kept
        (utc(2024, 2, 29), 12, utc(2025, 2, 28)),
        (utc(2024, 1, 31), 3, utc(2024, 4, 30)),
        (utc(2023, 11, 30), 3, utc(2024, 2, 29)),
        (utc(2024, 5, 15), 0, utc(2024, 5, 15)),
    ],
)
def test_add_months_clamps_to_month_end(start: datetime, months: int, expected: datetime) -> None:
    assert cases.add_months(start, months) == expected


def test_due_date_is_one_month_after_receipt_and_extensions_count_from_receipt() -> None:
    received = utc(2024, 1, 31, 10)
    assert cases.due_date(received) == utc(2024, 2, 29, 10)
    # Counted from receipt, not from the clamped due date (Feb 29 + 2 would give Apr 29); the same
    # wall-clock time in Stockholm, which is summer time by then: an hour earlier in UTC.
    assert cases.due_date(received, 2) == utc(2024, 4, 30, 9)
    assert make_case(received_at=received).due_at == utc(2024, 2, 29, 10)


def test_months_are_counted_on_the_controllers_calendar() -> None:
    # 31 March 00:30 in Stockholm is 30 March in UTC; the request is due on 30 April in Stockholm, where
    # UTC arithmetic would have given 1 May 01:30 there, past the month.
    received = utc(2024, 3, 30, 23, 30)
    due = cases.due_date(received)
    assert due == utc(2024, 4, 29, 22, 30) and due.tzinfo == UTC
    local = due.astimezone(cases.CONTROLLER_TIME_ZONE)
    assert (local.month, local.day, local.hour, local.minute) == (4, 30, 0, 30)


def test_overdue_and_due_soon() -> None:
    case = make_case()
    assert not cases.is_overdue(case, case.due_at)
    assert cases.is_overdue(case, case.due_at + timedelta(seconds=1))
    assert cases.is_due_soon(case, case.due_at - timedelta(days=2))
    assert not cases.is_due_soon(case, case.due_at - timedelta(days=4))
    closed = replace(case, status=COMPLETED)
    assert not cases.is_overdue(closed, case.due_at + timedelta(days=9))


# --- extensions ---------------------------------------------------------------------------------


def test_extend_once_with_reason_before_original_due_date() -> None:
    case = opened().case
    decision = cases.extend(case, 2, "many systems involved", T0 + timedelta(days=3))
    assert decision.case.extended and decision.case.extension_months == 2
    assert decision.case.due_at == cases.due_date(T0, 2)
    assert decision.case.status == case.status  # an extension is not a status change
    [extended] = effects_of(decision, cases.DeadlineExtended)
    assert extended.reason == "many systems involved"
    [email] = effects_of(decision, cases.Notify)
    assert email.template == "deadline_extended"
    assert email.params["reason"] == "many systems involved"
    assert email.params["original_due_date"] == case.due_at.isoformat()
    assert email.params["due_date"] == decision.case.due_at.isoformat()
    assert decision.case.status_reason == "many systems involved"  # the contract wants it on status events
    with pytest.raises(CaseError, match="already extended"):
        cases.extend(decision.case, 1, "again", T0 + timedelta(days=4))


@pytest.mark.parametrize("months", [0, 3, -1, 12])
def test_extend_refuses_months_outside_one_or_two(months: int) -> None:
    with pytest.raises(CaseError, match="1 or 2"):
        cases.extend(opened().case, months, "reason", T0)


@pytest.mark.parametrize("reason", ["", "   "])
def test_extend_needs_a_reason(reason: str) -> None:
    with pytest.raises(CaseError, match="reason"):
        cases.extend(opened().case, 1, reason, T0)


def test_extend_only_before_the_original_due_date() -> None:
    case = opened().case
    with pytest.raises(CaseError, match="before the original due date"):
        cases.extend(case, 1, "late", case.due_at)
    assert cases.extend(case, 1, "in time", case.due_at - timedelta(seconds=1)).case.extended


def test_extend_refused_for_closed_cases() -> None:
    case = cases.reject(opened(verified=False).case, "no such account", T0).case
    with pytest.raises(CaseError, match="cannot be extended"):
        cases.extend(case, 1, "reason", T0)


def test_extension_total_never_exceeds_three_months() -> None:
    case = cases.extend(opened().case, 2, "reason", T0).case
    assert case.due_at <= case.received_at + timedelta(days=92, hours=1)  # three months at most


# --- transitions --------------------------------------------------------------------------------


def test_transition_table_covers_exactly_the_contract_statuses() -> None:
    assert set(TRANSITIONS) == {s.value for s in CaseStatus}
    for source, targets in TRANSITIONS.items():
        assert targets <= set(TRANSITIONS), source
        assert source not in targets
    for terminal in TERMINAL:
        assert TRANSITIONS[terminal] == frozenset()


def test_rights_are_erasure_plus_the_five_of_dsar_requested() -> None:
    assert set(cases.RIGHTS) == {"erasure", "access", "portability", "rectification", "restriction", "objection"}


def test_received_to_identity_pending_when_unverified() -> None:
    decision = opened(verified=False)
    assert statuses(decision) == [RECEIVED, IDENTITY_PENDING]
    assert effects_of(decision, cases.SendVerificationCode)
    assert [n.template for n in effects_of(decision, cases.Notify)] == ["request_received"]
    assert not effects_of(decision, cases.IssueCommands)


def test_received_to_in_progress_to_awaiting_systems_when_verified() -> None:
    decision = opened()
    assert statuses(decision) == [RECEIVED, IN_PROGRESS, AWAITING_SYSTEMS]
    [issue] = effects_of(decision, cases.IssueCommands)
    assert all(s.phase == cases.FIRST_PHASE for s in issue.steps)
    received = effects_of(decision, cases.Notify)[0]
    assert received.template == "request_received"
    assert received.suffix == "received"


@pytest.mark.parametrize("status", [RECEIVED, IDENTITY_PENDING, IN_PROGRESS])
def test_reject_from_open_statuses_names_reason_and_imy(status: str) -> None:
    case = make_case(status=status)
    decision = cases.reject(case, "manifestly unfounded (Art. 12(5))", T0)
    assert decision.case.status == REJECTED
    assert decision.case.reason == "manifestly unfounded (Art. 12(5))"
    assert decision.case.closed_at == T0
    [email] = effects_of(decision, cases.Notify)
    assert email.template == "request_rejected"
    assert email.params["reason"] == "manifestly unfounded (Art. 12(5))"
    assert "imy.se" in email.params["authority_url"]


def test_reject_needs_a_reason_and_is_refused_once_commands_are_out() -> None:
    with pytest.raises(CaseError, match="reason"):
        cases.reject(make_case(), " ", T0)
    with pytest.raises(cases.IllegalTransition):
        cases.reject(opened().case, "too late", T0)
    # Nor once a failed answer has sent it back to review: the other systems may have erased already.
    failed, _ = answer_all(opened().case, lambda s: "failed" if s.system == "analytics" else s.expect or "done")
    assert failed.status == IN_PROGRESS and failed.manual_review
    with pytest.raises(CaseError, match="went out already"):
        cases.reject(failed, "changed our mind", T0)
    assert cases.approve(failed, DATA_MAP, T0).case.status == AWAITING_SYSTEMS


@pytest.mark.parametrize("status", [RECEIVED, IDENTITY_PENDING, IN_PROGRESS, AWAITING_SYSTEMS])
def test_cancel_from_every_open_status(status: str) -> None:
    decision = cases.cancel(make_case(status=status), "subject erased", T0)
    assert decision.case.status == CANCELLED
    assert statuses(decision) == [CANCELLED]


def test_identity_pending_to_in_progress_by_code_or_operator() -> None:
    pending_case = opened(verified=False).case
    by_code = cases.verify(pending_case, DATA_MAP, T0)
    assert statuses(by_code) == [IN_PROGRESS, AWAITING_SYSTEMS]
    assert by_code.case.identity_verified
    assert effects_of(by_code, cases.Note)[0].detail == {"method": "one_time_code"}
    by_operator = cases.approve(pending_case, DATA_MAP, T0)
    assert statuses(by_operator) == [IN_PROGRESS, AWAITING_SYSTEMS]
    assert effects_of(by_operator, cases.Note)[0].detail == {"method": "operator"}


def test_a_request_counts_as_received_when_it_arrived_if_its_event_claims_later() -> None:
    arrived = T0
    assert cases.receipt_time(T0 + timedelta(days=1), arrived) == arrived, "a clock ahead gains no time"
    assert cases.receipt_time(T0 - timedelta(hours=2), arrived) == T0 - timedelta(hours=2)


def test_the_unverified_period_runs_from_the_first_code_not_from_a_receipt_long_before() -> None:
    # An event stating a time long past (a backlog, a replay): the code goes out only now.
    received = T0 - timedelta(days=20)
    case = cases.open_case(make_case(verified=False, received_at=received), DATA_MAP, T0).case
    assert case.status == IDENTITY_PENDING and case.identity_requested_at == T0
    period = timedelta(days=14)
    with pytest.raises(CaseError, match="not ended"):
        cases.close_unverified(case, T0 + period - timedelta(seconds=1), period)
    assert cases.close_unverified(case, T0 + period, period).case.status == CLOSED_UNVERIFIED
    # A case stored before this time was kept counts from receipt, as it did.
    legacy = replace(case, identity_requested_at=None)
    assert cases.close_unverified(legacy, received + period, period).case.status == CLOSED_UNVERIFIED


def test_verify_refused_unless_identity_pending() -> None:
    with pytest.raises(CaseError):
        cases.verify(opened().case, DATA_MAP, T0)


def test_identity_pending_to_closed_unverified_only_after_the_period() -> None:
    case = opened(verified=False).case
    period = timedelta(days=14)
    with pytest.raises(CaseError, match="not ended"):
        cases.close_unverified(case, T0 + period - timedelta(seconds=1), period)
    decision = cases.close_unverified(case, T0 + period, period)
    assert decision.case.status == CLOSED_UNVERIFIED
    assert decision.case.reason == "identity was not verified within 14 days of the request"
    [email] = effects_of(decision, cases.Notify)
    assert email.template == "request_rejected" and email.suffix == "closed_unverified"
    assert email.params["unverified_after_minutes"] == 14 * 1440  # the email says it in the subject's language
    with pytest.raises(CaseError):
        cases.close_unverified(opened().case, T0 + period, period)


def test_awaiting_systems_to_in_progress_on_failed_and_back_on_approval() -> None:
    case = opened().case
    first = pending(case)[0]
    failed = cases.record_ack(case, first.command_id or "", "failed", T0)
    assert failed.case.status == IN_PROGRESS and failed.case.manual_review
    assert statuses(failed) == [IN_PROGRESS]
    assert first.system in (failed.case.review_reason or "")
    retried = cases.approve(failed.case, DATA_MAP, T0)
    assert statuses(retried) == [AWAITING_SYSTEMS]
    [issue] = effects_of(retried, cases.IssueCommands)
    [again] = issue.steps
    assert (again.system, again.action, again.attempt) == (first.system, first.action, 2)
    assert again.command_id != first.command_id
    done, _ = answer_all(retried.case)
    assert done.status == COMPLETED


def test_answers_during_manual_review_are_recorded_but_do_not_complete() -> None:
    case = opened().case
    failed = cases.record_ack(case, pending(case)[0].command_id or "", "failed", T0).case
    rest, _ = answer_all(failed)
    assert rest.status == IN_PROGRESS and rest.manual_review
    assert cases.approve(rest, DATA_MAP, T0).case.status == AWAITING_SYSTEMS


def test_terminal_statuses_lead_nowhere() -> None:
    for status in TERMINAL:
        case = make_case(status=status)
        with pytest.raises(CaseError):
            cases.reject(case, "r", T0)
        with pytest.raises(CaseError):
            cases.cancel(case, "r", T0)
        with pytest.raises(CaseError):
            cases.approve(case, DATA_MAP, T0)
        with pytest.raises(CaseError):
            cases.verify(case, DATA_MAP, T0)
        with pytest.raises(CaseError):
            cases.start(case, DATA_MAP, T0)


def test_approve_refused_without_something_to_approve() -> None:
    with pytest.raises(CaseError, match="nothing to approve"):
        cases.approve(opened().case, DATA_MAP, T0)


# --- erasure --------------------------------------------------------------------------------------


def plan_of(steps: tuple[cases.Step, ...]) -> set[tuple[str, str, str | None]]:
    return {(s.system, s.action, s.purpose) for s in steps}


def test_erasure_plan_per_system() -> None:
    steps = cases.erasure_plan(DATA_MAP)
    assert plan_of(steps) == {
        ("accounts", "erase", None),
        ("billing", "erase", None),
        ("billing", "restrict", None),
        ("marketing_email", "erase", None),
        ("analytics", "erase", None),
        ("logs", "erase", None),
        ("support", "erase", None),
        ("partners", "revoke_sharing", "partner_sharing"),
        ("partners", "revoke_sharing", "third_party_marketing"),
        ("partners", "erase", None),
        ("ipcom_group", "revoke_sharing", "group_sharing"),
        ("ipcom_group", "erase", None),
        ("consent", "erase", None),
        ("dsar", "erase", None),
        ("notifier", "erase", None),
    }
    billing = next(s for s in steps if s.system == "billing" and s.action == "erase")
    assert billing.expect == "retained" and "Bokföringslagen 7:2" in (billing.basis or "")
    # Revocation is sent before erasure on the same partition.
    partner_actions = [s.action for s in steps if s.system == "partners"]
    assert partner_actions.index("erase") > partner_actions.index("revoke_sharing")
    assert {s.system for s in steps if s.phase == cases.LAST_PHASE} == {"notifier"}


def test_erasure_completes_only_after_every_system_and_notifier_last() -> None:
    case = opened().case
    assert {s.system for s in pending(case)} == set(DATA_MAP.systems) - {"notifier"}
    # All but one first-phase system answer: still waiting, nothing sent to the notifier.
    first_phase = pending(case)
    for step in first_phase[:-1]:
        case = cases.record_ack(case, step.command_id or "", step.expect or "done", T0, step.basis).case
        assert case.status == AWAITING_SYSTEMS
    assert not any(s.issued for s in case.steps if s.system == "notifier")
    last = first_phase[-1]
    decision = cases.record_ack(case, last.command_id or "", last.expect or "done", T0, last.basis)
    # Now the completion email is requested, then the notifier's erase is sent; not completed yet.
    kinds = [type(e).__name__ for e in decision.effects]
    assert kinds.index("Notify") < kinds.index("IssueCommands")
    # The subject's other open requests are closed with the email that names them.
    assert kinds.index("Notify") + 1 == kinds.index("CancelOtherCases")
    [email] = effects_of(decision, cases.Notify)
    assert email.template == "erasure_completed" and email.survive_erasure
    assert email.params["retained"] == [
        {"system": "billing", "basis": "Bokföringslagen 7:2: accounting records are kept for 7 years"}
    ]
    [issue] = effects_of(decision, cases.IssueCommands)
    assert plan_of(issue.steps) == {("notifier", "erase", None)}
    assert decision.case.status == AWAITING_SYSTEMS
    assert not effects_of(decision, cases.ShredSubject)
    # The notifier's ack completes the case; the key is shredded last, no second email.
    notifier = pending(decision.case)[0]
    final = cases.record_ack(decision.case, notifier.command_id or "", "done", T0)
    assert final.case.status == COMPLETED
    assert statuses(final) == [COMPLETED]
    assert isinstance(final.effects[-1], cases.ShredSubject)
    assert effects_of(final, cases.CancelOtherCases)
    assert not effects_of(final, cases.Notify)
    assert final.case.retained == email.params["retained"]
    assert set(final.case.told) == set(DATA_MAP.systems)


def test_not_found_counts_as_answered() -> None:
    case, _ = answer_all(opened().case, lambda s: "not_found")
    assert case.status == COMPLETED


def test_repeated_and_unknown_acks_change_nothing() -> None:
    case = opened().case
    step = pending(case)[0]
    once = cases.record_ack(case, step.command_id or "", "done", T0).case
    again = cases.record_ack(once, step.command_id or "", "failed", T0)
    assert again.case == once and again.effects == ()
    unknown = cases.record_ack(once, "9d6c1a7e-0000-4000-8000-000000000000", "done", T0)
    assert unknown.case == once and unknown.effects == ()
    with pytest.raises(CaseError):
        cases.record_ack(once, step.command_id or "", "maybe", T0)


def test_command_ids_are_derived_so_replays_issue_the_same_commands() -> None:
    first = [s.command_id for s in opened().case.steps if s.issued]
    second = [s.command_id for s in opened().case.steps if s.issued]
    assert first == second and len(set(first)) == len(first)


def test_command_ids_are_keyed_with_the_cases_secret_so_no_system_can_compute_another_ones() -> None:
    """What `partners` sees (the request id, its own command) is not enough to compute `accounts`' id."""
    secret, other = "5e" * 16, "a7" * 16
    keyed = [s for s in opened(command_secret=secret).case.steps if s.issued]
    assert [s.command_id for s in keyed] == [s.command_id for s in opened(command_secret=secret).case.steps
                                             if s.issued], "the same case makes the same ids (replays)"
    assert not {s.command_id for s in keyed} & {s.command_id for s in opened(command_secret=other).case.steps}
    unkeyed = {s.command_id for s in opened().case.steps}
    assert not {s.command_id for s in keyed} & unkeyed, "not the ids derived from the request id alone"
    accounts = next(s for s in keyed if s.system == "accounts")
    request_id = opened().case.request_id
    guessed = str(uuid.uuid5(cases.COMMAND_NAMESPACE, f"{request_id}:{accounts.key}:{accounts.attempt}"))
    assert accounts.command_id != guessed


def test_erasure_of_an_already_erased_subject_completes_without_commands() -> None:
    decision = cases.open_case(make_case(), DATA_MAP, T0, subject_erased=True)
    assert statuses(decision) == [RECEIVED, IN_PROGRESS, COMPLETED]
    assert not effects_of(decision, cases.IssueCommands) and not effects_of(decision, cases.Notify)
    other = cases.open_case(make_case(cases.ACCESS), DATA_MAP, T0, subject_erased=True)
    assert other.case.status == CANCELLED


# --- access and portability -----------------------------------------------------------------------


@pytest.mark.parametrize("right", [cases.ACCESS, cases.PORTABILITY])
def test_export_to_every_system_holding_data_then_package(right: str) -> None:
    case = opened(right).case
    assert plan_of(tuple(pending(case))) == {(s, "export", None) for s in DATA_MAP.systems}
    done, decisions = answer_all(case)
    assert done.status == COMPLETED
    kinds = [type(e).__name__ for e in decisions[-1].effects]
    assert kinds.index("AssembleExport") < kinds.index("StatusChanged")
    assert not any(effects_of(d, cases.AssembleExport) for d in decisions[:-1])


# --- rectification, restriction, objection ------------------------------------------------------


def test_rectification_goes_to_systems_holding_the_fields_including_notifier() -> None:
    case = opened(cases.RECTIFICATION, corrected_fields=("email",)).case
    assert {s.system for s in pending(case)} == {
        "accounts",
        "billing",
        "marketing_email",
        "support",
        "partners",
        "ipcom_group",
        "notifier",
    }
    assert {s.action for s in case.steps} == {"rectify"}
    phone = opened(cases.RECTIFICATION, corrected_fields=("phone",)).case
    assert {s.system for s in phone.steps} == {"accounts", "support"}
    done, _ = answer_all(case)
    assert done.status == COMPLETED
    assert set(done.told) == {s.system for s in case.steps}  # Art. 19: who was told


def test_rectification_of_fields_no_system_holds_goes_to_manual_review() -> None:
    decision = opened(cases.RECTIFICATION, corrected_fields=("shoe_size",))
    assert decision.case.status == IN_PROGRESS and decision.case.manual_review
    assert "shoe_size" in (decision.case.review_reason or "")
    assert cases.approve(decision.case, DATA_MAP, T0).case.status == COMPLETED


def _map_without(**removed: tuple[str, ...]) -> DataMap:
    """The bundled data map as an operator might have edited it: `system=(fields it no longer holds)`."""
    doc = yaml.safe_load(DEFAULT_DATA_MAP.read_text(encoding="utf-8"))
    for system, fields in removed.items():
        doc["systems"][system]["fields"] = [f for f in doc["systems"][system]["fields"] if f not in fields]
    return parse_data_map(doc)


def test_a_rectify_with_no_values_to_send_goes_to_review_instead_of_waiting_forever() -> None:
    case = opened(cases.RECTIFICATION, corrected_fields=("phone",)).case
    assert {s.system for s in pending(case)} == {"accounts", "support"}
    # The workflow found nothing to send them (the sealed values can no longer be read).
    review = cases.rectify_not_sent(case, ["accounts", "support"], T0)
    assert review.case.status == IN_PROGRESS and review.case.manual_review
    assert statuses(review) == [IN_PROGRESS]
    assert "accounts, support" in (review.case.review_reason or "")
    assert not pending(review.case), "nothing left that waits for an answer"
    retried = cases.approve(review.case, DATA_MAP, T0)
    [issue] = effects_of(retried, cases.IssueCommands)
    assert {(s.system, s.attempt) for s in issue.steps} == {("accounts", 2), ("support", 2)}


def test_a_retried_rectify_leaves_out_a_system_the_data_map_no_longer_gives_the_fields() -> None:
    case = opened(cases.RECTIFICATION, corrected_fields=("email", "phone")).case
    failed = cases.record_ack(case, next(s for s in pending(case) if s.system == "support").command_id or "",
                              "failed", T0).case
    rest, _ = answer_all(failed)
    assert rest.manual_review
    # Since the plan, support's entry in the data map lost the phone (it keeps the email).
    retried = cases.approve(rest, _map_without(support=("phone",)), T0)
    [issue] = effects_of(retried, cases.IssueCommands)
    assert [s.system for s in issue.steps] == ["support"], "still holds the email"
    # Had it lost both fields, it is left out, and the case completes with the others' answers.
    done = cases.approve(rest, _map_without(support=("email", "phone")), T0)
    assert not effects_of(done, cases.IssueCommands)
    assert done.case.status == COMPLETED and "support" not in {s.system for s in done.case.steps}
    assert "case_systems_left_out" in [n.action for n in effects_of(done, cases.Note)]
    [email] = outcome_emails(done)
    assert "support" not in email.params["informed"]


def test_a_retried_rectify_with_no_holder_left_goes_back_to_review() -> None:
    case = opened(cases.RECTIFICATION, corrected_fields=("phone",)).case
    review = cases.rectify_not_sent(case, ["accounts", "support"], T0).case
    gone = _map_without(accounts=("phone",), support=("phone",))
    again = cases.approve(review, gone, T0)
    assert again.case.status == IN_PROGRESS and again.case.manual_review and not again.case.steps
    assert "phone" in (again.case.review_reason or "")
    assert cases.approve(again.case, gone, T0).case.status == COMPLETED, "accepted as handled by hand"


def test_restriction_and_lifting_go_to_every_system_including_consent() -> None:
    case = opened(cases.RESTRICTION, circumstance="accuracy_contested").case
    assert plan_of(tuple(pending(case))) == {(s, "restrict", None) for s in DATA_MAP.systems}
    done, _ = answer_all(case)
    assert done.status == COMPLETED
    with pytest.raises(CaseError):
        cases.lift_restriction(opened().case, DATA_MAP)
    lifted = cases.lift_restriction(done, DATA_MAP)
    [issue] = effects_of(lifted, cases.IssueCommands)
    assert plan_of(issue.steps) == {(s, "lift_restriction", None) for s in DATA_MAP.systems}
    after, _ = answer_all(lifted.case)
    assert after.status == COMPLETED  # answers to the lift change nothing in a closed case
    with pytest.raises(CaseError, match="already"):
        cases.lift_restriction(after, DATA_MAP)


@pytest.mark.parametrize("processing", ["marketing", "profiling"])
def test_absolute_objection_completes_at_once_even_unverified(processing: str) -> None:
    decision = opened(cases.OBJECTION, verified=False, processing=processing)
    assert statuses(decision) == [RECEIVED, IN_PROGRESS, COMPLETED]
    assert not effects_of(decision, cases.IssueCommands)
    assert not effects_of(decision, cases.SendVerificationCode)


def test_legitimate_interest_objection_goes_to_manual_review() -> None:
    decision = opened(cases.OBJECTION, processing="legitimate_interest")
    assert decision.case.status == IN_PROGRESS and decision.case.manual_review
    assert statuses(decision) == [RECEIVED, IN_PROGRESS]
    upheld = cases.approve(decision.case, DATA_MAP, T0)
    assert upheld.case.status == AWAITING_SYSTEMS
    assert plan_of(tuple(pending(upheld.case))) == {
        ("analytics", "suppress", "personalization"),
        ("analytics", "suppress", "service_improvement"),
        ("logs", "suppress", "security"),
        # The consent service's decisions deny them too, and it withdraws what rests on legitimate
        # interest only where the subject lives (it knows where that is).
        ("consent", "suppress", "personalization"),
        ("consent", "suppress", "security"),
        ("consent", "suppress", "service_improvement"),
    }
    refused = cases.reject(decision.case, "compelling legitimate grounds (Art. 21(1))", T0)
    assert refused.case.status == REJECTED and not refused.case.manual_review


def test_unverified_legitimate_interest_objection_still_needs_identity() -> None:
    assert opened(cases.OBJECTION, verified=False, processing="legitimate_interest").case.status == IDENTITY_PENDING


# --- the subject is told what was done (Art. 12(3), 19) --------------------------------------------


def outcome_emails(decisions: list[Decision] | Decision) -> list[cases.Notify]:
    found = [decisions] if isinstance(decisions, Decision) else decisions
    return [e for d in found for e in effects_of(d, cases.Notify) if e.template == "request_completed"]


def test_rectification_completes_with_one_email_naming_fields_and_systems_told() -> None:
    start = opened(cases.RECTIFICATION, corrected_fields=("email", "phone"))
    assert not outcome_emails(start), "nothing is told before the systems answered"
    done, decisions = answer_all(start.case, lambda s: "not_found" if s.system == "billing" else "done")
    assert done.status == COMPLETED and done.completion_notified
    [email] = outcome_emails(decisions)
    assert outcome_emails(decisions[-1]) == [email], "requested with the completion"
    assert email.suffix == "completed" and not email.survive_erasure
    assert email.params["request_id"] == RID and email.params["right"] == cases.RECTIFICATION
    assert email.params["fields"] == ["email", "phone"]
    assert email.params["informed"] == done.told == sorted({s.system for s in start.case.steps})
    assert "notifier" in email.params["informed"]


def test_lifting_one_of_two_restrictions_keeps_the_data_restricted_until_the_last() -> None:
    first, _ = answer_all(opened(cases.RESTRICTION, circumstance="accuracy_contested").case)
    second = replace(first, request_id="00000000-0000-4000-8000-000000000002")
    # The first is lifted while the second holds: recorded, nothing sent, the subject not told.
    lifted = cases.lift_restriction(first, DATA_MAP, [first, second])
    assert lifted.case.restriction_lifted and not effects_of(lifted, cases.IssueCommands)
    assert effects_of(lifted, cases.Note)[0].detail == {"still_restricted_by": [second.request_id]}
    # The last one is lifted: every system is told.
    last = cases.lift_restriction(second, DATA_MAP, [lifted.case, second])
    [issue] = effects_of(last, cases.IssueCommands)
    assert plan_of(issue.steps) == {(s, "lift_restriction", None) for s in DATA_MAP.systems}
    # A restriction still waiting for its identity check holds nothing yet.
    waiting = replace(second, status=CaseStatus.IDENTITY_PENDING.value, restriction_lifted=False)
    assert effects_of(cases.lift_restriction(first, DATA_MAP, [first, waiting]), cases.IssueCommands)


def test_restriction_completes_with_one_email_and_lifting_with_another() -> None:
    start = opened(cases.RESTRICTION, circumstance="accuracy_contested")
    done, decisions = answer_all(start.case)
    [email] = outcome_emails(decisions)
    assert email.suffix == "completed" and not email.params["lifted"]
    assert email.params["informed"] == sorted(DATA_MAP.systems)
    # The subject is told before the restriction is lifted (Art. 18(3)): with the decision, ahead of
    # the commands that lift it, naming every system about to be told.
    lifted = cases.lift_restriction(done, DATA_MAP)
    [lift_email] = outcome_emails(lifted)
    assert lift_email.template == "request_completed" and lift_email.suffix == "restriction_lifted"
    assert lift_email.params["lifted"] and lift_email.params["informed"] == sorted(DATA_MAP.systems)
    kinds = [type(e) for e in lifted.effects]
    assert kinds.index(cases.Notify) < kinds.index(cases.IssueCommands)
    assert lifted.case.lift_notified
    # The systems' answers bring no second email, whether they lift or fail.
    after, answers = answer_all(lifted.case)
    assert not any(outcome_emails(d) for d in answers)
    assert after.status == COMPLETED
    _, answers = answer_all(lifted.case, lambda s: "failed" if s.system == "billing" else "done")
    assert not any(outcome_emails(d) for d in answers)


def test_a_system_that_could_not_lift_a_restriction_is_flagged_and_retried_on_approval() -> None:
    done, _ = answer_all(opened(cases.RESTRICTION, circumstance="accuracy_contested").case)
    lifted = cases.lift_restriction(done, DATA_MAP)
    after, decisions = answer_all(lifted.case, lambda s: "failed" if s.system in ("billing", "support") else "done")
    # Completed is final, but the data is still restricted at billing and support: an operator must act.
    assert after.status == COMPLETED and after.manual_review
    assert "billing, support" in (after.review_reason or "") and "lift" in (after.review_reason or "")
    notes = [n.action for d in decisions for n in effects_of(d, cases.Note)]
    assert "case_manual_review" in notes
    retried = cases.approve(after, DATA_MAP, T0)
    [issue] = effects_of(retried, cases.IssueCommands)
    assert {(s.system, s.action, s.attempt) for s in issue.steps} == {
        ("billing", "lift_restriction", 2), ("support", "lift_restriction", 2)}
    old_ids = {s.command_id for s in after.lift_steps}
    assert not {s.command_id for s in issue.steps} & old_ids, "new commands, so they are sent again"
    assert not retried.case.manual_review and retried.case.status == COMPLETED
    assert not statuses(retried) and not outcome_emails(retried), "the subject was told with the lift"
    final, _ = answer_all(retried.case)
    assert all(s.outcome == "done" for s in final.lift_steps) and not final.manual_review
    with pytest.raises(CaseError, match="nothing to approve"):
        cases.approve(final, DATA_MAP, T0)


def test_absolute_objection_email_names_the_processing_stopped() -> None:
    decision = opened(cases.OBJECTION, verified=False, processing="marketing")
    [email] = outcome_emails(decision)
    assert decision.case.status == COMPLETED and decision.case.completion_notified
    assert email.params["processing"] == "marketing" and email.params["informed"] == []
    assert email.params["purposes"] == ["marketing_email", "profiling", "third_party_marketing"]
    assert decision.effects[-2] == cases.StatusChanged(IN_PROGRESS, COMPLETED)
    assert decision.effects[-1] == email, "requested with the completed status"
    [profiling] = outcome_emails(opened(cases.OBJECTION, processing="profiling"))
    assert profiling.params["purposes"] == ["profiling"]


def test_upheld_objection_email_names_the_purposes_suppressed_and_systems_told() -> None:
    review = opened(cases.OBJECTION, processing="legitimate_interest")
    upheld = cases.approve(review.case, DATA_MAP, T0)
    assert not outcome_emails(review) and not outcome_emails(upheld)
    _, decisions = answer_all(upheld.case)
    [email] = outcome_emails(decisions)
    assert email.params["purposes"] == ["personalization", "security", "service_improvement"]
    assert email.params["informed"] == ["analytics", "consent", "logs"]


def test_a_field_no_system_holds_is_not_reported_as_corrected() -> None:
    start = opened(cases.RECTIFICATION, corrected_fields=("email", "shoe_size"))
    assert {s.action for s in start.case.steps} == {"rectify"}
    done, decisions = answer_all(start.case)
    [email] = outcome_emails(decisions)
    assert (email.params["fields"], email.params["not_held"]) == (["email"], ["shoe_size"])
    assert done.fields_not_held == ("shoe_size",)


def test_rectification_handled_by_hand_is_told_too() -> None:
    review = opened(cases.RECTIFICATION, corrected_fields=("shoe_size",))
    [email] = outcome_emails(cases.approve(review.case, DATA_MAP, T0))
    assert email.params["informed"] == [] and email.params["fields"] == ["shoe_size"]


@pytest.mark.parametrize(
    "setup",
    [
        {"right": cases.RECTIFICATION, "corrected_fields": ("email",)},
        {"right": cases.RESTRICTION, "circumstance": "legal_claims"},
        {"right": cases.OBJECTION, "processing": "legitimate_interest"},
    ],
)
def test_a_replayed_completion_requests_no_second_email(setup: dict[str, object]) -> None:
    case = opened(**setup).case  # type: ignore[arg-type]
    if case.manual_review:
        case = cases.approve(case, DATA_MAP, T0).case
    last = pending(case)[-1]
    for step in pending(case)[:-1]:
        case = cases.record_ack(case, step.command_id or "", "done", T0).case
    final = cases.record_ack(case, last.command_id or "", "done", T0)
    assert len(outcome_emails(final)) == 1
    # The same answers again (a redelivered batch) change nothing and ask for nothing.
    for step in final.case.steps:
        again = cases.record_ack(final.case, step.command_id or "", "done", T0)
        assert again.case == final.case and again.effects == ()
    # A re-run of the completion on a case that already asked (e.g. replayed after a crash before the
    # offsets were committed, from the state saved with the effect) asks for no second email.
    rerun = cases._complete(replace(final.case, status=AWAITING_SYSTEMS, closed_at=None), T0)
    assert rerun.case.status == COMPLETED and not outcome_emails(rerun)


def test_a_replayed_lift_answer_requests_no_second_email() -> None:
    done, _ = answer_all(opened(cases.RESTRICTION, circumstance="legal_claims").case)
    lifted = cases.lift_restriction(done, DATA_MAP)
    after, answers = answer_all(lifted.case)
    assert len(outcome_emails(lifted)) == 1 and not any(outcome_emails(d) for d in answers)
    for step in after.lift_steps:
        assert cases.record_ack(after, step.command_id or "", "done", T0).effects == ()


@pytest.mark.parametrize("right", [cases.ERASURE, cases.ACCESS, cases.PORTABILITY])
def test_rights_with_their_own_final_email_get_no_request_completed(right: str) -> None:
    _, decisions = answer_all(opened(right).case)
    assert not outcome_emails(decisions)


# --- no sequence of operations reaches an illegal state --------------------------------------------

RIGHT_SETUPS: list[dict[str, object]] = [
    {"right": cases.ERASURE},
    {"right": cases.ERASURE, "requested_via": cases.INTERNAL, "ground": "retention_expired"},
    {"right": cases.ACCESS},
    {"right": cases.PORTABILITY, "export_format": "csv"},
    {"right": cases.RECTIFICATION, "corrected_fields": ("email",)},
    {"right": cases.RECTIFICATION, "corrected_fields": ("unknown_field",)},
    {"right": cases.RESTRICTION, "circumstance": "legal_claims"},
    {"right": cases.OBJECTION, "processing": "marketing"},
    {"right": cases.OBJECTION, "processing": "legitimate_interest"},
]

ack_operation = st.tuples(
    st.just("ack"), st.integers(0, 30), st.sampled_from(["done", "done", "not_found", "retained", "failed"])
)
# Answers are listed several times so that long cases (erasure: 15 commands) reach their end too.
operation = st.one_of(
    ack_operation,
    ack_operation,
    ack_operation,
    st.tuples(st.just("ack_all"), st.sampled_from(["done", "not_found", "failed"])),
    st.tuples(st.just("verify")),
    st.tuples(st.just("approve")),
    st.tuples(st.just("reject"), st.sampled_from(["", "unfounded"])),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("extend"), st.integers(-1, 3), st.integers(0, 40)),
    st.tuples(st.just("timeout"), st.integers(0, 20)),
    st.tuples(st.just("ack_unknown")),
    st.tuples(st.just("lift")),
    st.tuples(st.just("unsent")),
    st.tuples(st.just("active"), st.booleans()),
)


def _outstanding(case: Case) -> list[cases.Step]:
    outstanding = [s for s in case.steps if s.issued and s.outcome is None]
    if not outstanding:
        raise CaseError("nothing outstanding")
    return outstanding


def _ack(case: Case, pick: int, status: str, now: datetime) -> Decision:
    outstanding = _outstanding(case)
    step = outstanding[pick % len(outstanding)]
    return cases.record_ack(case, step.command_id or "", status, now, "basis" if status == "retained" else None)


def _ack_all(case: Case, status: str, now: datetime) -> Decision:
    decision = Decision(case)
    for step in _outstanding(case):
        decision = decision.then(cases.record_ack(decision.case, step.command_id or "", status, now))
    return decision


def _unsent(case: Case, now: datetime) -> Decision:  # the workflow had no correction values to send
    systems = [s.system for s in case.steps if s.action == "rectify" and s.issued and s.outcome is None]
    if not systems:
        raise CaseError("no rectify outstanding")
    return cases.rectify_not_sent(case, systems, now)


def _active(case: Case, recently: bool, now: datetime) -> Decision:
    """The subject seen again, recently or (a late event) long ago."""
    cutoff = now - timedelta(days=1095)
    return cases.subject_active(case, now if recently else cutoff - timedelta(days=1), cutoff, now)


OPERATIONS: dict[str, Callable[[Case, tuple, datetime], Decision]] = {
    "verify": lambda case, op, now: cases.verify(case, DATA_MAP, now),
    "approve": lambda case, op, now: cases.approve(case, DATA_MAP, now),
    "reject": lambda case, op, now: cases.reject(case, op[1], now),
    "cancel": lambda case, op, now: cases.cancel(case, "cancelled", now),
    "extend": lambda case, op, now: cases.extend(case, op[1], "reason", T0 + timedelta(days=op[2])),
    "timeout": lambda case, op, now: cases.close_unverified(case, T0 + timedelta(days=op[1]), timedelta(days=14)),
    "ack": lambda case, op, now: _ack(case, op[1], op[2], now),
    "ack_all": lambda case, op, now: _ack_all(case, op[1], now),
    "unsent": lambda case, op, now: _unsent(case, now),
    "ack_unknown": lambda case, op, now: cases.record_ack(case, "00000000-0000-4000-8000-000000000000", "done", now),
    "active": lambda case, op, now: _active(case, op[1], now),
}


def apply_operation(case: Case, op: tuple) -> Decision:
    """One operation drawn by the state-machine test, on the case as it is (anything else: lift)."""
    operation = OPERATIONS.get(op[0], lambda case, op, now: cases.lift_restriction(case, DATA_MAP))
    return operation(case, op, T0 + timedelta(days=1))


def check_status_story(before: Case, decision: Decision) -> None:
    """The status changes among the effects go through allowed transitions and end at the new status."""
    previous = before.status
    for change in decision.effects:
        if isinstance(change, cases.StatusChanged):
            if change.previous is None:  # the opening event: a new case is announced as received
                assert change.status == RECEIVED and previous == RECEIVED
                continue
            assert change.previous == previous
            assert change.status in TRANSITIONS[previous], (previous, change.status)
            previous = change.status
    assert previous == decision.case.status  # the effects tell the whole story of the status


def check_invariants(before: Case, decision: Decision) -> None:
    after = decision.case
    assert after.status in TRANSITIONS
    check_status_story(before, decision)
    if before.terminal:
        assert after.status == before.status
    assert after.extension_months in (0, 1, 2)
    assert after.due_at == cases.due_date(after.received_at, after.extension_months)
    assert after.due_at <= after.received_at + timedelta(days=92, hours=1)  # three months at most
    if after.extension_months:
        assert after.extension_reason
    # Why it waits: the code and the English sentence are set and cleared together, from one `Review`.
    assert (after.review_code is None) == (after.review_reason is None)
    if after.review is not None:
        assert after.review_reason == after.review.text
    if after.manual_review:  # or a completed restriction some system could not lift
        assert after.status == IN_PROGRESS or any(s.outcome == "failed" for s in after.lift_steps)
    if after.status == AWAITING_SYSTEMS:
        assert any(s.issued and s.outcome is None for s in after.steps)
    if after.status == COMPLETED:
        case_steps = [s for s in after.steps if s.action != "lift_restriction"]
        assert all(s.settled for s in case_steps), "completed with a system not answered"
        assert after.closed_at is not None
    if after.status == REJECTED:
        assert after.reason
    if after.status in (IN_PROGRESS, AWAITING_SYSTEMS, COMPLETED) and after.right != cases.OBJECTION:
        assert after.identity_verified or after.status != AWAITING_SYSTEMS
    shreds = effects_of(decision, cases.ShredSubject)
    if shreds:
        assert after.right == cases.ERASURE and after.status == COMPLETED
        assert decision.effects[-1] == shreds[0]
        assert after.completion_notified
    issued = [s.command_id for s in after.steps if s.issued]
    assert len(set(issued)) == len(issued)
    if after.right == cases.ERASURE and any(s.issued for s in after.steps if s.system == "notifier"):
        others = [s for s in after.steps if s.system != "notifier"]
        assert all(s.settled for s in others), "notifier erased before the others answered"
        assert after.completion_notified


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    setup=st.sampled_from(RIGHT_SETUPS),
    verified=st.booleans(),
    operations=st.lists(operation, max_size=60),
    settle=st.booleans(),
)
def test_no_sequence_of_operations_reaches_an_illegal_state(
    setup: dict[str, object], verified: bool, operations: list[tuple], settle: bool
) -> None:
    case = make_case(verified=verified, **setup)  # type: ignore[arg-type]
    decision = cases.open_case(case, DATA_MAP, T0)
    check_invariants(case, decision)
    emails = [n.suffix for n in outcome_emails(decision)]
    case = decision.case
    for op in operations:
        try:
            decision = apply_operation(case, op)
        except CaseError:
            continue
        check_invariants(case, decision)
        emails += [n.suffix for n in outcome_emails(decision)]
        case = decision.case
    if settle:
        # Then let every system answer (and an operator approve what waits for one), so that the
        # long paths to completion are walked with the invariants checked at each step too.
        for op in [("verify",), ("approve",), ("ack_all", "done")] * 4:
            try:
                decision = apply_operation(case, op)
            except CaseError:
                continue
            check_invariants(case, decision)
            emails += [n.suffix for n in outcome_emails(decision)]
            case = decision.case
    # The subject is told the outcome exactly once, when (and only if) such a case completed.
    told = case.status == COMPLETED and case.right in cases.OUTCOME_NOTIFIED
    assert emails.count("completed") == (1 if told else 0)
    assert emails.count("restriction_lifted") == (1 if case.lift_notified else 0)
    if case.right in cases.OUTCOME_NOTIFIED:
        assert case.completion_notified == (case.status == COMPLETED)
    event(f"{case.right} ends {case.status}")


@pytest.mark.parametrize("ground", ["child_data", "retention_expired"])
def test_an_erasure_the_services_started_confirms_no_request_and_says_why(ground: str) -> None:
    # A retention erasure only erases at once where the operators turned its review off.
    start = cases.open_case(make_case(requested_via=cases.INTERNAL, ground=ground), DATA_MAP, T0,
                            retention_review=False)
    assert not [n for n in effects_of(start, cases.Notify) if n.template == "request_received"], \
        "the subject asked for nothing: no 'we have received your request'"
    _, decisions = answer_all(start.case)
    [email] = [n for d in decisions for n in effects_of(d, cases.Notify) if n.template == "erasure_completed"]
    assert email.params["our_initiative"] and email.params["ground"] == ground


def test_a_retention_erasure_waits_in_review_until_an_operator_approves() -> None:
    # Inactivity is judged only from registrations, consent changes and requests: a customer who
    # logs in and buys is not seen, so nothing is erased before an operator confirms.
    start = opened(requested_via=cases.INTERNAL, ground="retention_expired")
    assert start.case.status == IN_PROGRESS and start.case.manual_review
    assert statuses(start) == [RECEIVED, IN_PROGRESS]
    assert "retention" in (start.case.status_reason or "")
    assert not effects_of(start, cases.IssueCommands) and not effects_of(start, cases.Notify)
    assert [n.action for n in effects_of(start, cases.Note)] == ["case_manual_review"]

    approved = cases.approve(start.case, DATA_MAP, T0)
    assert statuses(approved) == [AWAITING_SYSTEMS] and not approved.case.manual_review
    [issue] = effects_of(approved, cases.IssueCommands)
    assert plan_of(issue.steps) == plan_of(tuple(s for s in cases.erasure_plan(DATA_MAP) if s.system != "notifier"))
    done, decisions = answer_all(approved.case)
    assert done.status == COMPLETED
    assert [n for d in decisions for n in effects_of(d, cases.Notify) if n.template == "erasure_completed"]


def test_a_retention_erasure_an_operator_rejects_keeps_the_data_and_emails_nobody() -> None:
    start = opened(requested_via=cases.INTERNAL, ground="retention_expired")
    kept = cases.reject(start.case, "active customer: purchases in the last year", T0)
    assert kept.case.status == REJECTED and kept.case.reason == "active customer: purchases in the last year"
    assert not effects_of(kept, cases.Notify), "the subject asked for nothing: no refusal to tell them of"
    assert not [s for s in kept.case.steps if s.issued]


def test_no_overdue_email_for_a_request_the_subject_did_not_make() -> None:
    waiting = opened(requested_via=cases.INTERNAL, ground="retention_expired").case
    assert cases.is_overdue(waiting, waiting.due_at + timedelta(seconds=1))
    assert cases.overdue_email(waiting) is None
    assert cases.overdue_email(opened(cases.ACCESS, verified=False).case) is None
    assert cases.overdue_email(opened(cases.ACCESS).case) is not None


def test_other_erasures_the_services_start_are_not_held_for_review() -> None:
    start = opened(requested_via=cases.INTERNAL, ground="child_data")
    assert start.case.status == AWAITING_SYSTEMS and not start.case.manual_review


def test_an_internal_request_whose_identity_is_not_verified_waits_for_it_like_any_other() -> None:
    start = opened(cases.ACCESS, verified=False, requested_via=cases.INTERNAL)
    assert start.case.status == IDENTITY_PENDING and not effects_of(start, cases.IssueCommands)


def test_an_erasure_the_subject_asked_for_is_confirmed_as_their_request() -> None:
    start = opened(ground="child_data")  # e.g. a parent asking under Art. 17(1)(f)
    assert [n.template for n in effects_of(start, cases.Notify)] == ["request_received"]
    _, decisions = answer_all(start.case)
    [email] = [n for d in decisions for n in effects_of(d, cases.Notify) if n.template == "erasure_completed"]
    assert not email.params["our_initiative"]


# --- a retention erasure waiting for review, and the subject seen again --------------------------

RETENTION_CUTOFF = T0 - timedelta(days=1095)


def retention_waiting() -> Case:
    return opened(requested_via=cases.INTERNAL, ground="retention_expired").case


def test_a_retention_erasure_waiting_for_review_is_cancelled_when_the_subject_is_active_again() -> None:
    waiting = retention_waiting()
    assert cases.awaits_retention_review(waiting)
    later = T0 + timedelta(days=2)
    back = cases.subject_active(waiting, later - timedelta(hours=1), RETENTION_CUTOFF, later)
    assert back.case.status == CANCELLED and back.case.closed_at == later
    assert back.case.reason == cases.ACTIVE_AGAIN == "the subject was active again"
    assert back.case.status_reason == cases.ACTIVE_AGAIN, "the status event says why, not the review reason"
    assert not back.case.manual_review, "no longer waits for an operator"
    assert statuses(back) == [CANCELLED]
    [note] = effects_of(back, cases.Note)
    assert note.action == "case_subject_active" and note.detail == {"active_at": (later - timedelta(hours=1)).isoformat()}
    assert not effects_of(back, cases.Notify), "the subject asked for nothing: nobody is emailed"
    assert not effects_of(back, cases.IssueCommands)


def test_activity_still_past_the_retention_is_not_the_subject_coming_back() -> None:
    # A late event from long ago (still before the cutoff) leaves the case for the operator.
    waiting = retention_waiting()
    late = cases.subject_active(waiting, RETENTION_CUTOFF - timedelta(seconds=1), RETENTION_CUTOFF, T0)
    assert late == Decision(waiting)
    at_cutoff = cases.subject_active(waiting, RETENTION_CUTOFF, RETENTION_CUTOFF, T0)
    assert at_cutoff.case.status == CANCELLED, "not past the retention: the ground no longer holds"


def test_cancelling_for_activity_is_idempotent() -> None:
    back = cases.subject_active(retention_waiting(), T0, RETENTION_CUTOFF, T0)
    again = cases.subject_active(back.case, T0 + timedelta(minutes=1), RETENTION_CUTOFF, T0 + timedelta(minutes=1))
    assert again == Decision(back.case), "a redelivered activity changes nothing"


def test_activity_leaves_every_other_case_alone() -> None:
    waiting = retention_waiting()
    approved = cases.approve(waiting, DATA_MAP, T0).case  # erasing: systems may have acted
    failed_step = next(s for s in approved.steps if s.issued)
    back_in_review = cases.record_ack(approved, failed_step.command_id or "", "failed", T0).case
    assert back_in_review.manual_review and back_in_review.status == IN_PROGRESS
    rejected = cases.reject(waiting, "active customer", T0).case
    others = [
        approved,
        back_in_review,  # in review again after a failed answer: commands went out
        rejected,
        opened(requested_via=cases.INTERNAL, ground="child_data").case,
        opened(cases.OBJECTION, processing="legitimate_interest").case,  # in review, not retention
        opened(ground="retention_expired").case,  # asked for by someone, not the sweep
        cases.open_case(make_case(requested_via=cases.INTERNAL, ground="retention_expired"), DATA_MAP, T0,
                        retention_review=False).case,
    ]
    for case in others:
        assert not cases.awaits_retention_review(case)
        assert cases.subject_active(case, T0, RETENTION_CUTOFF, T0) == Decision(case), case
