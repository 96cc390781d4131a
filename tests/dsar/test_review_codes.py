"""Why a case waits for an operator, as a code with parameters beside the English sentence: every path
that flags a review sets both from one `Review`, every path that clears the sentence clears the code,
and a case stored before codes existed still loads (no I/O)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from services.dsar import cases, reviews, views
from services.dsar.cases import COMPLETED, IN_PROGRESS, Case, Decision
from services.dsar.reviews import Review
from services.dsar.store import case_from_json, case_to_json
from tests.dsar.test_cases import DATA_MAP, T0, _map_without, answer_all, opened, pending


def retention() -> Decision:
    return opened(requested_via=cases.INTERNAL, ground="retention_expired")


def fields_not_held() -> Decision:
    return opened(cases.RECTIFICATION, corrected_fields=("hat_size", "shoe_size"))


def objection() -> Decision:
    return opened(cases.OBJECTION, processing="legitimate_interest")


def unreadable() -> Decision:
    case = opened(cases.RECTIFICATION, corrected_fields=("phone",)).case
    return cases.rectify_not_sent(case, ["support", "accounts"], T0)


def no_holder_left() -> Decision:
    review = unreadable().case
    return cases.approve(review, _map_without(accounts=("phone",), support=("phone",)), T0)


def lift_failed() -> Decision:
    done, _ = answer_all(opened(cases.RESTRICTION, circumstance="accuracy_contested").case)
    lifted = cases.lift_restriction(done, DATA_MAP).case
    after, _ = answer_all(lifted, lambda s: "failed" if s.system in ("support", "billing") else "done")
    return Decision(after)


def failed(problem: str | None) -> Callable[[], Decision]:
    def answer() -> Decision:
        case = opened(cases.ACCESS).case
        step = next(s for s in pending(case) if s.system == "accounts")
        return cases.record_ack(case, step.command_id or "", "failed", T0, problem=problem)
    return answer


#: Each path that hands a case to an operator: the code and parameters it must carry.
FLAGGED: dict[str, tuple[Callable[[], Decision], str, dict[str, str]]] = {
    "retention": (retention, reviews.RETENTION_EXPIRED, {}),
    "fields_not_held": (fields_not_held, reviews.FIELDS_NOT_HELD, {"fields": "hat_size, shoe_size"}),
    "objection": (objection, reviews.OBJECTION_TO_WEIGH, {}),
    "unreadable": (unreadable, reviews.CORRECTION_UNREADABLE, {"systems": "accounts, support"}),
    "no_holder_left": (no_holder_left, reviews.FIELDS_NOT_HELD, {"fields": "phone"}),
    "lift_failed": (lift_failed, reviews.LIFT_FAILED, {"systems": "billing, support"}),
    "failed": (failed(None), reviews.SYSTEM_FAILED, {"system": "accounts", "action": "export"}),
    "unusable": (failed("the parts do not match their digest"), reviews.ANSWER_UNUSABLE,
                 {"system": "accounts", "action": "export", "problem": "the parts do not match their digest"}),
}


@pytest.mark.parametrize("path", sorted(FLAGGED))
def test_each_review_carries_its_code_and_parameters_beside_the_sentence(path: str) -> None:
    flag, code, params = FLAGGED[path]
    case = flag().case
    assert case.manual_review
    assert (case.review_code, case.review_params) == (code, params)
    assert case.review == Review(code, params)
    # One place builds both: the sentence is what the code and its parameters say in English.
    assert case.review_reason == Review(code, params).text
    assert "{" not in (case.review_reason or "")


def test_the_english_sentences_are_the_ones_the_api_always_had() -> None:
    assert retention().case.review_reason == cases.RETENTION_REVIEW
    assert cases.RETENTION_REVIEW.startswith("retention expired: no registration, consent change or request seen")
    assert fields_not_held().case.review_reason == "no system in the data map holds the fields hat_size, shoe_size"
    assert objection().case.review_reason == (
        "objection to legitimate-interest processing: weigh the grounds (Art. 21(1)) and approve or reject")
    assert unreadable().case.review_reason == (
        "no correction values to send to accounts, support (they can no longer be read); retry or handle by hand")
    assert lift_failed().case.review_reason == (
        "billing, support could not lift the restriction; approve to retry or handle by hand")
    assert failed(None)().case.review_reason == "accounts could not export; retry or handle by hand"
    assert failed("too large")().case.review_reason == (
        "accounts's answer to export cannot be used: too large; approve to ask again or handle by hand")
    assert Review(reviews.FIELDS_NOT_HELD, {"fields": ""}).text == "no system in the data map holds the fields (none)"
    [note] = [e for e in objection().effects if isinstance(e, cases.Note)]
    assert note.action == "case_manual_review"
    assert note.detail == {"reason": objection().case.review_reason, "review_code": reviews.OBJECTION_TO_WEIGH,
                           "review_params": {}}, "the audit entry keeps its sentence, and gets the code"


def cleared(case: Case) -> bool:
    return case.review_reason is None and case.review_code is None and case.review_params == {} \
        and case.review is None


@pytest.mark.parametrize("path", sorted(FLAGGED))
def test_approving_clears_the_code_with_the_sentence(path: str) -> None:
    flag, _, _ = FLAGGED[path]
    if path == "no_holder_left":
        approved = cases.approve(flag().case, _map_without(accounts=("phone",), support=("phone",)), T0)
    else:
        approved = cases.approve(flag().case, DATA_MAP, T0)
    assert not approved.case.manual_review
    assert cleared(approved.case), approved.case


def test_a_retention_erasure_cancelled_for_activity_clears_the_code() -> None:
    waiting = retention().case
    back = cases.subject_active(waiting, T0, T0 - timedelta(days=1095), T0 + timedelta(days=1))
    assert back.case.status == cases.CANCELLED and cleared(back.case)


def test_a_case_never_in_review_has_no_code() -> None:
    case = opened(cases.ACCESS).case
    assert cleared(case)
    done, _ = answer_all(case)
    assert done.status == COMPLETED and cleared(done)


def test_the_code_and_parameters_are_stored_and_served() -> None:
    case = unreadable().case
    assert case_from_json(case_to_json(case)) == case
    assert case_from_json(json.loads(case_to_json(case))) == case  # as asyncpg may hand jsonb back
    served = views._operator(case, T0)
    assert served["review_reason"] == case.review_reason  # unchanged for the API's readers
    assert served["review_code"] == reviews.CORRECTION_UNREADABLE
    assert served["review_params"] == {"systems": "accounts, support"}
    assert views._operator(opened(cases.ACCESS).case, T0)["review_code"] is None


def test_a_case_stored_before_codes_existed_still_loads() -> None:
    case = objection().case
    stored = json.loads(case_to_json(case))
    del stored["review_code"], stored["review_params"]
    old = case_from_json(json.dumps(stored))
    assert old.status == IN_PROGRESS and old.manual_review
    assert old.review_reason == case.review_reason, "its sentence is all it has"
    assert (old.review_code, old.review_params, old.review) == (None, {}, None)
    assert cleared(cases.approve(old, DATA_MAP, T0).case)
