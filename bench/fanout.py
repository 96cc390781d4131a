"""Workload 5: a merger notice fanned out to 20,000 recipients, emails/s into the SMTP sink.

Measurement stops at the run's cap (Sizes.fanout_cap_seconds) or after 20 s without a new email; the rate
is then over the emails that arrived.

Recipients are every adult registered in this run (the notifier's directory fills from
user-registered), topped up to the target count. One merger-notice is published and the sink's
.eml files are counted; each file name starts with its arrival time in ns, so the rate is exact.
Baseline: a bare aiosmtplib send loop of a similar, pre-rendered message against the same sink over
1, 4 and 8 connections (the best of the three), run just before the notice while the sink is idle.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from bench import events, kafka
from bench.core import Bench, Figure, Target
from schemas.topics import MERGER_NOTICE, USER_REGISTERED

WORKLOAD = "fanout"
STALL_SECONDS = 20.0


def mail_files(maildir: Path) -> list[str]:
    try:
        return [e.name for e in os.scandir(maildir) if e.name.endswith(".eml")]
    except FileNotFoundError:
        return []


def arrival_ns(name: str) -> int:
    return int(name.split("-", 1)[0])


def sample_message() -> bytes:
    """A multipart (text + HTML) message about the size of a merger notice, rendered once."""
    message = EmailMessage()
    message["From"] = "ISOPARTNER AB <privacy@isopartner.se>"
    message["To"] = "smtp-baseline@bench.example.com"
    message["Subject"] = "ISOPARTNER AB går samman med Bench Holding AB"
    body = "Hej,\n\nISOPARTNER AB går samman med Bench Holding AB den 1 januari. " * 12
    message.set_content(body)
    message.add_alternative(f"<html><body><p>{body}</p></body></html>", subtype="html")
    return message.as_bytes()


async def smtp_loop(host: str, port: int, count: int, body: bytes) -> None:
    """One connection, `count` messages back to back (sendmail of ready bytes: no per-message rendering)."""
    client = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False)
    await client.connect()
    try:
        for i in range(count):
            await client.sendmail("privacy@isopartner.se", [f"smtp-baseline-{i}@bench.example.com"], body)
    finally:
        await client.quit()


async def smtp_baseline(host: str, port: int, count: int) -> dict[str, float]:
    """emails/s of the bare loop over 1, 4 and 8 parallel connections (count messages each time)."""
    body = sample_message()
    rates = {}
    for connections in (1, 4, 8):
        began = time.perf_counter()
        await asyncio.gather(*(smtp_loop(host, port, count // connections, body) for _ in range(connections)))
        rates[f"{connections}_connections"] = connections * (count // connections) / (time.perf_counter() - began)
    return rates


async def run(bench: Bench) -> None:
    sizes = bench.sizes
    notifier = await bench.start_service("notifier")
    missing = max(0, sizes.fanout_recipients - (bench.registered - bench.erased))
    subjects = [f"fan-{uuid.uuid4().hex[:6]}-{i:05d}" for i in range(missing)]
    if subjects:
        await kafka.produce(bench.bootstrap, USER_REGISTERED, events.registrations(subjects))
        bench.registered += len(subjects)
    expected = bench.registered - bench.erased

    await kafka.wait_caught_up(bench.bootstrap, ["privacy-notifier"], USER_REGISTERED, timeout=300,
                               unknown_after=60)
    baseline = await smtp_baseline(bench.endpoints.smtp_host, bench.endpoints.smtp_port, sizes.smtp_baseline_emails)
    maildir = bench.endpoints.mail_dir
    before = set(mail_files(maildir))
    transaction = f"bench-{uuid.uuid4().hex[:8]}"
    started_ns = time.time_ns()
    with bench.phase(WORKLOAD):
        await kafka.produce(bench.bootstrap, MERGER_NOTICE, [events.merger_notice(transaction)])
        delivered, last = 0, time.monotonic()
        cap = time.monotonic() + sizes.fanout_cap_seconds
        while delivered < expected and time.monotonic() - last < STALL_SECONDS and time.monotonic() < cap:
            await asyncio.sleep(0.25)
            now = len(mail_files(maildir)) - len(before)
            if now != delivered:
                delivered, last = now, time.monotonic()
        samples = await notifier.metrics()
    new = [n for n in mail_files(maildir) if n not in before]
    if not new:
        raise RuntimeError(f"no email arrived within {STALL_SECONDS:.0f}s of the merger notice "
                           f"(notifier log: {notifier.log_path})")
    seconds = (max(arrival_ns(n) for n in new) - started_ns) / 1e9
    rate = len(new) / seconds
    note = f"{len(new):,} of {expected:,} mailed when measurement stopped" if len(new) < expected else ""
    bench.add(Figure(WORKLOAD, f"merger fan-out to {expected:,} recipients", "emails/s", rate,
                     max(baseline.values()), "bare aiosmtplib loop, best of 1/4/8 conns", Target(">=", 300), note=note))
    bench.detail(WORKLOAD, recipients=expected, delivered=len(new), seconds=seconds, emails_per_second=rate,
                 smtp_baseline=baseline, where_the_time_goes={
                     "notice published -> last email (s)": round(seconds, 2),
                     "smtp send seconds (notifier histogram sum)": _sum(samples, "privacy_email_send_seconds_sum"),
                     "emails sent, every template (notifier counter)": _sum(samples, "privacy_emails_sent_total"),
                     "bare SMTP loop, 1 / 4 / 8 connections (emails/s)":
                         " / ".join(f"{r:.0f}" for r in baseline.values()),
                 })


def _sum(samples: dict[tuple[str, str], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)
