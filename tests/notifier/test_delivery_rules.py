"""Pure delivery rules: who gets what, retry timing, SMTP outcomes, rate limit, message shape."""

from __future__ import annotations

import email.policy
import itertools
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import aiosmtplib
import pytest

from services.notifier import rules, smtp_failures, templates
from services.notifier.rules import Action, Failure, Recipient

GRACE = timedelta(hours=1)
RIGHTS_NOTICES = (
    "verification_code",
    "privacy_center_link",
    "request_received",
    "deadline_extended",
    "export_ready",
    "erasure_completed",
    "request_rejected",
    "request_overdue",
    "request_completed",
)
OTHER_NOTICES = ("merger_notice", "policy_changed", "legal_disclosure")


def recipient(*, restricted: bool = False) -> Recipient:
    return Recipient(subject="s-1", email="a@example.com", name="A", locale="sv", country="SE", restricted=restricted)


def decide(
    template: str = "merger_notice",
    category: str = rules.TRANSACTIONAL,
    *,
    who: Recipient | None = None,
    erased: bool = False,
    waited: timedelta = timedelta(0),
    marketing_allowed: bool | None = None,
) -> rules.Verdict:
    return rules.verdict(
        template=template,
        category=category,
        recipient=who,
        erased=erased,
        waited=waited,
        unknown_grace=GRACE,
        marketing_allowed=marketing_allowed,
    )


# --- who gets what ---------------------------------------------------------------------------------


@pytest.mark.parametrize("template", RIGHTS_NOTICES + OTHER_NOTICES)
def test_nothing_is_ever_sent_to_an_erased_subject(template: str) -> None:
    assert decide(template, who=recipient(), erased=True) == rules.Verdict(Action.SUPPRESS, "erased")
    assert decide(template, who=None, erased=True).action is Action.SUPPRESS


def test_unknown_recipient_is_waited_for_then_given_up() -> None:
    assert decide(who=None, waited=timedelta(minutes=5)).action is Action.DEFER
    assert decide(who=None, waited=GRACE) == rules.Verdict(Action.SUPPRESS, "unknown_recipient")


@pytest.mark.parametrize("template", RIGHTS_NOTICES)
def test_restricted_subject_still_gets_rights_request_notices(template: str) -> None:
    assert decide(template, who=recipient(restricted=True)).action is Action.SEND


@pytest.mark.parametrize("template", OTHER_NOTICES)
def test_restricted_subject_gets_no_other_email(template: str) -> None:
    assert decide(template, who=recipient(restricted=True)) == rules.Verdict(Action.SUPPRESS, "restricted")


def test_restricted_subject_gets_no_marketing_even_with_consent() -> None:
    verdict = decide("policy_changed", rules.MARKETING, who=recipient(restricted=True), marketing_allowed=True)
    assert verdict.action is Action.SUPPRESS


def test_marketing_asks_consent_first_and_obeys_the_answer() -> None:
    first = decide("policy_changed", rules.MARKETING, who=recipient())
    assert first.action is Action.SEND and first.needs_consent
    assert decide("policy_changed", rules.MARKETING, who=recipient(), marketing_allowed=True) == rules.Verdict(
        Action.SEND
    )
    assert decide("policy_changed", rules.MARKETING, who=recipient(), marketing_allowed=False) == rules.Verdict(
        Action.SUPPRESS, "no_consent"
    )


def test_marketing_waits_for_an_answer_then_gives_up_without_sending() -> None:
    give_up = timedelta(days=3)

    def unanswered(waited: timedelta) -> rules.Verdict:
        return rules.verdict(template="policy_changed", category=rules.MARKETING, recipient=recipient(),
                             erased=False, waited=waited, unknown_grace=timedelta(hours=1),
                             consent_unavailable=True, give_up=give_up)

    assert unanswered(timedelta(hours=5)) == rules.Verdict(Action.DEFER, "consent decision unavailable")
    assert unanswered(give_up) == rules.Verdict(Action.SUPPRESS, "no_consent_answer")


