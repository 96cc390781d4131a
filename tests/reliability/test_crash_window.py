"""The fault runs' rule for a second copy of an email (system_run.crash_window_copies), on made-up arrivals."""

from __future__ import annotations

from tests.reliability.system_run import Arrival, Cut, Mailbox, crash_window_copies


def mailbox(*arrivals: Arrival) -> Mailbox:
    sessions: dict[str, list[float]] = {}
    for a in arrivals:
        sessions.setdefault(a.session, []).append(a.at)
    return Mailbox({}, {s: sorted(t) for s, t in sessions.items()})


def test_the_last_message_of_a_session_a_kill_ended_is_the_crash_window() -> None:
    first, again = Arrival(10.0, "127.0.0.1:5000"), Arrival(40.0, "127.0.0.1:6000")
    box = mailbox(Arrival(9.0, "127.0.0.1:5000"), first, again)
    assert crash_window_copies(box, [[first, again]], [Cut(12.5, 1, "kill")]) == 1  # seconds later: still it


def test_a_copy_followed_by_more_mail_on_its_session_is_a_duplicate() -> None:
    first, again = Arrival(10.0, "127.0.0.1:5000"), Arrival(40.0, "127.0.0.1:6000")
    box = mailbox(first, Arrival(11.0, "127.0.0.1:5000"), again)
    assert crash_window_copies(box, [[first, again]], [Cut(12.0, 1, "kill")]) == 0


def test_one_copy_per_killed_sender_and_none_without_a_cut_after_it() -> None:
    a1, a2 = Arrival(10.0, "127.0.0.1:5000"), Arrival(30.0, "127.0.0.1:6000")
    b1, b2 = Arrival(10.5, "127.0.0.1:5001"), Arrival(31.0, "127.0.0.1:6001")
    box = mailbox(a1, a2, b1, b2)
    assert crash_window_copies(box, [[a1, a2], [b1, b2]], [Cut(11.0, 1, "kill")]) == 1
    assert crash_window_copies(box, [[a1, a2], [b1, b2]], [Cut(11.0, 2, "smtp stopped")]) == 2
    assert crash_window_copies(box, [[a1, a2]], [Cut(9.0, 1, "kill")]) == 0
    three = [a1, a2, Arrival(50.0, "127.0.0.1:7000")]
    assert crash_window_copies(box, [three], [Cut(11.0, 1, "kill")]) == 0


def test_each_copy_goes_to_a_cut_that_ended_its_own_session() -> None:
    """Replica b's kill comes first, replica a's later: a's copy (its session went on past b's kill)
    belongs to a's kill, b's copy to b's."""
    a1, a2 = Arrival(10.0, "127.0.0.1:5000"), Arrival(60.0, "127.0.0.1:6000")
    b1, b2 = Arrival(19.0, "127.0.0.1:5001"), Arrival(61.0, "127.0.0.1:6001")
    box = mailbox(Arrival(5.0, "127.0.0.1:5001"), a1, b1, a2, b2)
    cuts = [Cut(20.0, 1, "b killed"), Cut(30.0, 1, "a killed")]
    assert crash_window_copies(box, [[a1, a2], [b1, b2]], cuts) == 2
