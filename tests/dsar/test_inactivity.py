"""Retention of inactive subjects: the pure rules, and the data map's machine-readable retention."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import yaml

from privacy_runtime.datamap import (
    DEFAULT_INACTIVE_SUBJECT_RETENTION_DAYS,
    DataMapError,
    load_data_map,
    parse_data_map,
)
from privacy_runtime.settings import DEFAULT_DATA_MAP
from schemas.enums import ErasureGround, RequestedVia
from services.dsar import inactivity

NOW = datetime(2030, 6, 1, 12, tzinfo=UTC)


def test_latest_activity_keeps_the_newest_time_per_subject() -> None:
    events = [("a", NOW - timedelta(days=3)), ("b", NOW - timedelta(days=9)), ("a", NOW - timedelta(days=1)),
              ("a", NOW - timedelta(days=5))]
    assert inactivity.latest_activity(events, NOW) == {"a": NOW - timedelta(days=1), "b": NOW - timedelta(days=9)}


def test_a_time_ahead_of_the_clock_counts_as_now() -> None:
    assert inactivity.latest_activity([("a", NOW + timedelta(hours=20))], NOW) == {"a": NOW}


def test_only_the_subjects_own_requests_count_as_activity() -> None:
    assert inactivity.counts_as_activity(RequestedVia.WEB_FORM.value)
    assert inactivity.counts_as_activity(RequestedVia.EMAIL.value)
    assert not inactivity.counts_as_activity(RequestedVia.INTERNAL.value)


def test_inactive_only_strictly_past_the_retention() -> None:
    days = 1095
    assert inactivity.inactive_cutoff(NOW, days) == NOW - timedelta(days=days)
    assert inactivity.is_inactive(NOW - timedelta(days=days, seconds=1), NOW, days)
    assert not inactivity.is_inactive(NOW - timedelta(days=days), NOW, days)
    assert not inactivity.is_inactive(NOW - timedelta(days=10), NOW, days)


def test_request_id_is_derived_from_subject_and_last_activity() -> None:
    at = NOW - timedelta(days=2000)
    same = inactivity.retention_request_id("u1", at)
    assert inactivity.retention_request_id("u1", at) == same
    # The same moment in another offset is the same request.
    assert inactivity.retention_request_id("u1", at.astimezone(timezone(timedelta(hours=2)))) == same
    assert inactivity.retention_request_id("u2", at) != same
    assert inactivity.retention_request_id("u1", at + timedelta(microseconds=1)) != same
    assert uuid.UUID(same).version == 5
    assert inactivity.retention_event_id(same) == inactivity.retention_event_id(same) != same


def test_the_erasure_request_is_internal_verified_and_retention_expired() -> None:
    request_id = inactivity.retention_request_id("u1", NOW)
    event = inactivity.retention_erasure(request_id)
    assert str(event.request_id) == request_id
    assert event.ground is ErasureGround.RETENTION_EXPIRED
    assert event.identity_verified is True
    assert event.requested_via is RequestedVia.INTERNAL


# --- the data map -----------------------------------------------------------------------------------


def _doc() -> dict[str, Any]:
    with DEFAULT_DATA_MAP.open(encoding="utf-8") as handle:
        doc: dict[str, Any] = yaml.safe_load(handle)
    return doc


def test_the_bundled_data_map_keeps_inactive_subjects_three_years() -> None:
    assert load_data_map(DEFAULT_DATA_MAP).inactive_subject_retention_days == 1095
    assert DEFAULT_INACTIVE_SUBJECT_RETENTION_DAYS == 1095


def test_operators_change_the_retention_in_the_file() -> None:
    doc = _doc()
    doc["inactive_subject_retention_days"] = 730
    assert parse_data_map(doc).inactive_subject_retention_days == 730
    del doc["inactive_subject_retention_days"]
    assert parse_data_map(doc).inactive_subject_retention_days == DEFAULT_INACTIVE_SUBJECT_RETENTION_DAYS


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (3, "at least 30"),
        (0, "at least 30"),
        (-1095, "at least 30"),
        ("3 years", "whole number of days"),
        (1095.5, "whole number of days"),
        (True, "whole number of days"),
        (None, "whole number of days"),
    ],
)
def test_a_bad_retention_is_refused_when_the_map_is_parsed(value: object, message: str) -> None:
    doc = _doc()
    doc["inactive_subject_retention_days"] = value
    with pytest.raises(DataMapError, match="inactive_subject_retention_days") as error:
        parse_data_map(doc)
    assert message in str(error.value)