@pytest.mark.parametrize("template", RIGHTS_NOTICES + OTHER_NOTICES)
def test_transactional_email_ignores_marketing_opt_outs(template: str) -> None:
    verdict = decide(template, who=recipient(), marketing_allowed=False)
    assert verdict == rules.Verdict(Action.SEND) and not verdict.needs_consent


@pytest.mark.parametrize("template", RIGHTS_NOTICES + OTHER_NOTICES)
def test_the_last_check_before_a_send_sees_an_erasure_or_restriction_since_the_claim(template: str) -> None:
    def again(**fresh: bool) -> str | None:
        state = {"claimed": True, "final_notice": False, "listed": True, "restricted": False} | fresh
        return rules.recheck(template, **state)

    assert again() is None
    assert again(claimed=False) == rules.NOT_CLAIMED  # cancelled by the erasure: left alone
    assert again(listed=False) == "erased"
    assert again(restricted=True) == (None if rules.legally_required(template) else "restricted")
    # An erasure confirmation set aside by the erasure still goes; nothing else of theirs does.
    assert again(final_notice=True, listed=False) is None
    assert again(final_notice=True, claimed=False) == rules.NOT_CLAIMED
    # Past the safe part of its lease (by the database's clock): handed back, whatever else holds.
    assert again(in_time=False) == rules.LEASE_RUNNING_OUT
    assert again(in_time=False, final_notice=True) == rules.LEASE_RUNNING_OUT
    assert again(in_time=False, claimed=False) == rules.NOT_CLAIMED


def test_only_material_policy_changes_and_permitted_disclosures_are_emailed() -> None:
    assert rules.fans_out_policy_change(True) and not rules.fans_out_policy_change(False)
    assert rules.notify_of_disclosure(True) and not rules.notify_of_disclosure(False)


def test_every_template_is_classified() -> None:
    assert {t for t in templates.TEMPLATE_NAMES if rules.legally_required(t)} == set(RIGHTS_NOTICES)
    assert not rules.legally_required("unknown")


# --- ids -------------------------------------------------------------------------------------------


def test_fanout_ids_are_stable_per_notice_and_recipient() -> None:
    assert rules.fanout_notification_id("merger-notice", "tx-9", "s-1") == "merger-notice:tx-9:s-1"
    assert rules.fanout_notification_id("merger-notice", "tx-9", "s-1") != rules.fanout_notification_id(
        "merger-notice", "tx-9", "s-2"
    )


def test_disclosure_ids_do_not_carry_the_case_reference() -> None:
    nid = rules.disclosure_notification_id("Polisen K 2025/17", "s-1")
    assert nid == rules.disclosure_notification_id("Polisen K 2025/17", "s-1")
    assert "Polisen" not in nid and nid.endswith(":s-1")


def test_message_id_is_stable_and_per_notification() -> None:
    first = rules.message_id("merger-notice:tx:s-1", "isopartner.se")
    assert first == rules.message_id("merger-notice:tx:s-1", "isopartner.se")
    assert first != rules.message_id("merger-notice:tx:s-2", "isopartner.se")
    assert first.startswith("<") and first.endswith("@isopartner.se>")
    assert "s-1" not in first


def test_sender_domain_comes_from_smtp_from() -> None:
    assert rules.sender_domain("ISOPARTNER AB <privacy@isopartner.se>") == "isopartner.se"
    assert rules.sender_domain("nobody") == "localhost"


# --- retry timing ----------------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    low = [rules.retry_delay(n, 10, 3600, rand=lambda: 0.0) for n in range(1, 12)]
    high = [rules.retry_delay(n, 10, 3600, rand=lambda: 1.0) for n in range(1, 12)]
    assert low[:4] == [5, 10, 20, 40]
    assert high[:4] == [10, 20, 40, 80]
    assert max(high) == 3600 and max(low) == 1800
    assert all(a <= b for a, b in itertools.pairwise(high))


