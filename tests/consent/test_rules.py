"""Consent rules: jurisdiction, legal bases, decisions, event-time ordering, propagation."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.enums import ObjectionProcessing, Right
from services.consent import rules
from services.consent.rules import ConsentRecord, SubjectProfile
from tests.consent.oracle import state_the_policy_describes

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROUTING = {"marketing_email": ["marketing_email"], "partner_sharing": ["partners"],
           "group_sharing": ["ipcom_group"], "third_party_marketing": ["partners"]}


def record(purpose: str, granted: bool, minutes: int = 0, event_id: str = "e", channel: str = "api") -> ConsentRecord:
    return ConsentRecord(event_id, purpose, granted, T0 + timedelta(minutes=minutes), channel, "v1")


def test_unknown_country_is_treated_as_strict() -> None:
    assert rules.is_strict_jurisdiction(None)
    assert rules.is_strict_jurisdiction("SE") and rules.is_strict_jurisdiction("GB")
    assert rules.is_strict_jurisdiction("CH") and rules.is_strict_jurisdiction("NO")
    assert not rules.is_strict_jurisdiction("US")


def test_eu_territory_with_its_own_country_code_is_strict() -> None:
    """Réunion, Guadeloupe, Martinique, French Guiana, Mayotte, Saint-Martin and Åland are the EU."""
    for code in ("RE", "GP", "MQ", "GF", "YT", "MF", "AX"):
        assert rules.is_strict_jurisdiction(code), code
        assert not rules.decide("marketing_email", SubjectProfile("s1", code), None).allowed, code
    assert not rules.is_strict_jurisdiction("PF"), "French Polynesia is outside the EU"


def test_opt_in_purposes() -> None:
    for purpose in ("analytics", "profiling", "third_party_marketing"):
        assert rules.requires_opt_in(purpose, "US"), purpose
    for purpose in ("marketing_email", "partner_sharing", "group_sharing"):
        assert rules.requires_opt_in(purpose, "SE") and not rules.requires_opt_in(purpose, "US")
        assert rules.requires_opt_in(purpose, None)
    assert not rules.requires_opt_in("service_delivery", None)


def test_legal_bases() -> None:
    assert rules.legal_basis("payments", "SE") == rules.CONTRACT
    assert rules.legal_basis("bookkeeping", "SE") == rules.LEGAL_OBLIGATION
    assert rules.legal_basis("security", "SE") == rules.LEGITIMATE_INTEREST
    assert rules.legal_basis("partner_sharing", "SE") == rules.CONSENT
    assert rules.legal_basis("partner_sharing", "US") == rules.LEGITIMATE_INTEREST


def test_sweden_without_consent_is_denied_partner_sharing_us_is_allowed_until_withdrawn() -> None:
    se = rules.decide("partner_sharing", SubjectProfile("s", "SE"), None)
    assert not se.allowed and se.basis == rules.CONSENT and "opt-in" in se.reason
    us = rules.decide("partner_sharing", SubjectProfile("s", "US"), None)
    assert us.allowed
    assert not rules.decide("partner_sharing", SubjectProfile("s", "US"), record("partner_sharing", False)).allowed
    assert not rules.decide("partner_sharing", SubjectProfile("s", None), None).allowed


def test_consent_allows_and_withdrawal_denies() -> None:
    profile = SubjectProfile("s", "SE")
    assert rules.decide("marketing_email", profile, record("marketing_email", True)).allowed
    denied = rules.decide("marketing_email", profile, record("marketing_email", False, channel="email_footer"))
    assert not denied.allowed and "email_footer" in denied.reason


def test_restriction_denies_every_purpose() -> None:
    profile = SubjectProfile("s", "US", restricted=True)
    for purpose in rules.PURPOSES:
        decision = rules.decide(purpose, profile, record(purpose, True))
        assert not decision.allowed and "Art. 18" in decision.reason


def test_objection_to_marketing_is_absolute_even_with_consent() -> None:
    profile = SubjectProfile("s", "US", objections=frozenset({"marketing"}))
    assert not rules.decide("marketing_email", profile, record("marketing_email", True)).allowed
    assert not rules.decide("profiling", profile, record("profiling", True)).allowed
    assert rules.decide("service_delivery", profile, None).allowed
    profiling_only = SubjectProfile("s", "US", objections=frozenset({"profiling"}))
    assert not rules.decide("profiling", profiling_only, record("profiling", True)).allowed
    assert rules.decide("marketing_email", profiling_only, None).allowed


def test_minors_get_no_consent_based_processing() -> None:
    assert rules.is_minor(date(2010, 6, 1), date(2026, 5, 31))
    assert not rules.is_minor(date(2008, 5, 31), date(2026, 5, 31))
    assert not rules.is_minor(None, date(2026, 1, 1))
    child = SubjectProfile("s", "US", minor=True)
    for purpose in ("marketing_email", "third_party_marketing", "partner_sharing", "group_sharing", "profiling"):
        assert not rules.decide(purpose, child, record(purpose, True)).allowed
    assert rules.decide("service_delivery", child, None).allowed


def test_system_may_use_only_its_purposes() -> None:
    decision = rules.decide("marketing_email", SubjectProfile("s", "US"), None, system="billing",
                            system_purposes=("payments", "bookkeeping"))
    assert not decision.allowed and "billing" in decision.reason
    assert rules.decide("payments", SubjectProfile("s", "US"), None, system="billing",
                        system_purposes=("payments", "bookkeeping")).allowed


def test_gpc_withdraws_all_sharing_and_the_purpose_it_names() -> None:
    assert rules.expand_change("analytics", False, "gpc") == [
        ("analytics", False), ("partner_sharing", False), ("third_party_marketing", False), ("group_sharing", False)]
    assert rules.expand_change("group_sharing", False, "gpc") == [
        ("group_sharing", False), ("partner_sharing", False), ("third_party_marketing", False)]
    assert rules.expand_change("analytics", True, "api") == [("analytics", True)]


def test_a_later_event_wins_and_a_late_older_one_does_not() -> None:
    newer, older = record("analytics", False, 10, "b"), record("analytics", True, 5, "a")
    assert rules.current_state([newer, older])["analytics"] is newer
    assert not rules.supersedes(older, newer)


def test_ties_break_towards_withdrawal_then_event_id() -> None:
    grant, withdraw = record("analytics", True, 0, "z"), record("analytics", False, 0, "a")
    assert rules.current_state([withdraw, grant])["analytics"] is withdraw
    first, second = record("analytics", True, 0, "a"), record("analytics", True, 0, "b")
    assert rules.current_state([second, first])["analytics"] is second


def test_propagation_withdrawal_grant_and_registration() -> None:
    withdraw = record("marketing_email", False, 5, channel="email_footer")
    assert rules.propagation(record("marketing_email", True), withdraw, ROUTING) == [
        rules.Command("marketing_email", "suppress", "marketing_email")]
    assert rules.propagation(None, withdraw, ROUTING) == [rules.Command("marketing_email", "suppress", "marketing_email")]
    assert rules.propagation(withdraw, record("marketing_email", False, 9), ROUTING) == []
    assert rules.propagation(withdraw, record("marketing_email", True, 9), ROUTING) == [
        rules.Command("marketing_email", "unsuppress", "marketing_email")]
    assert rules.propagation(None, record("partner_sharing", False, channel="gpc"), ROUTING) == [
        rules.Command("partners", "revoke_sharing", "partner_sharing")]
    assert rules.propagation(None, record("marketing_email", False, channel="registration"), ROUTING) == []
    assert rules.propagation(None, record("marketing_email", True), ROUTING) == []


def test_a_regrant_is_not_passed_on_while_the_profile_denies_the_purpose() -> None:
    withdrawn, regranted = record("marketing_email", False, 5), record("marketing_email", True, 9)
    unsuppress = [rules.Command("marketing_email", "unsuppress", "marketing_email")]
    assert rules.propagation(withdrawn, regranted, ROUTING, SubjectProfile("s1", "SE")) == unsuppress
    for denying in (SubjectProfile("s1", "SE", restricted=True),
                    SubjectProfile("s1", "SE", objections=frozenset({"marketing"})),
                    SubjectProfile("s1", "US", minor=True)):
        assert rules.propagation(withdrawn, regranted, ROUTING, denying) == []
        # a withdrawal is always passed on
        assert rules.propagation(regranted, record("marketing_email", False, 12), ROUTING, denying) == [
            rules.Command("marketing_email", "suppress", "marketing_email")]
    sharing = [rules.Command("partners", "restore_sharing", "partner_sharing")]
    assert rules.propagation(record("partner_sharing", False), record("partner_sharing", True, 3), ROUTING,
                             SubjectProfile("s1", "SE", objections=frozenset({"marketing"}))) == sharing


def test_receipt_names_controller_jurisdiction_and_method() -> None:
    receipt = rules.consent_receipt(subject="s1", record=record("analytics", True, channel="cookie_banner"),
                                    country="SE", policy_url="https://x", contact_email="privacy@isopartner.se")
    assert receipt["jurisdiction"] == "SE" and receipt["collectionMethod"] == "cookie_banner"
    assert receipt["piiControllers"][0]["piiController"] == "ISOPARTNER AB"  # type: ignore[index]
    assert receipt["policyVersion"] == "v1"


events = st.lists(
    st.tuples(
        st.sampled_from(["analytics", "marketing_email", "partner_sharing"]),
        st.booleans(),
        st.integers(min_value=0, max_value=20),  # few distinct times, so ties happen
        st.uuids().map(str),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(events, st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_event_time_order_state(raw: list, rnd: random.Random) -> None:  # type: ignore[type-arg]
    records = [record(p, g, m, eid) for p, g, m, eid in raw]
    shuffled = records[:]
    rnd.shuffle(shuffled)
    assert rules.current_state(shuffled) == state_the_policy_describes(records)



def _objector(country: str | None) -> SubjectProfile:
    return SubjectProfile("u1", country, objections=frozenset({rules.UPHELD_LEGITIMATE_INTEREST_OBJECTION}))


def test_an_upheld_objection_denies_what_rests_on_legitimate_interest_and_nothing_else() -> None:
    us, se = _objector("US"), _objector("SE")
    for purpose in ("personalization", "security", "service_improvement"):
        assert not rules.decide(purpose, us, None).allowed
    assert not rules.decide("marketing_email", us, None).allowed, "legitimate interest in the US"
    granted = ConsentRecord("e1", "marketing_email", True, datetime(2026, 1, 1, tzinfo=UTC), "api", None)
    assert rules.decide("marketing_email", us, granted).allowed, "a consent is not an interest: it still counts"
    assert rules.decide("service_delivery", se, None).allowed and rules.decide("bookkeeping", us, None).allowed
    assert "opt-in" in rules.decide("marketing_email", se, None).reason, "in Sweden it was never allowed anyway"


def test_what_rests_on_legitimate_interest_depends_on_the_country_and_the_consents() -> None:
    assert rules.resting_on_legitimate_interest("US", {}) == ["group_sharing", "marketing_email", "partner_sharing"]
    granted = ConsentRecord("e1", "group_sharing", True, datetime(2026, 1, 1, tzinfo=UTC), "api", None)
    assert rules.resting_on_legitimate_interest("US", {"group_sharing": granted}) == [
        "marketing_email", "partner_sharing"]
    assert rules.resting_on_legitimate_interest("SE", {}) == []
    assert rules.resting_on_legitimate_interest(None, {}) == [], "unknown country is strict"


def test_only_purposes_resting_on_consent_are_passed_on() -> None:
    """Withdrawing what rests on contract, law or legitimate interest changes no decision: no system is told."""
    routing = {**ROUTING, "bookkeeping": ["billing"], "service_delivery": ["accounts"], "security": ["logs"]}
    for purpose in ("bookkeeping", "service_delivery", "security"):
        assert rules.propagation(record(purpose, True), record(purpose, False, 5), routing) == [], purpose
        assert rules.decide(purpose, SubjectProfile("s1", "SE"), record(purpose, False, 5)).allowed, purpose


def test_a_sign_up_answer_is_passed_on_only_where_it_denies_the_jurisdictions_default() -> None:
    refused = record("marketing_email", False, channel="registration")
    suppress = [rules.Command("marketing_email", "suppress", "marketing_email")]
    assert rules.propagation(None, refused, ROUTING, SubjectProfile("s1", "US")) == suppress, "allowed there by default"
    assert rules.propagation(None, refused, ROUTING, SubjectProfile("s1", "SE")) == [], "denied there by default"
    assert rules.propagation(None, refused, ROUTING, None) == [], "no country, nothing to compare"
    granted = record("partner_sharing", True, channel="registration")
    assert rules.propagation(None, granted, ROUTING, SubjectProfile("s1", "US")) == []
    assert rules.propagation(None, granted, ROUTING, SubjectProfile("s1", "US", minor=True)) == [
        rules.Command("partners", "revoke_sharing", "partner_sharing")], "a minor's yes is not a yes"
    analytics = record("analytics", False, channel="registration")  # opt-in everywhere: the default already
    assert rules.propagation(None, analytics, {"analytics": ["analytics"]}, SubjectProfile("s1", "US")) == []


def test_a_corrected_country_tells_systems_what_the_move_changes() -> None:
    us, se = SubjectProfile("s1", "US"), SubjectProfile("s1", "SE")
    nothing_given: dict[str, ConsentRecord] = {}
    assert rules.jurisdiction_change(us, se, nothing_given, ROUTING) == [
        rules.Command("ipcom_group", "revoke_sharing", "group_sharing"),
        rules.Command("marketing_email", "suppress", "marketing_email"),
        rules.Command("partners", "revoke_sharing", "partner_sharing"),
    ]
    assert rules.jurisdiction_change(se, us, nothing_given, ROUTING) == [
        rules.Command("ipcom_group", "restore_sharing", "group_sharing"),
        rules.Command("marketing_email", "unsuppress", "marketing_email"),
        rules.Command("partners", "restore_sharing", "partner_sharing"),
    ]
    consented = {p: record(p, True) for p in ("marketing_email", "partner_sharing")}
    assert rules.jurisdiction_change(us, se, consented, ROUTING) == [
        rules.Command("ipcom_group", "revoke_sharing", "group_sharing")], "what was consented to stays"
    assert rules.jurisdiction_change(us, SubjectProfile("s1", "CA"), nothing_given, ROUTING) == []
    assert rules.jurisdiction_change(us, SubjectProfile("s1", None), nothing_given, ROUTING)[1].action == "suppress"


def test_a_withdrawal_made_now_follows_a_grant_stamped_ahead_of_the_clock() -> None:
    now = T0 + timedelta(hours=1)
    ahead = record("marketing_email", True, minutes=60 + 90)  # a producer's clock 90 minutes fast
    at = rules.withdrawal_time(now, ahead)
    assert at > ahead.effective_at and rules.supersedes(
        ConsentRecord("click", "marketing_email", False, at, "email_footer"), ahead)
    assert rules.withdrawal_time(now, record("marketing_email", True, minutes=5)) == now
    assert rules.withdrawal_time(now, record("marketing_email", False, minutes=200)) == now, "nothing to beat"
    assert rules.withdrawal_time(now, None) == now


def test_a_grant_stamped_hours_ahead_orders_at_its_arrival_and_loses_to_a_later_withdrawal() -> None:
    """The grant's clock runs 12 hours ahead; it arrived at T0 and orders there: a withdrawal made a
    minute later wins, and the grant keeps the time it stated on record."""
    grant = ConsentRecord("g", "marketing_email", True, T0 + timedelta(hours=12), "api", "v1", ordered_at=T0)
    withdrawal = ConsentRecord("w", "marketing_email", False, T0 + timedelta(minutes=1), "preference_center", "v1",
                               ordered_at=T0 + timedelta(minutes=1))
    assert rules.supersedes(withdrawal, grant)
    assert rules.current_state([withdrawal, grant])["marketing_email"] is withdrawal
    assert grant.effective_at == T0 + timedelta(hours=12), "the stated time stays on record"
    assert not rules.decide("marketing_email", SubjectProfile("s1", "SE"), withdrawal).allowed


def test_an_entry_without_ordering_time_orders_by_the_time_it_states() -> None:
    old = record("analytics", True, 10)
    assert old.order_time == old.effective_at
    assert rules.supersedes(record("analytics", False, 11, "w"), old)
    assert not rules.supersedes(record("analytics", False, 9, "w"), old)


def test_an_objection_to_marketing_or_profiling_withdraws_at_once_and_nothing_else_does() -> None:
    marketing = rules.objection_withdraws(Right.OBJECTION, ObjectionProcessing.MARKETING)
    assert marketing == ("marketing_email", "third_party_marketing", "profiling")
    assert rules.objection_withdraws(Right.OBJECTION, ObjectionProcessing.PROFILING) == ("profiling",)
    assert rules.objection_withdraws(Right.OBJECTION, ObjectionProcessing.LEGITIMATE_INTEREST) == (), "manual review"
    assert rules.objection_withdraws(Right.OBJECTION, None) == ()
    assert rules.objection_withdraws(Right.ACCESS, ObjectionProcessing.MARKETING) == ()
