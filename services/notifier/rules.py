"""Delivery rules as pure functions: who gets what, retry timing, SMTP failure kinds, rate limiting.

No I/O here. The sender and the intake feed these functions what they read and act on the answer.
"""

from __future__ import annotations

import binascii
import hashlib
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from enum import StrEnum
from functools import lru_cache

from schemas.fields import EMAIL_PATTERN, MAX_EMAIL
from services.notifier.templates import SPECS, RenderedEmail

TRANSACTIONAL = "transactional"
MARKETING = "marketing"
#: The consent purpose a marketing email needs.
MARKETING_PURPOSE = "marketing_email"

#: Notices the directory fan-out sends to every recipient (topic -> template).
MERGER_NOTICE_TEMPLATE = "merger_notice"
POLICY_CHANGED_TEMPLATE = "policy_changed"
LEGAL_DISCLOSURE_TEMPLATE = "legal_disclosure"


class Status(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


STATUSES: tuple[str, ...] = tuple(s.value for s in Status)

#: Queue priorities: lower goes first.
PRIORITY_PERSONAL = 0
PRIORITY_BULK = 1
#: The `queue` label of the queue gauges, per priority.
QUEUES: dict[int, str] = {PRIORITY_PERSONAL: "personal", PRIORITY_BULK: "bulk"}


# --- who gets what -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """A directory entry, decrypted for the moment of sending."""

    subject: str
    email: str
    name: str | None
    locale: str
    country: str | None
    restricted: bool


class Action(StrEnum):
    SEND = "send"
    SUPPRESS = "suppress"
    DEFER = "defer"


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str = ""

    @property
    def needs_consent(self) -> bool:
        return self.action is Action.SEND and self.reason == "needs_consent"


def legally_required(template: str) -> bool:
    """Notices about the subject's own rights request: sent even while processing is restricted."""
    spec = SPECS.get(template)
    return spec is not None and spec.rights_request


#: `dsar-status` of an erasure case from which the subject is held back from every other email (the case
#: is verified: in progress, or waiting for systems), and those that end the hold (a refusal, a
#: cancellation; completion ends it too, the subject then being erased, which stops every email anyway).
HOLDING_STATUSES = frozenset({"in_progress", "awaiting_systems"})
RELEASING_STATUSES = frozenset({"rejected", "cancelled", "closed_unverified", "completed"})
ERASURE_RIGHT = "erasure"


def erasure_hold_change(right: str, status: str) -> bool | None:
    """What a `dsar-status` means for the hold: True starts (or keeps) it for that case, False ends it,
    None changes nothing (another right, or a status before verification)."""
    if right != ERASURE_RIGHT:
        return None
    if status in HOLDING_STATUSES:
        return True
    if status in RELEASING_STATUSES:
        return False
    return None


def held_for_erasure(holds: frozenset[str], params: dict[str, object] | None) -> bool:
    """An email held back by the subject's verified erasure cases (`holds`: their request ids): every
    email but those about one of those cases, whatever its kind (merger, policy or legal-disclosure
    notice, marketing, another request's)."""
    if not holds:
        return False
    request_id = (params or {}).get("request_id")
    return request_id is None or str(request_id) not in holds


def verdict(
    *,
    template: str,
    category: str,
    recipient: Recipient | None,
    erased: bool,
    waited: timedelta,
    unknown_grace: timedelta,
    marketing_allowed: bool | None = None,
    consent_unavailable: bool = False,
    give_up: timedelta | None = None,
    held: bool = False,
) -> Verdict:
    """Decide one queued email. The first rule that stops it wins.

    - Nothing ever goes to an erased subject.
    - From the verification of an erasure case on, nothing but that case's own emails (`held`, see
      `held_for_erasure`).
    - A subject not (yet) in the directory is waited for (the registration may still be on its way),
      then given up on.
    - While processing is restricted (Art. 18) only notices about the subject's own rights requests go.
    - Marketing needs the consent service's yes (`marketing_allowed`); None means "ask first". When
      it could not answer (`consent_unavailable`: down, timed out, 5xx) the email waits and asks again,
      until `give_up`; then it is not sent (no answer is never a yes). Transactional email ignores
      marketing opt-outs.
    """
    if erased:
        return Verdict(Action.SUPPRESS, "erased")
    if held:
        return Verdict(Action.SUPPRESS, "erasure_pending")
    if recipient is None:
        if waited < unknown_grace:
            return Verdict(Action.DEFER, "recipient not in the directory yet")
        return Verdict(Action.SUPPRESS, "unknown_recipient")
    if recipient.restricted and not legally_required(template):
        return Verdict(Action.SUPPRESS, "restricted")
    if category == MARKETING:
        if consent_unavailable:
            if give_up is None or waited < give_up:
                return Verdict(Action.DEFER, "consent decision unavailable")
            return Verdict(Action.SUPPRESS, "no_consent_answer")
        if marketing_allowed is None:
            return Verdict(Action.SEND, "needs_consent")
        if not marketing_allowed:
            return Verdict(Action.SUPPRESS, "no_consent")
    return Verdict(Action.SEND)


#: The re-check's answer for a row that is no longer this sender's (an erasure cancelled it, or its
#: lease expired and it was retaken): leave it alone.
NOT_CLAIMED = "no longer this claim's"

#: The re-check's answer for a row still this claim's whose lease, by the database's clock (the one the
#: maintenance loop retakes rows by), is past SEND_BY: hand it back untried rather than start its send.
LEASE_RUNNING_OUT = "past the safe part of its lease"


def recheck(template: str, *, claimed: bool, final_notice: bool, listed: bool, restricted: bool,
            holds: Sequence[str] = (), params: dict[str, object] | None = None, in_time: bool = True) -> str | None:
    """The last word on a claimed email, read under the row locks right before its send: None to send,
    else why not. The row must still be this claim's and its lease not past SEND_BY (`in_time`); an
    erasure, an erasure hold (`holds`: the request ids of the subject's verified erasure cases; `params`:
    the email's) or a restriction may have come since the batch was claimed."""
    if not claimed:
        return NOT_CLAIMED
    if not in_time:
        return LEASE_RUNNING_OUT
    if final_notice:
        return None  # an erasure confirmation, addressed from its final notice (the entry is gone)
    if not listed:
        return "erased"
    if held_for_erasure(frozenset(holds), params):
        return "erasure_pending"
    if restricted and not legally_required(template):
        return "restricted"
    return None


def notify_of_disclosure(may_notify_subject: bool) -> bool:
    """A legal disclosure is told to the subject only where the law allows it."""
    return may_notify_subject


def fans_out_policy_change(material: bool) -> bool:
    """Only a material policy change is emailed."""
    return material


# --- ids ---------------------------------------------------------------------------------------


def fanout_notification_id(notice: str, notice_id: str, subject: str) -> str:
    """One email per (notice, recipient): replays and restarts of a fan-out collide on this key."""
    return f"{notice}:{notice_id}:{subject}"


def disclosure_notification_id(case_ref: str, subject: str) -> str:
    digest = hashlib.sha256(case_ref.encode()).hexdigest()[:24]
    return f"legal-disclosure:{digest}:{subject}"


def message_id(notification_id: str, domain: str) -> str:
    """A stable Message-ID: a resend of the same notification carries the same id (receivers dedupe)."""
    digest = hashlib.sha256(b"notification:" + notification_id.encode()).hexdigest()[:40]
    return f"<{digest}@{domain}>"


def sender_domain(smtp_from: str) -> str:
    address = parseaddr(smtp_from)[1]
    return address.rpartition("@")[2] if "@" in address else "localhost"


# --- retry timing ------------------------------------------------------------------------------


#: The backoff has long reached EMAIL_RETRY_MAX_SECONDS by this many doublings; capping them keeps
#: `base * 2**n` a float (10.0 * 2**1024 raises OverflowError).
MAX_DOUBLINGS = 32


def retry_delay(
    attempts: int, base_seconds: float, max_seconds: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with jitter: half the step fixed, half random (so a burst spreads out).

    attempts is the number of attempts made so far (1 after the first failure).
    """
    step = min(max_seconds, base_seconds * (2 ** min(max(0, attempts - 1), MAX_DOUBLINGS)))
    return step / 2 + rand() * step / 2


def count_failure(in_a_row: int) -> int:
    """One more relay failure in a row, counted only as far as it still lengthens the backoff (a relay
    down for weeks must not grow the count without bound)."""
    return min(in_a_row + 1, MAX_DOUBLINGS + 1)


def gives_up(created_at: datetime, now: datetime, give_up_after: timedelta) -> bool:
    """A temporary failure that has lasted this long becomes permanent (RFC 5321 suggests days)."""
    return now - created_at >= give_up_after


# --- SMTP outcomes -----------------------------------------------------------------------------


class Failure(StrEnum):
    TEMPORARY = "temporary"  # 4xx to one email: try it again later
    PERMANENT = "permanent"  # 5xx to one email (RCPT or after DATA), or a message that can never be sent
    CONNECTION = "connection"  # the relay itself (connect, TLS, greeting, login, MAIL FROM): back off, reconnect


class RelaySessionFailed(Exception):
    """Setting up the session with the relay failed (connect, TLS, EHLO/HELO, AUTH). The cause is the
    client's exception; no email is to blame for it."""


def classify(exc: BaseException) -> tuple[Failure, str]:
    """Kept for callers not moved to `services.notifier.smtp_failures.classify` yet (delivery.py): it
    knows the SMTP client's exceptions, which this module, free of I/O, does not import."""
    from services.notifier import smtp_failures

    return smtp_failures.classify(exc)


# --- composing the message ---------------------------------------------------------------------


def unsubscribe_url(consent_public_url: str, token: str) -> str:
    return f"{consent_public_url.rstrip('/')}/v1/unsubscribe/{token}"


def manage_url(privacy_center_url: str, token: str) -> str:
    return f"{privacy_center_url.rstrip('/')}/manage/{token}"


def _header_value(name: str, value: str) -> str:
    """One header's value: no line breaks of its own (no header injection); RFC 2047 and folded when
    not ASCII."""
    value = " ".join(value.split())
    if value.isascii():
        return value
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


_EMAIL = re.compile(EMAIL_PATTERN)


class InvalidAddress(ValueError):
    """An address that must not go into a header: it could carry headers or a body of its own."""


def is_email_address(value: str) -> bool:
    """The contract's email format: no whitespace or control characters (so no CR/LF), one @."""
    return len(value) <= MAX_EMAIL and _EMAIL.fullmatch(value) is not None  # `$` alone allows a final \n


def _address(display_name: str | None, address: str) -> str:
    name = " ".join((display_name or "").split())
    return formataddr((name, address), charset="utf-8") if name else address


@lru_cache(maxsize=8)
def _from_header(sender: str) -> str:
    """The From header of SMTP_FROM (the same for every email: parsed once)."""
    sender_name, sender_address = parseaddr(sender)
    return _address(sender_name, sender_address or sender)


def _qp(text: str) -> bytes:
    """Quoted-printable (binascii: C speed), CRLF line ends, lines of at most 76 characters."""
    encoded = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    return encoded.replace(b"\n", b"\r\n")


def compose(
    rendered: RenderedEmail,
    *,
    sender: str,
    to_email: str,
    to_name: str | None,
    message_id: str,
    category: str,
    unsubscribe: str | None,
    date: datetime,
) -> bytes:
    """The message as SMTP-ready bytes: multipart/alternative, text first, HTML preferred by clients.

    Built directly rather than with `email.message` (which costs milliseconds per message); the
    boundary starts with "=_", which quoted-printable bodies can never contain.
    """
    if not is_email_address(to_email):
        raise InvalidAddress("the recipient's address is not a valid email address")
    headers = [
        ("Subject", _header_value("Subject", rendered.subject)),
        ("From", _from_header(sender)),
        ("To", _address(to_name, to_email)),
        ("Message-ID", message_id),
        ("Date", format_datetime(date)),
    ]
    if category == MARKETING and unsubscribe:
        headers += [("List-Unsubscribe", f"<{unsubscribe}>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
    else:
        headers.append(("Auto-Submitted", "auto-generated"))
    boundary = "=_" + hashlib.sha256(message_id.encode()).hexdigest()[:32]
    headers += [
        ("MIME-Version", "1.0"),
        ("Content-Language", rendered.locale),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("utf-8")
    delimiter = f"--{boundary}\r\n".encode()
    part_head = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    return b"".join(
        [
            head,
            b"\r\n",
            delimiter,
            part_head.format("plain").encode(),
            _qp(rendered.text),
            b"\r\n",
            delimiter,
            part_head.format("html").encode(),
            _qp(rendered.html),
            b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
    )


def needs_smtputf8(*addresses: str) -> bool:
    return not all(a.isascii() for a in addresses)


# --- rate limit --------------------------------------------------------------------------------


class TokenBucket:
    """Token bucket: `rate` tokens per second, at most `burst` saved up. `reserve` says how long to wait.

    The clock is injected so the arithmetic can be tested without sleeping.
    """

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate / 10)
        self.clock = clock
        self.tokens = self.burst
        self.updated = clock()

    def reserve(self) -> float:
        """Take one token; returns the seconds to wait before using it (0 when one was available)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def claim_batch_size(configured: int, rate_per_second: float, lease_seconds: float) -> int:
    """Never claim more than the rate limit lets through well inside the lease. Slow sends are not
    foreseen here: the round itself stops at TAKE_NEW_UNTIL and hands the rest back."""
    return max(1, min(configured, int(rate_per_second * lease_seconds / 4)))


#: A claimed batch spreads over one more sending lane (SMTP connection) per this many emails: a notice
#: to one person goes over one connection, a fan-out over all of them.
EMAILS_PER_LANE = 4


def lane_count(claimed: int, connections: int) -> int:
    """How many of the process's `connections` lanes send a batch of `claimed` emails."""
    return max(1, min(connections, claimed // EMAILS_PER_LANE))


def send_group_size(configured: int, burst: float) -> int:
    """Emails a lane sends under one transaction: EMAILS_PER_SEND_TRANSACTION, but never more than the
    rate limit's burst (a group goes out at once when its last token is due)."""
    return max(1, min(configured, int(burst)))


def group_share(pending: int, lanes: int, most: int) -> int:
    """How many of a batch's `pending` emails a lane takes as its next group: at most `most`, and half
    its share of what is left among `lanes`, so groups shrink as the batch runs out: the next batch is
    only dealt once every lane is done with this one, and a lane still sending a full group at the end
    would keep the others waiting (bench/README.md: the bench does not separate the effect from its
    spread)."""
    return min(pending, max(1, min(most, -(-pending // (2 * max(1, lanes))))))


#: A round's time budget as fractions of the lease, counted from just before its claim. No email is
#: started after TAKE_NEW_UNTIL (the untried rest goes back to the queue); a send (consent check, rate
#: wait, SMTP) still running at SEND_BY is cut; the rest of the lease is for the `sent` commit. So a row
#: is marked or handed back before the maintenance loop can take it as abandoned.
TAKE_NEW_UNTIL = 0.5
SEND_BY = 0.8


@dataclass(frozen=True)
class RoundDeadlines:
    """Absolute times (one monotonic clock) for one claimed batch."""

    take_new_until: float
    send_by: float
    lease_ends: float


def round_deadlines(claim_started: float, lease_seconds: float) -> RoundDeadlines:
    return RoundDeadlines(
        take_new_until=claim_started + lease_seconds * TAKE_NEW_UNTIL,
        send_by=claim_started + lease_seconds * SEND_BY,
        lease_ends=claim_started + lease_seconds,
    )
