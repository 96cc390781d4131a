"""Contract events as Kafka (key, value) bytes, built fast (orjson) and spot-checked against the models.

Building 100k events through pydantic would take longer than consuming them; each generator
validates its first event with the service's own decoder, so a contract change fails loudly here
instead of filling a dead-letter topic.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from privacy_runtime.codec import decode
from schemas.topics import CONSENT_CHANGED, ERASURE_REQUESTED, MERGER_NOTICE, PRIVACY_ACKS, USER_REGISTERED
from tests.helpers import downstream_answer

SOURCE = "urn:isopartner:bench"
#: Every purpose a consent-changed event may name; channels without `gpc` (one event = one ledger row).
PURPOSES = ("analytics", "profiling", "third_party_marketing", "marketing_email", "partner_sharing",
            "group_sharing", "personalization", "service_improvement")
CHANNELS = ("email_footer", "preference_center", "support", "cookie_banner", "api")
COUNTRIES = ("SE", "SE", "SE", "NO", "DE", "GB", "US", "US", None)


def envelope(topic: str, subject: str | None, data: dict[str, Any], when: datetime,
             event_id: str | None = None) -> bytes:
    event: dict[str, Any] = {
        "specversion": "1.0", "id": event_id or str(uuid.uuid4()), "type": topic, "source": SOURCE,
        "time": when.isoformat(), "datacontenttype": "application/json", "data": data,
    }
    if subject is not None:
        event["subject"] = subject
    return orjson.dumps(event)


def _checked(topic: str, records: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    if records:
        decode(topic, *records[0])  # raises if the contract moved
    return records


def consent_changes(subjects: Sequence[str], count: int, *, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """`count` consent changes spread over `subjects`, each a distinct event-time (1 ms apart)."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=2)
    records = []
    for i in range(count):
        subject = subjects[i % len(subjects)]
        data = {"purpose": rng.choice(PURPOSES), "granted": rng.random() < 0.5,
                "channel": rng.choice(CHANNELS), "policy_version": "2021-10-30"}
        records.append((subject.encode(),
                        envelope(CONSENT_CHANGED, subject, data, start + timedelta(milliseconds=i))))
    return _checked(CONSENT_CHANGED, records)


def withdrawal(subject: str, purpose: str = "marketing_email") -> tuple[bytes, bytes]:
    data = {"purpose": purpose, "granted": False, "channel": "email_footer", "policy_version": "2021-10-30"}
    return subject.encode(), envelope(CONSENT_CHANGED, subject, data, datetime.now(UTC))


def registrations(subjects: Sequence[str], *, grants: Sequence[str] = (),
                  countries: Sequence[str | None] = COUNTRIES, seed: int = 11) -> list[tuple[bytes, bytes]]:
    """One adult `user-registered` per subject, an hour ago, country drawn from `countries`."""
    rng = random.Random(seed)
    when = datetime.now(UTC) - timedelta(hours=1)
    records = []
    for subject in subjects:
        data = {
            "email": f"{subject}@bench.example.com", "name": "Bench User", "locale": rng.choice(("sv", "en")),
            "country": rng.choice(countries),
            "birth_date": "1980-05-17", "source": "web",
            "consents": [{"purpose": p, "granted": True} for p in grants],
        }
        records.append((subject.encode(), envelope(USER_REGISTERED, subject, data, when)))
    return _checked(USER_REGISTERED, records)


def erasure(subject: str, request_id: str) -> tuple[bytes, bytes]:
    data = {"request_id": request_id, "ground": "consent_withdrawn", "identity_verified": True,
            "requested_via": "web_form"}
    return _checked(ERASURE_REQUESTED, [(subject.encode(),
                                         envelope(ERASURE_REQUESTED, subject, data, datetime.now(UTC)))])[0]


def ack(subject: str, command: dict[str, Any]) -> tuple[bytes, bytes]:
    """The answer a well-behaved downstream system gives at once (billing keeps its records)."""
    data = downstream_answer(subject, command, export={"system": command["system"], "records": []})
    return subject.encode(), envelope(PRIVACY_ACKS, subject, data, datetime.now(UTC))


def merger_notice(transaction_id: str) -> tuple[bytes, bytes]:
    data = {"transaction_id": transaction_id, "kind": "merger", "counterparty": "Bench Holding AB",
            "effective_date": (datetime.now(UTC) + timedelta(days=30)).date().isoformat(),
            "data_categories": ["contact", "account"], "notice_url": "https://www.isopartner.se/merger"}
    return _checked(MERGER_NOTICE, [(transaction_id.encode(),
                                     envelope(MERGER_NOTICE, None, data, datetime.now(UTC)))])[0]
