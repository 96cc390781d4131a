"""Event time for ordering (the contract's envelope rule), as one pure function every service uses.

State follows event time, not arrival, so a late event never overrides newer state. But a `time` the
producer states is only trusted so far: one more than `FUTURE_TOLERANCE` ahead of the event's arrival
counts, for ordering, as its arrival time (a clock running ahead, or a forged timestamp, must never let a
grant outrank a withdrawal made after it). Both times are recorded; only ordering uses this one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: Ordinary clock skew between producers: a stated time this far ahead of arrival is still believed.
FUTURE_TOLERANCE = timedelta(minutes=5)


def ordering_time(stated: datetime, arrived: datetime) -> datetime:
    """The time an event orders by: the time it states, or its arrival when that lies more than
    `FUTURE_TOLERANCE` ahead. Arrival, not arrival + tolerance: a withdrawal made a moment after a
    grant stamped hours ahead must still come after it."""
    return arrived if stated - arrived > FUTURE_TOLERANCE else stated