def test_backoff_and_the_failure_count_stay_bounded_in_an_endless_outage() -> None:
    # A relay down for weeks under a steady stream of new emails: thousands of failures in a row.
    for attempts in (1025, 1026, 10**6):
        assert 1800 <= rules.retry_delay(attempts, 10.0, 3600.0) <= 3600
    in_a_row = 0
    for _ in range(5000):
        in_a_row = rules.count_failure(in_a_row)
    assert in_a_row == rules.MAX_DOUBLINGS + 1
    assert rules.retry_delay(in_a_row, 10.0, 3600.0, rand=lambda: 1.0) == 3600


def test_backoff_jitter_spreads_a_burst() -> None:
    delays = {round(rules.retry_delay(3, 10, 3600), 6) for _ in range(50)}
    assert len(delays) > 40
    assert all(20 <= d <= 40 for d in delays)


def test_temporary_failures_turn_permanent_after_the_give_up_time() -> None:
    created = datetime(2025, 1, 1, tzinfo=UTC)
    assert not rules.gives_up(created, created + timedelta(days=2), timedelta(days=3))
    assert rules.gives_up(created, created + timedelta(days=3), timedelta(days=3))


# --- SMTP outcomes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(451, "try later", "a@x.se")]),
            Failure.TEMPORARY,
        ),
        (
            aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no such user", "a@x.se")]),
            Failure.PERMANENT,
        ),
        (aiosmtplib.SMTPDataError(451, "temporarily refusing"), Failure.TEMPORARY),
        (aiosmtplib.SMTPDataError(554, "rejected"), Failure.PERMANENT),
        (aiosmtplib.SMTPSenderRefused(450, "busy", "p@x.se"), Failure.CONNECTION),
        # The session or the envelope sender refused: every email shares it, so none fails for it.
        (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 authentication failed"), Failure.CONNECTION),
        (aiosmtplib.SMTPSenderRefused(530, "5.7.0 Must issue a STARTTLS command first", "p@x.se"),
         Failure.CONNECTION),
        (aiosmtplib.SMTPSenderRefused(553, "5.7.1 sender not owned by user", "p@x.se"), Failure.CONNECTION),
        (aiosmtplib.SMTPHeloError(550, "go away"), Failure.CONNECTION),
        (aiosmtplib.SMTPConnectResponseError(554, "no service"), Failure.CONNECTION),
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(530, "auth first", "a@x.se")]),
         Failure.CONNECTION),
        (aiosmtplib.SMTPResponseException(535, "5.7.8 authentication failed"), Failure.CONNECTION),
        (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"), Failure.PERMANENT),
        (aiosmtplib.SMTPDataError(421, "closing connection"), Failure.CONNECTION),
        (aiosmtplib.SMTPConnectError("refused"), Failure.CONNECTION),
        (aiosmtplib.SMTPServerDisconnected("gone"), Failure.CONNECTION),
        (aiosmtplib.SMTPReadTimeoutError("slow"), Failure.CONNECTION),
        (ConnectionRefusedError(111, "Connection refused"), Failure.CONNECTION),
        (ValueError("bad address"), Failure.PERMANENT),
    ],
)
def test_smtp_failures_are_classified(exc: BaseException, expected: Failure) -> None:
    assert smtp_failures.classify(exc)[0] is expected


@pytest.mark.parametrize(
    "cause",
    [
        aiosmtplib.SMTPResponseException(554, "5.7.0 TLS not available"),  # a 5xx to STARTTLS
        aiosmtplib.SMTPAuthenticationError(535, "5.7.8 authentication failed"),
        ValueError("bad TLS options"),
        aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."),
    ],
)
def test_a_failed_relay_session_is_never_one_emails_fault(cause: Exception) -> None:
    try:
        raise rules.RelaySessionFailed(type(cause).__name__) from cause
    except rules.RelaySessionFailed as exc:
        kind, description = smtp_failures.classify(exc)
    assert kind is Failure.CONNECTION
    assert description.startswith("relay session: ")


# --- message shape ---------------------------------------------------------------------------------


