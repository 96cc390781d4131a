"""The office's pure parts: operator tokens, intake forms, dead-letter descriptions, SVG charts."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import pytest

from schemas.events import DsarRequested, ErasureRequested
from schemas.topics import CONSENT_CHANGED, DSAR_REQUESTED, ERASURE_REQUESTED
from services.office import charts, deadletters, intake, operators

ANNA = operators.token_digest("anna-secret-token")


def test_operators_parse_and_authenticate() -> None:
    table = operators.parse_operators(f"anna:{ANNA}, bo:{'0' * 64}\n")
    assert table == {"anna": ANNA, "bo": "0" * 64}
    assert operators.authenticate("anna-secret-token", table, "adm") == "anna"
    assert operators.authenticate(" anna-secret-token ", table, "adm") == "anna"
    assert operators.authenticate("adm", table, "adm") == "admin"
    assert operators.authenticate("wrong", table, "adm") is None
    assert operators.authenticate("", table, "") is None
    assert operators.authenticate("anything", {}, "") is None


@pytest.mark.parametrize("text", ["anna", f"anna:{ANNA[:-1]}", f"admin:{ANNA}", f"a b:{ANNA}",
                                  f"anna:{ANNA},anna:{ANNA}"])
def test_operators_refuse_bad_entries(text: str) -> None:
    with pytest.raises(operators.BadOperators):
        operators.parse_operators(text)


def test_intake_erasure_by_email_is_unverified() -> None:
    parsed = intake.parse_request({"right": "erasure", "requested_via": "email", "ground": "consent_withdrawn"})
    rid = uuid.uuid4()
    topic, event = intake.request_event(parsed, rid)
    assert topic == ERASURE_REQUESTED
    assert isinstance(event, ErasureRequested)
    assert event.identity_verified is False and str(event.requested_via) == "email"
    assert event.request_id == rid


def test_intake_rights_carry_their_details() -> None:
    objection = intake.parse_request({"right": "objection", "requested_via": "support",
                                      "processing": "legitimate_interest"})
    topic, event = intake.request_event(objection, uuid.uuid4())
    assert topic == DSAR_REQUESTED and isinstance(event, DsarRequested)
    assert str(event.details.processing) == "legitimate_interest"
    rect = intake.parse_request({"right": "rectification", "requested_via": "email",
                                 "corrections": "Name: Anna Svensson\n\nphone: +46 70 000 00 00"})
    assert rect.corrections == {"name": "Anna Svensson", "phone": "+46 70 000 00 00"}


@pytest.mark.parametrize("form", [
    {"right": "erasure", "requested_via": "email"},
    {"right": "erasure", "requested_via": "email", "ground": "retention_expired"},
    {"right": "access", "requested_via": "web_form"},
    {"right": "fly", "requested_via": "email"},
    {"right": "rectification", "requested_via": "email", "corrections": "no colon"},
    {"right": "restriction", "requested_via": "email", "circumstance": "bored"},
])
def test_intake_refuses_incomplete_requests(form: dict[str, str]) -> None:
    with pytest.raises(intake.IntakeError):
        intake.request_event(intake.parse_request(form), uuid.uuid4())


def test_opt_out_is_support_channel_withdrawal() -> None:
    events = intake.opt_out_events(["marketing_email", "marketing_email"])
    assert len(events) == 1
    topic, event = events[0]
    assert topic == CONSENT_CHANGED
    dumped = event.model_dump(mode="json")
    assert dumped["granted"] is False and dumped["channel"] == "support" and dumped["purpose"] == "marketing_email"
    with pytest.raises(intake.IntakeError):
        intake.opt_out_events(["service_delivery"])
    with pytest.raises(intake.IntakeError):
        intake.opt_out_events([])


def test_dead_letter_shows_no_payload_and_replays_original_headers() -> None:
    headers = [("traceparent", b"00-abc"), ("x-error", b"data.email: not an email"),
               ("x-original-topic", b"user-registered"), ("x-original-partition", b"2"),
               ("x-original-offset", b"41"), ("x-dead-lettered-by", b"consent")]
    letter = deadletters.describe("user-registered.dlq", 0, 7, 1_700_000_000_000, b"u-1", headers)
    assert letter.error == "data.email: not an email"
    assert (letter.original_topic, letter.original_offset, letter.dead_lettered_by) == ("user-registered", "41",
                                                                                         "consent")
    assert letter.key == "u-1"
    assert not hasattr(letter, "value")
    replayed = deadletters.replay_headers(headers, "user-registered.dlq", 0, 7)
    assert replayed == [("traceparent", b"00-abc"), ("x-replayed-from", b"user-registered.dlq:0:7")]


def test_charts_are_valid_svg_with_text_alternatives() -> None:
    svg = charts.grouped_bars("Cases per week", ["W1", "W2"], [("received", [3, 7]), ("completed", [1, 0])])
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg" and root.get("role") == "img"
    assert root.find(f"{ns}title").text == "Cases per week"  # type: ignore[union-attr]
    assert "W2: received 7, completed 0" in root.find(f"{ns}desc").text  # type: ignore[union-attr]
    bars = root.findall(f"{ns}rect")
    heights = [float(b.get("height", "0")) for b in bars[:4]]
    assert heights[2] > heights[0] > heights[1]  # 7 > 3 > 1, zero draws nothing
    assert heights[3] == 0
    other = charts.histogram("Days to complete", [0, 2, 5])
    ids = {e.get("id") for e in ET.fromstring(other).iter() if e.get("id")}
    assert ids.isdisjoint({e.get("id") for e in root.iter() if e.get("id")})  # two charts on one page
    assert ET.fromstring(charts.histogram("Empty", [])).get("role") == "img"
    with pytest.raises(ValueError):
        charts.grouped_bars("x", ["a"], [("s", [1, 2])])


def test_chart_scale_is_round() -> None:
    assert charts._scale([7]) == 10
    assert charts._scale([0]) == 1
    assert charts._scale([120]) == 200
    assert charts._scale([5]) == 5


def test_rejection_reason_joins_ground_and_words() -> None:
    from services.office import present

    assert present.rejection_reason("unfounded", "Fifth request this week.") == \
        "The request is manifestly unfounded or excessive (GDPR Art. 12(5)). Fifth request this week."
    assert present.rejection_reason("", "  Only words. ") == "Only words."
    assert present.rejection_reason("unfounded", "").startswith("The request is manifestly")
    assert present.rejection_reason("", " ") is None
    assert present.rejection_reason("made-up", "text") is None


def test_case_actions_follow_the_case() -> None:
    from datetime import UTC, datetime, timedelta

    from services.office import present

    now = datetime.now(UTC)
    base = {"right": "objection", "status": "in_progress", "manual_review": True, "extended": False,
            "original_due_at": (now + timedelta(days=20)).isoformat(), "steps": []}
    assert present.case_actions(base, now) == {"approve", "reject", "extend"}
    late = {**base, "original_due_at": (now - timedelta(days=1)).isoformat()}
    assert "extend" not in present.case_actions(late, now)  # only inside the first month
    waiting = {**base, "manual_review": False, "status": "awaiting_systems",
               "steps": [{"system": "billing", "command_id": "c", "outcome": None},
                         {"system": "accounts", "command_id": "d", "outcome": "done"}]}
    assert present.case_actions(waiting, now) == {"extend", "resend"}
    assert present.waiting_systems(waiting) == ["billing"]
    restriction = {**base, "right": "restriction", "status": "completed", "manual_review": False}
    assert present.case_actions(restriction, now) == {"lift"}


def test_filters_and_paging() -> None:
    from services.office import present

    f = present.Filters.from_query({"status": "rejected", "right": "nope", "overdue": "on", "page": "3", "q": " u-1 "})
    assert (f.status, f.right, f.overdue, f.q, f.page) == ("rejected", "", "true", "u-1", 3)
    assert f.service_query()["offset"] == 2 * present.PAGE_SIZE
    assert f.link(page=1) == "/cases?status=rejected&overdue=true&q=u-1"
    assert present.Filters.from_query({"page": "x"}).page == 1
    assert present.pages(0, 1) == (1, False, False)
    assert present.pages(101, 2) == (3, True, True)


def test_debt_is_summed_over_services() -> None:
    from datetime import UTC, datetime, timedelta

    from services.office import present

    now = datetime.now(UTC)
    old = (now - timedelta(days=3)).isoformat()
    newer = (now - timedelta(hours=2)).isoformat()
    merged = present.merge_debt([
        {"service": "dsar", "systems": [{"system": "billing", "outstanding": 2, "overdue": 1, "oldest": newer}]},
        {"service": "consent", "systems": [{"system": "billing", "outstanding": 1, "overdue": 0, "oldest": old}]},
    ], now)
    assert merged["billing"]["outstanding"] == 3 and merged["billing"]["overdue"] == 1
    assert merged["billing"]["oldest_age"] == "3 d"


def test_timeline_names_the_operator() -> None:
    from services.office import present

    entries = present.timeline([
        {"at": "2026-12-01T10:00:00+00:00", "action": "operator_reject", "actor": "operator:anna",
         "detail": {"status": "in_progress"}},
        {"at": "2026-12-01T10:00:01+00:00", "action": "case_rejected", "actor": "service:dsar",
         "detail": {"reason": "Art. 21(1)", "from": "in_progress", "to": "rejected", "id": "secret"}},
    ])
    assert (entries[0].what, entries[0].actor, entries[0].by_operator) == ("Operator rejected", "anna", True)
    assert entries[1].actor == "dsar service" and "reason: Art. 21(1)" in entries[1].detail
    assert "secret" not in entries[1].detail


def test_a_review_reason_is_said_in_the_operators_language_with_ids_in_words() -> None:
    from services.office import present

    def case(code: str | None, **params: str) -> dict[str, object]:
        return {"review_reason": "the service's English sentence", "review_code": code, "review_params": params}

    unusable = case("answer_unusable", system="billing", action="export", problem="too large")
    assert present.review_text(unusable, "sv") == (
        "svaret från Fakturering och bokföring på kommandot ”exportera” går inte att använda: too large; "
        "godkänn för att fråga igen eller hantera för hand")
    assert present.review_text(unusable, "en") == (
        "Billing and bookkeeping's answer to “export” cannot be used: too large; approve to ask again or "
        "handle by hand")
    fields = case("fields_not_held", fields="phone, shoe_size")
    assert present.review_text(fields, "sv") == "inget system i datakartan har fälten telefonnummer, shoe size"
    assert present.review_text(case("fields_not_held", fields=""), "sv") == "inget system i datakartan har fälten –"
    assert (present.review_text(case("retention_expired"), "sv") or "").startswith("lagringstiden har gått ut")
    # The service's sentence: an unknown code, no code (a case flagged before codes), a parameter missing.
    for fallback in (case("made_up"), case(None), case("fields_not_held"), case("system_failed", system="billing")):
        assert present.review_text(fallback, "sv") == "the service's English sentence", fallback
    assert present.review_text({"review_reason": None}, "sv") is None


def test_the_timeline_says_why_a_case_went_to_an_operator_in_the_operators_language() -> None:
    from services.office import present

    sentence = "billing could not erase; retry or handle by hand"
    entries = present.timeline([
        {"at": "2026-12-01T10:00:00+00:00", "action": "case_manual_review", "actor": "service:dsar",
         "detail": {"reason": sentence, "review_code": "system_failed",
                    "review_params": {"system": "billing", "action": "erase"}}},
        {"at": "2026-12-01T10:00:01+00:00", "action": "case_manual_review", "actor": "service:dsar",
         "detail": {"reason": sentence}},  # recorded before reasons had codes
    ], "sv")
    assert entries[0].detail == ("skäl: Fakturering och bokföring kunde inte utföra kommandot ”radera”; försök igen "
                                 "eller hantera för hand")
    assert entries[1].detail == f"skäl: {sentence}"
