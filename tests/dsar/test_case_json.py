"""A case survives its trip through `cases.state` (JSON) unchanged, times and steps included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from services.dsar.cases import Case, Step
from services.dsar.store import case_from_json, case_to_json


def a_case(**changes: object) -> Case:
    received = datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)
    fields: dict[str, object] = dict(
        request_id="0b8f9c3e-6a55-4f3e-9f51-0d6f3c2b9a10", subject="usr_1", right="erasure", status="awaiting_systems",
        received_at=received, due_at=received + timedelta(days=30), identity_verified=True, requested_via="email",
        ground="consent_withdrawn", corrected_fields=("email", "name"), extension_months=1,
        extension_reason="many systems", steps=(
            Step("accounts", "erase", command_id="c1", outcome="done"),
            Step("billing", "erase", expect="retained", basis="Bokföringslagen 7:2", command_id="c2",
                 outcome="retained", retained_basis="Bokföringslagen 7:2 (7 years)"),
            Step("marketing_email", "suppress", purpose="marketing_email", phase=2, attempt=3),
        ),
        phase=2, completion_notified=True, closed_at=received + timedelta(days=2, microseconds=1),
        identity_requested_at=received + timedelta(minutes=1),
    )
    fields.update(changes)
    return Case(**fields)  # type: ignore[arg-type]


def test_a_case_round_trips_through_its_json() -> None:
    case = a_case()
    assert case_from_json(case_to_json(case)) == case
    assert case_from_json(json.loads(case_to_json(case))) == case  # as asyncpg may hand jsonb back


def test_times_are_stored_as_rfc3339_with_their_offset() -> None:
    stored = json.loads(case_to_json(a_case(closed_at=None)))
    assert stored["received_at"] == "2026-03-31T23:59:59.999999+00:00"
    assert stored["closed_at"] is None
    assert case_from_json(case_to_json(a_case())).due_at.tzinfo is not None


def test_steps_and_names_of_corrected_fields_are_kept_in_order() -> None:
    stored = json.loads(case_to_json(a_case()))
    assert [s["system"] for s in stored["steps"]] == ["accounts", "billing", "marketing_email"]
    assert stored["corrected_fields"] == ["email", "name"]
