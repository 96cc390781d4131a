"""What the policy says the consent state is, written from the policy and not from `rules`, so that
property tests do not check the rules against themselves."""

from __future__ import annotations

from services.consent.rules import ConsentRecord


def state_the_policy_describes(records: list[ConsentRecord]) -> dict[str, ConsentRecord]:
    """The oracle, written from the policy and not from `rules`: per purpose the latest event time wins;
    at the same instant a withdrawal wins over a grant; then the greatest event id."""
    state: dict[str, ConsentRecord] = {}
    for purpose in {r.purpose for r in records}:
        mine = [r for r in records if r.purpose == purpose]
        latest = [r for r in mine if r.effective_at == max(m.effective_at for m in mine)]
        withdrawals = [r for r in latest if not r.granted]
        state[purpose] = max(withdrawals or latest, key=lambda r: r.event_id)
    return state
