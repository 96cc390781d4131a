"""The notifications the dsar service requests render with the notifier's templates (both locales).

A cross-service contract check without Kafka: every `Notify` a case decision (or the workflow) can
produce is rendered by `services.notifier.templates`, so a renamed param fails here, not in a mailbox.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from privacy_runtime.datamap import load_data_map
from privacy_runtime.settings import DEFAULT_DATA_MAP
from services.dsar import cases
from services.notifier import templates

DATA_MAP = load_data_map(DEFAULT_DATA_MAP)
NOW = datetime(2024, 1, 31, 12, tzinfo=UTC)
CONTEXT = templates.Context(contact_email="privacy@isopartner.se", public_base_url="http://127.0.0.1:6067")


def _case(right: str = cases.ERASURE, verified: bool = True, **details: object) -> cases.Case:
    return cases.new_case(
        request_id="6f1c3a52-8a61-4a43-9d0e-0d7a3a4f3b10",
        subject="usr-1",
        right=right,
        received_at=NOW,
        identity_verified=verified,
        requested_via="web_form",
        **details,  # type: ignore[arg-type]
    )


def _answered(case: cases.Case) -> tuple[cases.Case, list[cases.Notify]]:
    """Every outstanding command answered as the data map expects; the notifications that causes."""
    found: list[cases.Notify] = []
    while any(s.issued and not s.outcome for s in case.steps):
        step = next(s for s in case.steps if s.issued and not s.outcome)
        decision = cases.record_ack(case, step.command_id or "", step.expect or "done", NOW, step.basis)
        found += [e for e in decision.effects if isinstance(e, cases.Notify)]
        case = decision.case
    return case, found


def _every_notification() -> list[cases.Notify]:
    found: list[cases.Notify] = []
    unverified = cases.open_case(_case(verified=False), DATA_MAP, NOW)
    found += [e for e in unverified.effects if isinstance(e, cases.Notify)]  # request_received
    found.append(cases.code_email(unverified.case, "012345", 1, timedelta(hours=24)))
    found += [
        e for e in cases.extend(unverified.case, 2, "complex request", NOW).effects if isinstance(e, cases.Notify)
    ]
    found += [
        e for e in cases.reject(unverified.case, "manifestly unfounded", NOW).effects if isinstance(e, cases.Notify)
    ]
    found += [
        e
        for e in cases.close_unverified(unverified.case, NOW + timedelta(days=14), timedelta(days=14)).effects
        if isinstance(e, cases.Notify)
    ]
    found += _answered(cases.open_case(_case(), DATA_MAP, NOW).case)[1]
    found.append(cases.export_email(_case(cases.ACCESS), "http://127.0.0.1:6067/v1/exports/tok", NOW, 3))
    overdue = cases.overdue_email(_case(cases.ACCESS))
    assert overdue is not None
    found.append(overdue)
    found += _answered(cases.open_case(_case(cases.RECTIFICATION, corrected_fields=["email"]), DATA_MAP, NOW).case)[1]
    restricted, notified = _answered(
        cases.open_case(_case(cases.RESTRICTION, circumstance="legal_claims"), DATA_MAP, NOW).case
    )
    lifting = cases.lift_restriction(restricted, DATA_MAP)  # the subject is told with the decision
    found += notified + [e for e in lifting.effects if isinstance(e, cases.Notify)]
    found += _answered(lifting.case)[1]
    objection = cases.open_case(_case(cases.OBJECTION, processing="marketing"), DATA_MAP, NOW)
    found += [e for e in objection.effects if isinstance(e, cases.Notify) and e.template == "request_completed"]
    return found


def test_every_template_the_dsar_service_uses_is_covered() -> None:
    assert {n.template for n in _every_notification()} == {
        "request_received",
        "verification_code",
        "deadline_extended",
        "request_rejected",
        "erasure_completed",
        "export_ready",
        "request_completed",
        "request_overdue",
    }


def test_request_completed_comes_for_rectification_restriction_its_lifting_and_objection() -> None:
    completed = [n for n in _every_notification() if n.template == "request_completed"]
    assert sorted((str(n.params["right"]), n.suffix) for n in completed) == [
        ("objection", "completed"),
        ("rectification", "completed"),
        ("restriction", "completed"),
        ("restriction", "restriction_lifted"),
    ]


@pytest.mark.parametrize("locale", ["sv", "en"])
def test_dsar_notifications_render_with_the_notifier_templates(locale: str) -> None:
    for notify in _every_notification():
        email = templates.render(notify.template, locale, dict(notify.params), CONTEXT)
        assert email.subject and email.text and email.html, notify.template
        if notify.template == "request_rejected":
            assert "www.imy.se" in email.text
            if notify.suffix == "closed_unverified":  # said in the subject's language, not the status's
                assert ("inom 14 dagar" if locale == "sv" else "within 14 days") in email.text
            else:
                assert str(notify.params["reason"]) in email.text
        if notify.template == "erasure_completed":
            assert "Bokföringslagen 7:2" in email.text
        if notify.template == "request_completed":
            assert notify.params["request_id"] in email.subject
            informed = notify.params["informed"]
            assert ("Kundkonton" if locale == "sv" else "Customer accounts") in email.text or "accounts" not in informed
        if notify.template == "verification_code":
            assert "012345" in email.text
        if notify.template == "export_ready":
            assert "http://127.0.0.1:6067/v1/exports/tok" in email.text
