"""Workload 5: merger notices fanned out to 2,000 and then 20,000 recipients: emails/s into the SMTP
sink, and the notifier's peak RSS at each size side by side (memory must stay flat as recipients grow).

The directory is emptied first (the bench's own database: earlier workloads leave a few thousand
recipients in it), then filled with this workload's own recipients, 2,000 for the first notice and
topped up to 20,000 for the second; each notice reaches exactly the directory. The notifier is
restarted once the registrations are in the directory, just before each notice, so each size's peak
RSS is that of a fresh process doing that one fan-out (not of taking in the registrations, nor what
the other size or an earlier workload left behind). Emails are counted by the
.eml files of this workload's recipients in the sink; each file name starts with its arrival time in
ns, so the rate is exact. Measurement stops at the run's cap (Sizes.fanout_cap_seconds) or after 20 s
without a new email; the rate is then over the emails that arrived.

The notifier runs with its relay protection lifted (SMTP_RATE_PER_SECOND far above any rate reached
here, see NOTIFIER_ENV), so the figure is the notifier's, not its limiter's, and with as many SMTP
connections as the best baseline used. A third notice to the same 20,000 goes out with two notifier
replicas side by side (same consumer group, one queue): their emails/s next to one replica's.

Baseline: a bare aiosmtplib send loop of a similar, pre-rendered message against the same sink over
1, 4 and 8 connections (the best of the three), run just before the big notice while the sink is idle.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg

from bench import events, kafka
from bench.core import Bench, Figure, Target
from bench.profile import CpuMeter, profiled
from schemas.topics import MERGER_NOTICE, USER_REGISTERED

WORKLOAD = "fanout"
#: The notifier as the bench runs it: no token bucket in the way, connections sized to the sink.
NOTIFIER_ENV = {"SMTP_RATE_PER_SECOND": "100000", "SMTP_CONNECTIONS": "8"}
STALL_SECONDS = 20.0
SECOND_REPLICA = "notifier-2"
#: Flat memory: the big fan-out's peak RSS within this factor of the small one's.
FLAT_RATIO = 1.25


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
    prefix = f"fan-{uuid.uuid4().hex[:6]}-"
    small, big = sizes.fanout_small_recipients, sizes.fanout_recipients
    await bench.start_service("notifier", extra_env=NOTIFIER_ENV)
    await kafka.wait_caught_up(bench.bootstrap, ["privacy-notifier"], USER_REGISTERED, timeout=300,
                               unknown_after=60)
    conn = await bench.db()
    try:
        await conn.execute("DELETE FROM notifier.recipients")  # only this workload's recipients from here on
        bench.erased = bench.registered  # so registered - erased stays the directory's size
        small_run = await _notice(bench, conn, prefix, 0, small, phase=f"{WORKLOAD}-{small}")
        baseline = await smtp_baseline(bench.endpoints.smtp_host, bench.endpoints.smtp_port,
                                       sizes.smtp_baseline_emails)
        big_run = await _notice(bench, conn, prefix, small, big, phase=WORKLOAD)
        pair_run = await _notice(bench, conn, prefix, big, big, phase=f"{WORKLOAD}-2-replicas", replicas=2)
    finally:
        await conn.close()
        bench.stop_service(SECOND_REPLICA)
    samples = big_run.pop("samples")
    small_run.pop("samples")
    pair_run.pop("samples")
    rate, expected, delivered = big_run["emails_per_second"], big_run["recipients"], big_run["delivered"]
    notes = [f"{delivered:,} of {expected:,} mailed when measurement stopped"] if delivered < expected else []
    notes.append(f"{NOTIFIER_ENV['SMTP_CONNECTIONS']} SMTP connections, rate limit lifted")
    note = "; ".join(notes)
    bench.add(Figure(WORKLOAD, f"merger fan-out to {expected:,} recipients", "emails/s", rate,
                     max(baseline.values()), "bare aiosmtplib loop, best of 1/4/8 conns", Target(">=", 0.8, on="ratio"),
                     note=note))
    pair_note = (f"{pair_run['delivered']:,} of {pair_run['recipients']:,} mailed when measurement stopped"
                 if pair_run["delivered"] < pair_run["recipients"] else "")
    bench.add(Figure(WORKLOAD, "  same, two notifier replicas", "emails/s", pair_run["emails_per_second"],
                     rate, "one replica", Target(">=", 1.0, on="ratio"), note=pair_note))
    small_note = (f"{small_run['delivered']:,} of {small_run['recipients']:,} mailed when measurement stopped"
                  if small_run["delivered"] < small_run["recipients"] else "")
    bench.add(Figure(WORKLOAD, f"  merger fan-out to {small_run['recipients']:,} recipients", "emails/s",
                     small_run["emails_per_second"], note=small_note))
    peaks = {str(run["recipients"]): run["notifier_peak_rss_mb"] for run in (small_run, big_run)}
    bench.add(Figure(WORKLOAD, f"notifier peak RSS, fan-out to {expected:,} vs {small_run['recipients']:,}", "MB",
                     big_run["notifier_peak_rss_mb"], small_run["notifier_peak_rss_mb"],
                     f"fan-out to {small_run['recipients']:,}", Target("<", FLAT_RATIO, on="ratio"),
                     note="fresh notifier process for each size"))
    bench.detail(WORKLOAD, recipients=expected, delivered=delivered, seconds=big_run["seconds"],
                 emails_per_second=rate, smtp_baseline=baseline,
                 notifier_peak_rss_mb_by_recipients=peaks, by_size=[small_run, big_run],
                 two_replicas=pair_run, notifier_env=NOTIFIER_ENV,
                 where_the_time_goes={
                     "notice published -> last email (s)": round(big_run["seconds"], 2),
                     "smtp send seconds (notifier histogram sum)": _sum(samples, "privacy_email_send_seconds_sum"),
                     "accepted -> sent commit, mean (ms; the crash window)": _mean_ms(
                         samples, "privacy_email_unconfirmed_seconds"),
                     "emails sent, every template (notifier counter)": _sum(samples, "privacy_emails_sent_total"),
                     **big_run["cpu"],
                     "two replicas: postgres CPU µs per email": pair_run["cpu"]["postgres CPU µs per email"],
                     "two replicas: machine busy share": pair_run["cpu"]["machine busy share"],
                     "bare SMTP loop, 1 / 4 / 8 connections (emails/s)":
                         " / ".join(f"{r:.0f}" for r in baseline.values()),
                 })


async def _notice(bench: Bench, conn: asyncpg.Connection, prefix: str, have: int, recipients: int,
                  phase: str, replicas: int = 1) -> dict[str, Any]:
    """Top the directory up from `have` to `recipients` of our own, restart the notifier (and start a
    second replica if `replicas` is 2), publish one merger notice, count its emails (under RSS phase
    `phase`) until all arrived, the cap or a stall."""
    # The previous notice may not have been sent in full inside its window: its rest would be counted
    # with this one's emails (same recipients), so the queue is drained first.
    await _drained(conn)
    subjects = [f"{prefix}{i:05d}" for i in range(have, recipients)]
    if subjects:
        await kafka.produce(bench.bootstrap, USER_REGISTERED, events.registrations(subjects))
        bench.registered += len(subjects)
    await bench.start_service("notifier", extra_env=NOTIFIER_ENV)
    await kafka.wait_caught_up(bench.bootstrap, ["privacy-notifier"], USER_REGISTERED, timeout=300,
                               unknown_after=60)
    in_directory = await conn.fetchval("SELECT count(*) FROM notifier.recipients")
    if in_directory != recipients:
        raise RuntimeError(f"{in_directory} recipients in the directory, {recipients} expected")
    # A fresh process for the notice: its peak RSS is then that of this fan-out alone, not of taking
    # in the registrations (or of what the other size or an earlier workload left behind).
    bench.stop_service("notifier")
    notifier = await bench.start_service("notifier", extra_env=NOTIFIER_ENV)
    if replicas == 2:
        await bench.start_service("notifier", key=SECOND_REPLICA, extra_env=NOTIFIER_ENV)
    maildir = bench.endpoints.mail_dir
    before = set(ours(maildir, prefix))
    transaction = f"bench-{uuid.uuid4().hex[:8]}"
    started_ns = time.time_ns()
    assert notifier.process is not None
    cpu = CpuMeter(notifier.process.pid, bench.postgres_pid)
    # Profiled at 20 Hz (within noise) for the one-replica notice only.
    with bench.phase(phase), profiled(bench, phase, *(["notifier"] if replicas == 1 else []), rate=20):
        await kafka.produce(bench.bootstrap, MERGER_NOTICE, [events.merger_notice(transaction)])
        delivered, last = 0, time.monotonic()
        cap = time.monotonic() + bench.sizes.fanout_cap_seconds
        while delivered < recipients and time.monotonic() - last < STALL_SECONDS and time.monotonic() < cap:
            await asyncio.sleep(0.25)
            now = len(ours(maildir, prefix)) - len(before)
            if now != delivered:
                delivered, last = now, time.monotonic()
        samples = await notifier.metrics()
        if replicas == 2:
            second = await bench.services[SECOND_REPLICA].metrics()
            samples = {key: value + second.get(key, 0.0) for key, value in samples.items()}
    new = [n for n in ours(maildir, prefix) if n not in before]
    if not new:
        raise RuntimeError(f"no email arrived within {STALL_SECONDS:.0f}s of the merger notice "
                           f"(notifier log: {notifier.log_path})")
    seconds = (max(arrival_ns(n) for n in new) - started_ns) / 1e9
    spent = cpu.seconds()
    cpu_us = {"notifier (first replica) CPU µs per email": round(1e6 * spent["service_cpu_seconds"] / len(new), 1),
              "postgres CPU µs per email": round(1e6 * spent["postgres_cpu_seconds"] / len(new), 1),
              "machine busy share": spent["machine_busy_share"]}
    peak = bench.rss.peaks.get("notifier", {}).get(phase)
    return {"recipients": recipients, "delivered": len(new), "seconds": round(seconds, 2),
            "emails_per_second": len(new) / seconds, "notifier_peak_rss_mb": peak, "samples": samples,
            "cpu": cpu_us}


async def _drained(conn: asyncpg.Connection, timeout: float = 600.0) -> None:
    """Wait until the notifier has no email queued or being sent."""
    deadline = time.monotonic() + timeout
    while await conn.fetchval("SELECT count(*) FROM notifier.emails WHERE status IN ('queued', 'sending')"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the notifier's queue was not drained within {timeout:.0f}s")
        await asyncio.sleep(0.5)


def ours(maildir: Path, prefix: str) -> list[str]:
    """This workload's emails (the sink names each file after its recipient)."""
    return [n for n in mail_files(maildir) if f"-{prefix}" in n]


def _mean_ms(samples: dict[tuple[str, str], float], name: str) -> float | None:
    count = _sum(samples, f"{name}_count")
    return round(1000 * _sum(samples, f"{name}_sum") / count, 2) if count else None


def _sum(samples: dict[tuple[str, str], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)
