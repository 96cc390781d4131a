"""The ledger's pure step, without a database: what changed, what is re-granted or signed up, what is sent."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.consent import rules, transition
from services.consent.rules import ConsentRecord, SubjectProfile
from services.consent.transition import Entry, SubjectCommand
from tests.consent.oracle import state_the_policy_describes

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROUTING = {"marketing_email": ["marketing_email"], "partner_sharing": ["partners", "ipcom_group"],
           "group_sharing": ["ipcom_group"], "third_party_marketing": ["partners"], "analytics": ["analytics"]}
SUBJECTS = ("s1", "s2")
PURPOSES = ("analytics", "marketing_email", "partner_sharing", "security")
CHANNELS = ("api", "email_footer", "registration", "gpc")


def entry(subject: str, purpose: str, granted: bool, minutes: int = 0, event_id: str = "e",
          channel: str = "api") -> Entry:
    return Entry(subject, ConsentRecord(f"{event_id}:{purpose}", purpose, granted, T0 + timedelta(minutes=minutes),
                                        channel, "v1"))


entries_st = st.lists(
    st.builds(entry, st.sampled_from(SUBJECTS), st.sampled_from(PURPOSES), st.booleans(),
              st.integers(min_value=0, max_value=10), st.uuids().map(str), st.sampled_from(CHANNELS)),
    max_size=20,
)
profiles_st = st.dictionaries(
    st.sampled_from(SUBJECTS),
    st.builds(SubjectProfile, st.sampled_from(SUBJECTS), st.sampled_from(["SE", "US", None]), st.booleans(),
              st.booleans(), st.frozensets(st.sampled_from(["marketing", "profiling", "legitimate_interest"]))),
)


def stored_from(entries: list[Entry]) -> dict[transition.Key, ConsentRecord]:
    """A stored state as an earlier run of the ledger leaves it."""
    state: dict[transition.Key, ConsentRecord] = {}
    for subject, record in entries:
        key = (subject, record.purpose)
        if rules.supersedes(record, state.get(key)):
            state[key] = record
    return state


@settings(max_examples=300, deadline=None)
@given(entries_st, entries_st)
def test_applying_the_same_entries_twice_changes_nothing(earlier: list[Entry], entries: list[Entry]) -> None:
    stored = stored_from(earlier)
    first = transition.advance(entries, stored)
    again = transition.advance(entries, {**stored, **first.state})
    assert again.changes == ()
    assert again.commands(ROUTING, {}) == []


@settings(max_examples=300, deadline=None)
@given(entries_st, entries_st, st.randoms(use_true_random=False))
def test_the_new_state_is_the_policys_state_whatever_the_arrival_order(
    earlier: list[Entry], entries: list[Entry], rnd: random.Random
) -> None:
    stored = stored_from(earlier)
    shuffled = entries[:]
    rnd.shuffle(shuffled)
    state = {**stored, **transition.advance(shuffled, stored).state}
    for subject in SUBJECTS:
        expected = state_the_policy_describes([r for s, r in earlier + entries if s == subject])
        assert {p: r for (s, p), r in state.items() if s == subject} == expected


@settings(max_examples=300, deadline=None)
@given(entries_st, entries_st)
def test_only_moved_purposes_are_in_the_step_each_once(earlier: list[Entry], entries: list[Entry]) -> None:
    stored = stored_from(earlier)
    step = transition.advance(entries, stored)
    moved = [(c.subject, c.record.purpose) for c in step.changes]
    assert len(moved) == len(set(moved))
    for change in step.changes:
        assert change.previous is stored.get((change.subject, change.record.purpose))
        assert change.record is not change.previous
        assert rules.supersedes(change.record, change.previous)
    assert step.saved == [c.record.event_id for c in step.changes]


@settings(max_examples=300, deadline=None)
@given(entries_st, entries_st, profiles_st)
def test_a_withdrawal_tells_every_system_of_its_purpose(
    earlier: list[Entry], entries: list[Entry], profiles: dict[str, SubjectProfile]
) -> None:
    """Whatever the profile says: a withdrawal that becomes current after a grant (or, outside sign-up,
    after nothing) reaches every system that uses the purpose."""
    stored = stored_from(earlier)
    step = transition.advance(entries, stored)
    commands = set(step.commands(ROUTING, profiles))
    for change in step.changes:
        record = change.record
        if (record.granted or record.purpose not in rules.CONSENT_PURPOSES
                or (change.previous is not None and not change.previous.granted)
                or (change.previous is None and record.channel == "registration")):
            continue
        for system in ROUTING[record.purpose]:
            action = rules.withdraw_action(record.purpose)
            assert action in ("suppress", "revoke_sharing")
            assert SubjectCommand(change.subject, system, action, record.purpose) in commands


@settings(max_examples=300, deadline=None)
@given(entries_st, entries_st, profiles_st)
def test_nothing_is_restored_that_the_profile_denies(
    earlier: list[Entry], entries: list[Entry], profiles: dict[str, SubjectProfile]
) -> None:
    step = transition.advance(entries, stored_from(earlier))
    current = {(c.subject, c.record.purpose): c.record for c in step.changes}
    for command in step.commands(ROUTING, profiles):
        if command.action in ("unsuppress", "restore_sharing") and command.subject in profiles:
            record = current[(command.subject, command.purpose)]
            assert rules.decide(command.purpose, profiles[command.subject], record).allowed


def test_a_regrant_asks_for_the_profile_and_is_held_back_by_one_that_denies() -> None:
    stored = stored_from([entry("s1", "marketing_email", False, 1, "w")])
    step = transition.advance([entry("s1", "marketing_email", True, 5, "g")], stored)
    assert step.regranted == ["s1"] and step.signed_up == []
    assert step.commands(ROUTING, {}) == [SubjectCommand("s1", "marketing_email", "unsuppress", "marketing_email")]
    restricted = {"s1": SubjectProfile("s1", "SE", restricted=True)}
    assert step.commands(ROUTING, restricted) == []


def test_a_sign_up_answer_asks_for_the_country() -> None:
    step = transition.advance([entry("s1", "marketing_email", False, channel="registration"),
                               entry("s2", "analytics", False, channel="registration")], {})
    assert step.signed_up == ["s1"], "analytics needs opt-in everywhere: no country needed"
    assert step.commands(ROUTING, {}) == []
    assert step.commands(ROUTING, {"s1": SubjectProfile("s1", "US")}) == [
        SubjectCommand("s1", "marketing_email", "suppress", "marketing_email")]
    assert step.commands(ROUTING, {"s1": SubjectProfile("s1", "SE")}) == []


def test_an_older_entry_changes_nothing_and_a_gpc_withdrawal_revokes_sharing() -> None:
    stored = stored_from([entry("s1", "partner_sharing", True, 10, "new")])
    assert transition.advance([entry("s1", "partner_sharing", False, 5, "old")], stored).changes == ()
    step = transition.advance([entry("s1", "partner_sharing", False, 15, "gpc", channel="gpc")], stored)
    assert step.commands(ROUTING, {}) == [
        SubjectCommand("s1", "partners", "revoke_sharing", "partner_sharing"),
        SubjectCommand("s1", "ipcom_group", "revoke_sharing", "partner_sharing")]


def test_only_entries_new_to_the_ledger_count_each_once() -> None:
    a, b = entry("s1", "analytics", True, event_id="a"), entry("s1", "analytics", False, event_id="b")
    assert transition.new_entries([a, b, a], {a.record.event_id}) == [a]
    assert transition.keys([b, a, entry("s0", "profiling", True)]) == [("s0", "profiling"), ("s1", "analytics")]
    assert transition.counts([a, a, b]) == {("analytics", True): 2, ("analytics", False): 1}
