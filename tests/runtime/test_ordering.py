"""Ordering time: a stated time believed up to five minutes ahead of arrival, beyond that the arrival."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from privacy_runtime.ordering import FUTURE_TOLERANCE, ordering_time

ARRIVED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_time_in_the_past_or_within_the_tolerance_is_believed() -> None:
    for offset in (timedelta(days=-30), timedelta(seconds=-1), timedelta(0), timedelta(minutes=4, seconds=59),
                   FUTURE_TOLERANCE):
        assert ordering_time(ARRIVED + offset, ARRIVED) == ARRIVED + offset


def test_a_time_further_ahead_counts_as_the_arrival() -> None:
    for offset in (FUTURE_TOLERANCE + timedelta(microseconds=1), timedelta(minutes=6), timedelta(hours=12),
                   timedelta(days=1)):
        assert ordering_time(ARRIVED + offset, ARRIVED) == ARRIVED


moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))


@given(moments, moments, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=1)))
def test_a_withdrawal_made_after_a_grant_arrived_is_never_outranked_by_it(
    grant_arrived: datetime, later: datetime, ahead: timedelta
) -> None:
    """Whatever a grant states, a withdrawal stamped honestly after the grant arrived, beyond the
    tolerance, comes after it; and ordering never puts an event later than it states or than arrival
    plus the tolerance."""
    grant = ordering_time(grant_arrived + ahead, grant_arrived)
    assert grant <= grant_arrived + FUTURE_TOLERANCE and grant <= grant_arrived + ahead
    if later > grant_arrived and ahead > FUTURE_TOLERANCE:
        assert ordering_time(later, later) > grant
