"""The decision cache alone (no I/O): what it may answer from, and when it must not."""

from __future__ import annotations

from datetime import UTC, datetime

from services.consent import rules
from services.consent.decision_cache import DecisionCache, SubjectView

PROFILE = rules.SubjectProfile(subject="s1", country="SE", minor=False, restricted=False, objections=frozenset())
GRANT = rules.ConsentRecord("e1:marketing_email", "marketing_email", True, datetime(2026, 1, 1, tzinfo=UTC), "web")


def _view() -> SubjectView:
    return SubjectView(PROFILE, {"marketing_email": GRANT})


def _live(max_subjects: int = 10) -> DecisionCache:
    cache = DecisionCache(max_subjects)
    cache.start()
    return cache


def test_nothing_is_answered_from_memory_before_listen_is_in_place() -> None:
    cache = DecisionCache(10)
    assert cache.store("s1", _view(), cache.begin_read()) is False
    assert cache.get("s1") is None


def test_a_subject_it_was_told_of_is_read_again() -> None:
    cache = _live()
    assert cache.store("s1", _view(), cache.begin_read())
    assert cache.get("s1") is not None
    cache.notified('["s0", "s1"]')
    assert cache.get("s1") is None


def test_a_read_that_began_before_the_change_is_not_kept() -> None:
    """The read's snapshot may be from before the withdrawal it was told of meanwhile."""
    cache = _live()
    started = cache.begin_read()
    cache.notified('["s1"]')
    assert cache.store("s1", _view(), started) is False
    assert cache.get("s1") is None
    assert cache.store("s1", _view(), cache.begin_read())  # a read after the change may be kept


def test_a_change_of_another_subject_does_not_refuse_a_read() -> None:
    cache = _live()
    started = cache.begin_read()
    cache.notified('["s2"]')
    assert cache.store("s1", _view(), started)


def test_losing_listen_drops_everything_and_refuses_reads_from_before() -> None:
    cache = _live()
    cache.store("s1", _view(), cache.begin_read())
    started = cache.begin_read()
    cache.stop()
    assert cache.get("s1") is None
    assert cache.store("s2", _view(), cache.begin_read()) is False  # not live
    cache.start()  # reconnected: changes while away were not heard, so nothing from before counts
    assert cache.get("s1") is None
    assert cache.store("s1", _view(), started) is False
    assert cache.store("s1", _view(), cache.begin_read())


def test_a_payload_it_cannot_read_drops_everything() -> None:
    for payload in ("*", "not json", '{"a": 1}', "[1, 2]"):
        cache = _live()
        started = cache.begin_read()
        cache.store("s1", _view(), started)
        cache.notified(payload)
        assert cache.get("s1") is None, payload
        assert cache.store("s1", _view(), started) is False, payload


def test_size_and_pending_invalidations_stay_bounded() -> None:
    cache = DecisionCache(2, max_pending=3)
    cache.start()
    for subject in ("a", "b", "c"):
        cache.store(subject, _view(), cache.begin_read())
    assert len(cache) == 2 and cache.get("a") is None
    started = cache.begin_read()
    cache.invalidate(["w", "x", "y", "z"])  # more than max_pending: forgets everything instead
    assert len(cache) == 0
    assert cache.store("a", _view(), started) is False


def test_zero_subjects_disables_it() -> None:
    cache = _live(0)
    assert cache.store("s1", _view(), cache.begin_read()) is False