def _rendered(unsubscribe: str | None = None) -> templates.RenderedEmail:
    context = templates.Context(
        contact_email="privacy@isopartner.se",
        public_base_url="https://x",
        recipient_name="Åsa Öberg",
        unsubscribe_url=unsubscribe,
    )
    params = {
        "version": "2",
        "effective_date": "2026-01-01",
        "summary_sv": "Ny",
        "summary_en": "New",
        "url": "https://isopartner.se/p",
    }
    return templates.render("policy_changed", "sv", params, context)


def parse(raw: bytes) -> EmailMessage:
    assert b"\r\n\r\n" in raw and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    msg = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage) and not msg.defects
    return msg


def test_transactional_message_has_stable_id_and_no_unsubscribe_headers() -> None:
    raw = rules.compose(
        _rendered(),
        sender="ISOPARTNER AB <privacy@isopartner.se>",
        to_email="a@example.com",
        to_name="Åsa Öberg",
        message_id="<abc@isopartner.se>",
        category=rules.TRANSACTIONAL,
        unsubscribe=None,
        date=datetime(2025, 1, 1, tzinfo=UTC),
    )
    msg = parse(raw)
    assert msg["Message-ID"] == "<abc@isopartner.se>"
    assert msg["List-Unsubscribe"] is None
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Content-Language"] == "sv"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["To"].addresses[0].addr_spec == "a@example.com"
    assert msg["To"].addresses[0].display_name == "Åsa Öberg"
    assert msg["Subject"] == "Vi uppdaterar vår integritetspolicy"
    assert "Ny" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "<!doctype html>" in msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert b"Auto-Submitted" in raw and b"=?utf-8?" in raw, "non-ASCII headers are RFC 2047 encoded"


def test_message_survives_long_lines_dots_and_header_injection() -> None:
    text = "x" * 3000 + "\n.\n.leading dot\n"
    rendered = templates.RenderedEmail(
        subject="Hej\r\nBcc: evil@example.com", text=text, html="<p>" + text + "</p>", locale="sv"
    )
    raw = rules.compose(
        rendered,
        sender="ISOPARTNER AB <privacy@isopartner.se>",
        to_email="a@example.com",
        to_name="Eve\r\nBcc: evil@example.com",
        message_id="<m@isopartner.se>",
        category=rules.TRANSACTIONAL,
        unsubscribe=None,
        date=datetime(2025, 1, 1, tzinfo=UTC),
    )
    msg = parse(raw)
    assert msg["Bcc"] is None
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == text  # type: ignore[union-attr]


@pytest.mark.parametrize("address", [
    "victim@example.com\r\nBcc: evil@example.com", "victim@example.com\nSubject: x", "a b@example.com",
    "victim@example.com\n", "victim@example.com\r\n",
    "victim@example.com, evil@example.com", "", "no-at-sign", "x@" + "y" * 260 + ".com",
])
def test_an_address_that_could_carry_headers_is_refused(address: str) -> None:
    assert not rules.is_email_address(address)
    with pytest.raises(rules.InvalidAddress):
        rules.compose(_rendered(), sender="ISOPARTNER AB <privacy@isopartner.se>", to_email=address, to_name=None,
                      message_id="<m@isopartner.se>", category=rules.TRANSACTIONAL, unsubscribe=None,
                      date=datetime(2025, 1, 1, tzinfo=UTC))


def test_marketing_message_carries_one_click_unsubscribe() -> None:
    url = "http://consent:6066/v1/unsubscribe/tok"
    raw = rules.compose(
        _rendered(url),
        sender="ISOPARTNER AB <privacy@isopartner.se>",
        to_email="a@example.com",
        to_name=None,
        message_id="<abc@isopartner.se>",
        category=rules.MARKETING,
        unsubscribe=url,
        date=datetime(2025, 1, 1, tzinfo=UTC),
    )
    msg = parse(raw)
    assert msg["List-Unsubscribe"] == f"<{url}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert url in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_unsubscribe_url_is_under_the_consent_service() -> None:
    assert rules.unsubscribe_url("http://c:6066/", "t.k") == "http://c:6066/v1/unsubscribe/t.k"


