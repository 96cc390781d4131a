"""The log and dead-letter scrubber: no address survives, in any script; ordinary text does."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privacy_runtime.deadletters import dead_letter_headers
from privacy_runtime.logs import JsonFormatter, scrub

INTERNATIONAL = [
    "åsa.öberg@exempel.se",
    "jörg@bücher.de",
    "用户@例子.广告",
    "пользователь@пример.рф",
    "info@пример.xn--p1ai",
    "उपयोगकर्ता@उदाहरण.कॉम",
    "θεος@παράδειγμα.ελ",
    "ahmed@مثال.مصر",
]
ASCII = ["p@x.se", "first.last+tag@sub.example.co.uk", "a_b-c%d@host-1.example"]


@pytest.mark.parametrize("address", INTERNATIONAL + ASCII)
@pytest.mark.parametrize("template", ["{}", "mail {} failed", "key '{}' does not match", '{{"email": "{}"}}',
                                      "<{}>", "({}).", "to={}, cc=x"])
def test_an_address_in_any_script_is_scrubbed(address: str, template: str) -> None:
    text = template.format(address)
    scrubbed = scrub(text)
    assert address not in scrubbed
    assert address.split("@")[0] not in scrubbed and address.split("@")[1] not in scrubbed
    assert "<email>" in scrubbed


def test_ordinary_text_is_left_alone() -> None:
    for text in ("pkg@1.2.3 installed", "user-registered[3]@1200 ok", "no address here, åäö", "a @ b", "x@y"):
        assert scrub(text) == text


@given(st.text(max_size=300))
def test_scrubbing_never_grows_an_address_back(text: str) -> None:
    assert scrub(scrub(text)) == scrub(text)


def test_log_records_and_dead_letter_headers_carry_no_international_address() -> None:
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, "refused %s", ("jörg@bücher.de",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "refused <email>"
    headers = dead_letter_headers([], "key 'пользователь@пример.рф' does not match", "topic", 0, 1)
    assert "пример".encode() not in b"".join(value for _, value in headers)
