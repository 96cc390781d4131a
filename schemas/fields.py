"""Constrained field types shared by the envelope and the event models.

Design rules (they apply to every model of the contract):

* Strings are strict (no number -> string coercion), bounded, and may not contain
  control characters (single-line fields) or control characters other than tab,
  CR and LF (multi-line fields). NUL is always refused: PostgreSQL rejects it in
  ``text`` and ``jsonb``, so letting it through would wedge a consumer.
* Timestamps are RFC 3339 strings with an offset (or aware ``datetime``); naive
  values and other inputs (numbers, unix times) are refused.
* Dates are ``YYYY-MM-DD`` strings (or ``date``, never ``datetime``).
* UUIDs are canonical 8-4-4-4-12 hex strings (or ``uuid.UUID``), any version.
* Free-form JSON objects (``privacy-acks.export``, ``notification-requested.params``)
  are limited in encoded size and depth.

Inputs may be Python objects or JSON text: both paths accept the same values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
)

# --- patterns (valid both as Rust regex for pydantic and ECMA 262 regex for JSON Schema) -----

SUBJECT_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
SINGLE_LINE_PATTERN = r"^[^\x00-\x1f\x7f]*$"
MULTI_LINE_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: A light check only (no dependency on email-validator): one ``@``, a dot in the domain,
#: no whitespace or control characters. Non-ASCII (IDN, SMTPUTF8) addresses are accepted.
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f.]+(\.[^@\s\x00-\x1f\x7f.]+)+$"
URL_PATTERN = r"^https?://[^\s/?#\x00-\x1f\x7f]+[^\s\x00-\x1f\x7f]*$"
#: RFC 3986 URI-reference characters (no whitespace); enough to refuse garbage.
URI_REFERENCE_PATTERN = r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$"
VERSION_PATTERN = r"^[A-Za-z0-9._:+-]{1,64}$"
FIELD_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
TEMPLATE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
NOTIFICATION_ID_PATTERN = r"^[A-Za-z0-9._:/-]{1,256}$"
AUDIT_ACTION_PATTERN = r"^[a-z0-9][a-z0-9_.:-]{0,63}$"

# --- limits ----------------------------------------------------------------------------------

MAX_NAME = 200
MAX_PHONE = 64
MAX_EMAIL = 254
MAX_LABEL = 200
MAX_REF = 256
MAX_URL = 2048
MAX_SUMMARY = 5000
MAX_DETAIL = 5000
MAX_BASIS = 1000
MAX_CATEGORY = 100
MAX_CATEGORIES = 50
MAX_FIELD_VALUE = 1000
MAX_FIELDS = 50
MAX_PARAMS = 50
MAX_PARAMS_BYTES = 64 * 1024
MAX_EXPORT_BYTES = 900 * 1024  # stays under Kafka's default 1 MiB message size with the envelope
#: A whole export sent in parts (``privacy-acks`` ``part``/``parts``) may be up to 64 MiB per system.
MAX_EXPORT_TOTAL_BYTES = 64 * 1024 * 1024
#: Parts of one chunked export: 64 MiB in slices of at least 1 KiB.
MAX_EXPORT_PARTS = 65536
#: One slice of a chunked export; each message on every topic stays under 256 KiB anyway.
MAX_EXPORT_CHUNK = 256 * 1024
SHA256_HEX_PATTERN = r"^[0-9a-fA-F]{64}$"
MAX_JSON_DEPTH = 32

# --- ISO 3166-1 alpha-2 (officially assigned codes; same set as tzdata's iso3166.tab) -----------

ISO_COUNTRIES: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
    EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
    LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
    NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()
)

_RFC3339 = re.compile(RFC3339_PATTERN)
_DATE = re.compile(DATE_PATTERN)
_UUID = re.compile(UUID_PATTERN)


def _timestamp_input(value: object) -> object:
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.fullmatch(value)):
        return value
    raise ValueError("expected an RFC 3339 timestamp with offset, e.g. 2024-05-01T12:00:00+02:00")


def _date_input(value: object) -> object:
    if isinstance(value, datetime):
        raise ValueError("expected a date, not a datetime")
    if isinstance(value, date) or (isinstance(value, str) and _DATE.fullmatch(value)):
        return value
    raise ValueError("expected a date as YYYY-MM-DD")


def _uuid_input(value: object) -> object:
    if isinstance(value, UUID) or (isinstance(value, str) and _UUID.fullmatch(value)):
        return value
    raise ValueError("expected a UUID as 8-4-4-4-12 hex digits")


def _country(value: str) -> str:
    if value not in ISO_COUNTRIES:
        raise ValueError("not an assigned ISO 3166-1 alpha-2 country code")
    return value


def _json_depth_and_nul(value: JsonValue, max_depth: int) -> None:
    stack: list[tuple[JsonValue, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise ValueError(f"nested deeper than {max_depth} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    raise ValueError("NUL character in an object key")
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and "\x00" in item:
            raise ValueError("NUL character in a string")


def bounded_json(max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Callable[[Any], Any]:
    """An after-validator limiting a JSON value's depth and its compact UTF-8 encoded size."""

    def check(value: Any) -> Any:
        _json_depth_and_nul(value, max_depth)
        try:
            encoded = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except ValueError as exc:  # NaN / Infinity
            raise ValueError("not representable as strict JSON (NaN or Infinity)") from exc
        if len(encoded.encode("utf-8")) > max_bytes:
            raise ValueError(f"larger than {max_bytes} bytes when encoded as JSON")
        return value

    return check