# --- rate limit ------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_paces() -> None:
    clock = FakeClock()
    bucket = rules.TokenBucket(rate=100, burst=5, clock=clock)
    assert [bucket.reserve() for _ in range(5)] == [0.0] * 5
    assert bucket.reserve() == pytest.approx(0.01)
    assert bucket.reserve() == pytest.approx(0.02)
    clock.now += 1.0  # refills, but never above the burst
    assert [bucket.reserve() for _ in range(5)] == [0.0] * 5
    assert bucket.reserve() > 0


def test_token_bucket_holds_the_long_run_rate() -> None:
    clock = FakeClock()
    bucket = rules.TokenBucket(rate=500, clock=clock)
    for _ in range(5000):
        clock.now += bucket.reserve()
    assert clock.now - 100.0 == pytest.approx((5000 - bucket.burst) / 500, rel=0.01)


def test_a_small_batch_takes_one_lane_and_a_fan_out_every_lane() -> None:
    assert rules.lane_count(1, 4) == 1  # a notice to one person: one connection
    assert rules.lane_count(7, 4) == 1
    assert rules.lane_count(8, 4) == 2
    assert rules.lane_count(200, 4) == 4
    assert rules.lane_count(200, 1) == 1
    assert rules.lane_count(0, 4) == 1


def test_lanes_take_the_batch_in_queue_order_until_half_the_lease_and_hand_back_the_rest() -> None:
    from services.notifier.delivery import Claimed, Lanes

    batch = [Claimed({"notification_id": f"n{i}"}, None, False, None) for i in range(5)]  # type: ignore[arg-type]
    deadlines = rules.round_deadlines(100.0, 60.0)
    lanes = Lanes(batch, deadlines)
    assert [lanes.take(100.0), lanes.take(110.0)] == [batch[:1], batch[1:2]]
    assert lanes.take(deadlines.take_new_until) == [], "nothing new after half the lease"
    assert lanes.why_stopped == "half the lease had passed"
    lanes.stop("the SMTP relay is failing")
    assert lanes.why_stopped == "half the lease had passed", "the first reason is the one recorded"
    assert lanes.untried() == batch[2:] and lanes.untried() == []


def test_a_lane_takes_a_group_no_larger_than_its_share_and_puts_back_what_it_did_not_try() -> None:
    from services.notifier.delivery import Claimed, Lanes

    batch = [Claimed({"notification_id": f"n{i}"}, None, False, None) for i in range(10)]  # type: ignore[arg-type]
    lanes = Lanes(batch, rules.round_deadlines(0.0, 60.0))
    assert lanes.take(1.0, most=8, lanes=4) == batch[:2], "10 among 4 lanes: groups of 2, not 8 for one"
    group = lanes.take(1.0, most=2, lanes=1)
    assert group == batch[2:4], "never more than `most`"
    lanes.put_back(group[1:])
    assert lanes.take(1.0, most=3, lanes=1) == [batch[3], *batch[4:6]], "put back first in line, in order"
    assert lanes.take(1.0, most=8, lanes=1) == batch[6:8], "half of what is left"
    assert lanes.take(1.0, most=8, lanes=1) == [batch[8]] and lanes.take(1.0, most=8) == [batch[9]]
    assert lanes.take(1.0, most=8) == []


def test_a_lane_that_stops_the_round_stops_every_lane() -> None:
    from services.notifier.delivery import Claimed, Lanes

    batch = [Claimed({"notification_id": f"n{i}"}, None, False, None) for i in range(3)]  # type: ignore[arg-type]
    lanes = Lanes(batch, rules.round_deadlines(0.0, 60.0))
    assert lanes.take(1.0) == [batch[0]]
    lanes.stop("the SMTP relay is failing")
    assert lanes.take(1.0) == []
    assert lanes.untried() == batch[1:] and lanes.why_stopped == "the SMTP relay is failing"


