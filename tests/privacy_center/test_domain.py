"""The privacy center's pure parts: forms to events, ids that make a second submit a no-op, and what
the services' answers mean on the page."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from privacy_runtime.pages.rendering import kit_catalogue
from schemas.events import ConsentChanged, DsarRequested, ErasureRequested
from services.privacy_center import domain
from services.privacy_center.texts import MESSAGES


def fields(**values: str) -> Any:
    return values.get


SUB = uuid.UUID("00000000-0000-4000-8000-000000000001")


def test_addresses_are_normalised_or_refused() -> None:
    assert domain.normalise_email("  Anna.Svensson@Example.SE ") == "anna.svensson@example.se"
    for bad in (None, "", "anna", "anna@", "@example.se", "a b@example.se", "a@b@c.se", "x" * 250 + "@e.se"):
        assert domain.normalise_email(bad) is None, bad


def test_ids_are_derived_from_the_form_so_a_second_submit_is_the_same_event() -> None:
    again = domain.right_request(fields(right="access", format="csv"), SUB)
    first = domain.right_request(fields(right="access", format="csv"), SUB)
    assert first.request_id == again.request_id and first.event.event_id == again.event.event_id
    other = domain.right_request(fields(right="access", format="csv"), uuid.uuid4())
    assert other.request_id != first.request_id
    with pytest.raises(domain.FormProblem):
        domain.submission_id("not-a-uuid")


def test_each_right_becomes_its_contract_event() -> None:
    access = domain.right_request(fields(right="access", format="csv"), SUB).event.data
    assert isinstance(access, DsarRequested) and access.details.format == "csv"
    assert access.identity_verified is True and access.requested_via == "web_form"
    erasure = domain.right_request(fields(right="erasure", ground="consent_withdrawn"), SUB)
    assert isinstance(erasure.event.data, ErasureRequested) and erasure.event.topic == "erasure-requested"
    fix = domain.right_request(fields(right="rectification", name="Anna B", phone="", explanation="Married"), SUB)
    assert isinstance(fix.event.data, DsarRequested) and fix.event.data.details.corrections == {"name": "Anna B"}
    assert fix.note == "Married"
    restrict = domain.right_request(fields(right="restriction", circumstance="legal_claims"), SUB).event.data
    assert isinstance(restrict, DsarRequested) and restrict.details.circumstance == "legal_claims"
    objection = domain.right_request(fields(right="objection", processing="profiling", explanation="no"), SUB)
    assert isinstance(objection.event.data, DsarRequested) and objection.event.data.details.processing == "profiling"


@pytest.mark.parametrize("form, problem", [
    ({"right": "delete_everything"}, "form.missing.right"),
    ({"right": "access", "format": "xml"}, "form.missing.format"),
    ({"right": "erasure", "ground": "retention_expired"}, "form.missing.ground"),  # not the person's to choose
    ({"right": "restriction"}, "form.missing.circumstance"),
    ({"right": "objection", "processing": "<script>"}, "form.missing.processing"),
    ({"right": "rectification", "explanation": "why"}, "form.missing.corrections"),
    ({"right": "rectification", "name": "A"}, "form.missing.explanation"),
    ({"right": "rectification", "name": "A" * 201, "explanation": "x"}, "form.too_long"),
    ({"right": "objection", "processing": "marketing", "explanation": "x" * 2001}, "form.too_long"),
])
def test_bad_forms_are_refused_with_a_reason(form: dict[str, str], problem: str) -> None:
    with pytest.raises(domain.FormProblem) as caught:
        domain.right_request(form.get, SUB)
    assert caught.value.key == problem
    assert kit_catalogue(MESSAGES).has(problem)


def test_consent_changes_only_for_what_changes() -> None:
    switchable = {"marketing_email", "analytics"}
    current = {"marketing_email": True, "analytics": False}
    form = {"marketing_email": "off", "analytics": "off", "csrf_token": "t", "submission": str(SUB)}
    changes = domain.consent_changes(form.get, set(form), current, switchable, SUB, "2021-10-30")
    assert [(c.data.purpose, c.data.granted) for c in changes if isinstance(c.data, ConsentChanged)] == \
        [("marketing_email", False)]
    assert changes[0].data.channel == "preference_center"  # type: ignore[union-attr]
    for bad in ({"bookkeeping": "off"}, {"marketing_email": "maybe"}, {"<b>": "on"}):
        with pytest.raises(domain.FormProblem):
            domain.consent_changes(bad.get, set(bad), current, switchable, SUB, "2021-10-30")


def test_purposes_and_requests_from_the_services_answers() -> None:
    consents = {"restricted": False, "objections": [], "under_18_at_registration": False, "purposes": [
        {"purpose": "marketing_email", "allowed": True, "basis": "consent",
         "consent": {"granted": True, "effective_at": "2026-01-02T03:04:05+00:00"}},
        {"purpose": "bookkeeping", "allowed": True, "basis": "legal_obligation", "consent": None},
    ]}
    views = domain.purpose_views(consents)
    assert [(v.purpose, v.switchable) for v in views] == [("bookkeeping", False), ("marketing_email", True)]
    assert domain.current_choices(views) == {"marketing_email": True}
    minor = domain.purpose_views({**consents, "under_18_at_registration": True})
    assert not any(v.switchable for v in minor)
    requests = domain.request_views({"requests": [{
        "request_id": str(SUB), "right": "access", "status": "completed", "received_at": "2026-01-01T00:00:00+00:00",
        "due_at": "2026-02-01T00:00:00+00:00", "extended": False, "overdue": False,
        "timeline": [{"at": "2026-01-02T00:00:00+00:00", "event": "completed"}]}]})
    assert [e for _, e in requests[0].timeline] == ["received", "completed"] and not requests[0].open


def test_only_a_completed_erasure_means_the_person_is_erased() -> None:
    def answer(*requests: tuple[str, str]) -> dict[str, Any]:
        return {"requests": [{"right": right, "status": status} for right, status in requests]}

    assert domain.erasure_completed(answer(("objection", "completed"), ("erasure", "completed")))
    for open_or_ended in ("received", "identity_pending", "in_progress", "awaiting_systems", "rejected",
                          "cancelled", "closed_unverified"):
        assert not domain.erasure_completed(answer(("erasure", open_or_ended))), open_or_ended
    assert not domain.erasure_completed(answer(("access", "completed")))
    assert not domain.erasure_completed({}) and not domain.erasure_completed({"requests": ["junk"]})


def test_every_message_has_both_languages_and_every_page_key_exists() -> None:
    catalogue = kit_catalogue(MESSAGES)
    for purpose in domain.PURPOSES:
        assert catalogue.has(f"purpose.{purpose}") and catalogue.has(f"why.{purpose}")
    for name in (*(f"right.{r}" for r in domain.RIGHTS), *(f"ground.{g}" for g in domain.GROUNDS),
                 *(f"circumstance.{c}" for c in domain.CIRCUMSTANCES),
                 *(f"processing.{p}" for p in domain.PROCESSINGS), *(f"field.{f}" for f in domain.RECTIFIABLE)):
        assert catalogue.has(name), name