def _text(min_length: int, max_length: int, *, multiline: bool = False) -> StringConstraints:
    return StringConstraints(
        strict=True,
        min_length=min_length,
        max_length=max_length,
        pattern=MULTI_LINE_PATTERN if multiline else SINGLE_LINE_PATTERN,
    )


def _pattern(pattern: str, max_length: int | None = None) -> StringConstraints:
    return StringConstraints(strict=True, pattern=pattern, max_length=max_length)


# --- the types ---------------------------------------------------------------------------------

SubjectId = Annotated[str, _pattern(SUBJECT_PATTERN)]
"""The platform's opaque user id; also the Kafka key of subject topics."""

Identifier = Annotated[str, _pattern(SUBJECT_PATTERN)]
"""An opaque id with the same character set as a subject id (``merger-notice.transaction_id``)."""

Version = Annotated[str, _pattern(VERSION_PATTERN)]
Email = Annotated[str, _pattern(EMAIL_PATTERN, MAX_EMAIL)]
ShortText = Annotated[str, _text(0, MAX_NAME)]
Phone = Annotated[str, _text(0, MAX_PHONE)]
Label = Annotated[str, _text(1, MAX_LABEL)]
Ref = Annotated[str, _text(1, MAX_REF)]
Summary = Annotated[str, _text(1, MAX_SUMMARY, multiline=True)]
Detail = Annotated[str, _text(0, MAX_DETAIL, multiline=True)]
Basis = Annotated[str, _text(1, MAX_BASIS, multiline=True)]
Category = Annotated[str, _text(1, MAX_CATEGORY)]
Categories = Annotated[list[Category], Field(max_length=MAX_CATEGORIES)]
Url = Annotated[str, _pattern(URL_PATTERN, MAX_URL)]
TemplateName = Annotated[str, _pattern(TEMPLATE_PATTERN)]
NotificationId = Annotated[str, _pattern(NOTIFICATION_ID_PATTERN)]
AuditAction = Annotated[str, _pattern(AUDIT_ACTION_PATTERN)]

FieldName = Annotated[str, _pattern(FIELD_NAME_PATTERN)]
FieldValue = Annotated[str, _text(0, MAX_FIELD_VALUE, multiline=True)]
FieldMap = Annotated[dict[FieldName, FieldValue], Field(max_length=MAX_FIELDS)]
"""Field name -> new value (rectification corrections and ``rectify`` command fields)."""

ParamName = Annotated[str, _pattern(PARAM_NAME_PATTERN)]
Params = Annotated[
    dict[ParamName, JsonValue],
    Field(max_length=MAX_PARAMS),
    AfterValidator(bounded_json(MAX_PARAMS_BYTES)),
]
ExportObject = Annotated[dict[str, JsonValue], AfterValidator(bounded_json(MAX_EXPORT_BYTES))]
ExportPart = Annotated[int, Field(strict=True, ge=1, le=MAX_EXPORT_PARTS)]
"""``part`` (1..n) and ``parts`` (n) of a chunked export."""
ExportChunk = Annotated[str, _text(1, MAX_EXPORT_CHUNK, multiline=True)]
"""A consecutive slice of the UTF-8 JSON text of a whole export object (JSON text has no raw control
characters but tab, CR and LF)."""
Sha256Hex = Annotated[str, _pattern(SHA256_HEX_PATTERN)]

CountryCode = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^[A-Z]{2}$"),
    AfterValidator(_country),
    WithJsonSchema({"type": "string", "enum": sorted(ISO_COUNTRIES)}),
]
"""ISO 3166-1 alpha-2, uppercase, officially assigned codes only."""

Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_timestamp_input),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN}),
]
"""RFC 3339 with offset; serialised back as RFC 3339 (``Z`` for UTC)."""

ContractDate = Annotated[
    date,
    BeforeValidator(_date_input),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]

Uuid = Annotated[
    UUID,
    BeforeValidator(_uuid_input),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": UUID_PATTERN}),
]
"""Any UUID version; parsed to ``uuid.UUID``, serialised as lowercase 8-4-4-4-12."""