def test_groups_shrink_as_the_batch_runs_out() -> None:
    assert [rules.group_share(pending, 8, 8) for pending in (200, 128, 64, 32, 16, 8, 1)] == [8, 8, 4, 2, 1, 1, 1]
    assert rules.group_share(10, 1, 8) == 5
    assert rules.group_share(0, 4, 8) == 0 and rules.group_share(100, 0, 8) == 8


def test_a_send_group_is_never_larger_than_the_rate_limits_burst() -> None:
    assert rules.send_group_size(8, rules.TokenBucket(500).burst) == 8
    assert rules.send_group_size(8, rules.TokenBucket(41).burst) == 4, "the prod overlay's 41/s: bursts of 4"
    assert rules.send_group_size(8, rules.TokenBucket(1).burst) == 1
    assert rules.send_group_size(1, 100.0) == 1


def test_claim_batch_fits_inside_the_lease() -> None:
    assert rules.claim_batch_size(200, 500, 60) == 200
    assert rules.claim_batch_size(200, 1, 60) == 15
    assert rules.claim_batch_size(200, 0.01, 60) == 1


# --- erasure holds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("right", "status", "change"), [
    ("erasure", "received", None), ("erasure", "identity_pending", None),
    ("erasure", "in_progress", True), ("erasure", "awaiting_systems", True),
    ("erasure", "rejected", False), ("erasure", "cancelled", False), ("erasure", "closed_unverified", False),
    ("erasure", "completed", False),
    ("access", "in_progress", None), ("restriction", "awaiting_systems", None), ("objection", "rejected", None),
])
def test_a_verified_erasure_case_holds_until_it_is_refused_or_cancelled(right: str, status: str,
                                                                        change: bool | None) -> None:
    assert rules.erasure_hold_change(right, status) is change


def test_while_an_erasure_is_held_only_that_cases_own_emails_go() -> None:
    holds = frozenset({"req-1"})
    assert not rules.held_for_erasure(holds, {"request_id": "req-1", "right": "erasure"})
    assert rules.held_for_erasure(holds, {"request_id": "req-2"}), "another request's email"
    assert rules.held_for_erasure(holds, {"kind": "merger", "counterparty": "X"}), "a notice to everyone"
    assert rules.held_for_erasure(holds, None)
    assert not rules.held_for_erasure(frozenset(), {"kind": "merger"}), "no hold: nothing held back"


@pytest.mark.parametrize("template", OTHER_NOTICES)
def test_a_held_subject_gets_no_notice_and_no_marketing(template: str) -> None:
    held = rules.verdict(template=template, category=rules.TRANSACTIONAL, recipient=recipient(), erased=False,
                         waited=timedelta(0), unknown_grace=GRACE, held=True)
    assert held == rules.Verdict(Action.SUPPRESS, "erasure_pending")
    marketing = rules.verdict(template="policy_changed", category=rules.MARKETING, recipient=recipient(),
                              erased=False, waited=timedelta(0), unknown_grace=GRACE, marketing_allowed=True,
                              held=True)
    assert marketing.action is Action.SUPPRESS
    assert decide(template, who=recipient()).action is Action.SEND, "without a hold it goes"


@pytest.mark.parametrize("template", RIGHTS_NOTICES + OTHER_NOTICES)
def test_the_last_check_before_a_send_sees_an_erasure_hold_since_the_claim(template: str) -> None:
    state = {"claimed": True, "final_notice": False, "listed": True, "restricted": False}
    assert rules.recheck(template, **state, holds=["req-1"], params={"kind": "merger"}) == "erasure_pending"
    assert rules.recheck(template, **state, holds=["req-1"], params={"request_id": "req-1"}) is None
    assert rules.recheck(template, **state, holds=[], params=None) is None
    assert rules.recheck(template, **(state | {"final_notice": True, "listed": False}), holds=["req-1"]) is None


def test_the_rules_import_no_io_library() -> None:
    """The pure rules know failure kinds, not the SMTP client: its exceptions are classified in
    `smtp_failures`. A fresh interpreter, so that other tests' imports do not count."""
    probe = "import sys, services.notifier.rules; print(sorted({'aiosmtplib', 'asyncpg', 'aiokafka'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
