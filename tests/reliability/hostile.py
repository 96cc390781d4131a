"""The hostile-input corpus: messages and HTTP requests that must each end in a dead letter or a 4xx."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from deploy.k8s.generate import SERVICES
from schemas.events import PrivacyAck
from schemas.examples import example_event
from schemas.registry import key_for
from tests.helpers import TEST_ADMIN_TOKEN


@dataclass(frozen=True)
class MessageCase:
    topic: str
    name: str
    key: bytes | None
    value: bytes | None


def _valid(topic: str) -> dict[str, Any]:
    event = example_event(topic)
    doc = json.loads(event.model_dump_json())
    doc["id"] = str(uuid.uuid4())
    doc["time"] = datetime.now(UTC).isoformat()
    return doc


def _key(topic: str, doc: dict[str, Any]) -> bytes:
    return key_for(topic, example_event(topic)).encode() if "subject" not in doc else str(doc["subject"]).encode()


ENUM_FIELDS = {
    "user-registered": "locale", "consent-changed": "purpose", "erasure-requested": "ground",
    "dsar-requested": "right", "merger-notice": "kind", "policy-changed": "material",
    "legal-disclosure": "recipient_country", "privacy-acks": "status", "notification-requested": "template",
    "privacy-commands.consent": "action", "privacy-commands.dsar": "action", "privacy-commands.notifier": "action",
    "dsar-status": "status",
}


def _first_field(doc: dict[str, Any]) -> str:
    return next(iter(doc["data"]))


def _mutations() -> list[tuple[str, Callable[[str, dict[str, Any]], tuple[bytes | None, bytes | None] | None]]]:
    def dumps(doc: dict[str, Any]) -> bytes:
        return json.dumps(doc).encode()

    def with_env(field: str, value: Any) -> Callable[[str, dict[str, Any]], tuple[bytes | None, bytes | None]]:
        def mutate(topic: str, doc: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
            key = _key(topic, doc)
            doc[field] = value
            return key, dumps(doc)
        return mutate

    def with_data(change: Callable[[dict[str, Any]], None]) -> Callable[[str, dict[str, Any]], tuple[bytes | None, bytes | None]]:
        def mutate(topic: str, doc: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
            change(doc["data"])
            return _key(topic, doc), dumps(doc)
        return mutate

    def set_first(value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda data: data.__setitem__(next(iter(data)), value)

    def deep_nesting(topic: str, doc: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
        # Built as text: the json module itself cannot encode this deep.
        first = _first_field(doc)
        doc["data"][first] = "__DEEP__"
        depth = 5000
        return _key(topic, doc), dumps(doc).replace(b'"__DEEP__"', b'{"a":' * depth + b'"x"' + b"}" * depth)

    def unknown_enum(topic: str, doc: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
        doc["data"][ENUM_FIELDS[topic]] = "not-a-known-value'; DROP TABLE x;--"
        return _key(topic, doc), dumps(doc)

    def raw(value: bytes | None) -> Callable[[str, dict[str, Any]], tuple[bytes | None, bytes | None]]:
        return lambda topic, doc: (_key(topic, doc), value)

    return [
        ("broken json", raw(b'{"specversion": "1.0", "id": ')),
        ("empty value", raw(b"")),
        ("json array", raw(b"[]")),
        ("json string", raw(b'"hello"')),
        ("invalid utf-8", raw(b'{"specversion": "1.0", "id": "\xff\xfe"}')),
        ("huge payload", with_data(set_first("x" * 300_000))),
        ("deep nesting", deep_nesting),
        ("wrong type in data", with_data(set_first(12345))),
        ("unknown enum value", unknown_enum),
        ("missing required field", with_data(lambda d: d.pop(next(iter(d))))),
        ("extra data field", with_data(lambda d: d.__setitem__("unexpected", "x"))),
        ("extra envelope attribute", with_env("Bad-Attribute", "x")),
        ("control characters", with_data(set_first("line\x00break\x07"))),
        ("template injection in subject", with_env("subject", "{{7*7}}")),
        ("sql injection in subject", with_env("subject", "x'; DROP TABLE subjects;--")),
        ("forged subject path", with_env("subject", "../../etc/passwd")),
        ("subject too long", with_env("subject", "a" * 200)),
        ("time far in the past", with_env("time", "1970-01-01T00:00:00+00:00")),
        ("time far in the future", with_env("time", "2999-01-01T00:00:00+00:00")),
        ("naive timestamp", with_env("time", "2026-01-01T00:00:00")),
        ("wrong specversion", with_env("specversion", "0.3")),
        ("type of another topic", with_env("type", "not-this-topic")),
        ("missing id", lambda topic, doc: (_key(topic, doc), dumps({k: v for k, v in doc.items() if k != "id"}))),
        ("key disagrees with subject", lambda topic, doc: (b"someone-else", dumps(doc))),
    ]


#: Well-formed messages whose fields contradict each other: (topic, name, data fields to set).
CONTRADICTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("consent-changed", "gpc signal that grants", {"channel": "gpc", "granted": True}),
    ("privacy-acks", "retained without a basis", {"status": "retained", "retained_basis": None}),
    # Exports answered in parts: the four fields of a part come together, numbered within their count.
    ("privacy-acks", "export part without its digest",
     {"status": "done", "retained_basis": None, "part": 1, "parts": 2, "export_chunk": "{", "export_sha256": None}),
    ("privacy-acks", "export part beyond its count",
     {"status": "done", "retained_basis": None, "part": 3, "parts": 2, "export_chunk": "{",
      "export_sha256": "0" * 64}),
    ("privacy-acks", "export part that failed",
     {"status": "failed", "retained_basis": None, "part": 1, "parts": 1, "export_chunk": "{}",
      "export_sha256": "0" * 64}),
    ("privacy-acks", "export part with an inline export too",
     {"status": "done", "retained_basis": None, "part": 1, "parts": 1, "export_chunk": "{}",
      "export_sha256": "0" * 64, "export": {"a": 1}}),
    ("privacy-acks", "export part numbered zero",
     {"status": "done", "retained_basis": None, "part": 0, "parts": 1, "export_chunk": "{}",
      "export_sha256": "0" * 64}),
    ("privacy-acks", "export in more parts than 64 MiB allows",
     {"status": "done", "retained_basis": None, "part": 1, "parts": 10_000_000, "export_chunk": "{}",
      "export_sha256": "0" * 64}),
    ("privacy-acks", "export digest that is not hex",
     {"status": "done", "retained_basis": None, "part": 1, "parts": 1, "export_chunk": "{}",
      "export_sha256": "z" * 64}),
    ("notification-requested", "sealed secrets that do not open",
     {"params": {"request_id": "R-1", "sealed_secrets": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}),
    ("dsar-requested", "objection without the processing objected to",
     {"right": "objection", "details": {"corrections": None, "circumstance": None, "processing": None,
                                        "format": None}}),
]


def forged_acks() -> list[tuple[str, PrivacyAck]]:
    """Valid answers to commands nobody issued: accepted (not dead-lettered), and settle nothing. A system
    answering for another guesses an id; a part of an export claims a digest its text does not have."""
    chunk = '{"system":"accounts","records":[]}'
    return [
        ("forged done for a guessed command id",
         PrivacyAck(command_id=uuid.uuid4(), system="accounts", status="done")),
        ("export part of a command nobody issued, digest wrong",
         PrivacyAck(command_id=uuid.uuid4(), system="accounts", status="done", part=1, parts=1,
                    export_chunk=chunk, export_sha256=hashlib.sha256(b"something else").hexdigest())),
        ("export part claiming the largest count",
         PrivacyAck(command_id=uuid.uuid4(), system="partners", status="done", part=65536, parts=65536,
                    export_chunk="}", export_sha256="f" * 64)),
    ]


def consumers_of(topic: str) -> set[str]:
    """The services that consume `topic` (each must dead-letter what it refuses)."""
    return {service.name for service in SERVICES if topic in service.consumes}


#: Every topic some service consumes: the contract's inbound topics, requests to the notifier, and the
#: internal systems' command topics.
CONSUMED = tuple(sorted({topic for service in SERVICES for topic in service.consumes}))


def message_cases() -> list[MessageCase]:
    cases = []
    for topic in CONSUMED:
        for name, mutate in _mutations():
            result = mutate(topic, _valid(topic))
            if result is None:
                continue
            key, value = result
            cases.append(MessageCase(topic, name, key, value))
    for topic, name, fields in CONTRADICTIONS:
        doc = _valid(topic)
        doc["data"].update(fields)
        cases.append(MessageCase(topic, name, _key(topic, doc), json.dumps(doc).encode()))
    return cases


#: The operator token of the test stack: cases that get past the token and must still be refused.
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


@dataclass(frozen=True)
class HttpCase:
    service: str
    method: str
    path: str
    name: str
    params: dict[str, str] | None = None
    body: bytes | None = None
    headers: dict[str, str] | None = None
    #: The exact status the case must get, where one is fixed (otherwise any 4xx).
    expect: int | None = None
    #: Sent chunked, with no Content-Length: the body's size is known only by reading it.
    chunked: bool = False


#: The services the corpus sends to (the `system` fixture's names), as `x-service` in schemas/openapi.yaml.
WEB_SERVICES = ("consent", "dsar", "notifier")
OPENAPI = Path(__file__).resolve().parents[2] / "schemas" / "openapi.yaml"
METHODS = ("get", "post", "put", "patch", "delete")
#: JSON nested deeper than any parser's recursion limit (was a RecursionError, answered 500).
DEEP_JSON = b"[" * 60_000
#: Twice the contract's 1 MiB limit on request bodies (was aiohttp's refusal, answered 500).
HUGE_BODY = b'{"code": "' + b"1" * (2 * 1024 * 1024) + b'"}'


def body_cases(token: str) -> list[HttpCase]:
    """Every documented endpoint of every web service sent a body of 2 MiB, and every one that reads a JSON
    body sent one nested too deeply to parse (with the operator token where the endpoint needs one, so the
    body is what it judges)."""
    doc = yaml.safe_load(OPENAPI.read_text())
    ids = {"request_id": str(uuid.uuid4()), "subject_id": "nobody-hostile", "token": "A" * 40}
    cases = []
    for path, item in doc["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            services = WEB_SERVICES if op["x-service"] == "all" else (op["x-service"],)
            services = tuple(s for s in services if s in WEB_SERVICES)
            headers = {"Content-Type": "application/json"}
            if op.get("security"):
                headers["Authorization"] = f"Bearer {token}"
            for service in services:
                concrete = path.format(**{k: v for k, v in ids.items() if "{" + k + "}" in path})
                # Only an endpoint that reads a JSON body parses one (elsewhere a body under the limit is
                # not read at all): there, one it cannot parse is a 400.
                if "requestBody" in op:
                    cases.append(HttpCase(service, method.upper(), concrete, "json nested 60000 deep",
                                          body=DEEP_JSON, headers=headers, expect=400))
                cases.append(HttpCase(service, method.upper(), concrete, "2 MiB body",
                                      body=HUGE_BODY, headers=headers, expect=413))
                if "requestBody" in op:
                    cases.append(HttpCase(service, method.upper(), concrete, "2 MiB body, chunked",
                                          body=HUGE_BODY, headers=headers, expect=413, chunked=True))
    return cases


def http_cases() -> list[HttpCase]:
    c = "consent"
    d = "dsar"
    rid = str(uuid.uuid4())
    return [
        HttpCase(c, "GET", "/v1/decisions", "no parameters"),
        HttpCase(c, "GET", "/v1/decisions", "unknown purpose", {"subject": "u1", "purpose": "spam"}),
        HttpCase(c, "GET", "/v1/decisions", "sql in purpose", {"subject": "u1", "purpose": "x' OR 1=1--"}),
        HttpCase(c, "GET", "/v1/decisions", "bad subject", {"subject": "../../x", "purpose": "analytics"}),
        HttpCase(c, "GET", "/v1/decisions", "huge subject", {"subject": "a" * 5000, "purpose": "analytics"}),
        HttpCase(c, "GET", "/v1/decisions", "unknown system", {"subject": "u1", "purpose": "analytics", "system": "nope"}),
        HttpCase(c, "GET", "/v1/decisions", "unknown subject", {"subject": "nobody-xyz", "purpose": "analytics"}),
        HttpCase(c, "GET", "/v1/decisions", "template injection", {"subject": "{{7*7}}", "purpose": "analytics"}),
        HttpCase(c, "GET", "/v1/subjects/%7B%7B7*7%7D%7D/consents", "template injection in path"),
        HttpCase(c, "GET", "/v1/subjects/nobody-xyz/consents", "unknown subject"),
        HttpCase(c, "GET", "/v1/unsubscribe/forged", "forged token"),
        HttpCase(c, "POST", "/v1/unsubscribe/forged", "forged token one-click", body=b"List-Unsubscribe=One-Click"),
        HttpCase(c, "POST", "/v1/unsubscribe/" + "a" * 3000, "huge token"),
        HttpCase(c, "GET", "/v1/unsubscribe/eyJzIjoidTEiLCJwIjoibWFya2V0aW5nX2VtYWlsIn0.AAAA.BBBB", "tampered token"),
        HttpCase(d, "GET", f"/v1/requests/{rid}", "unknown request"),
        HttpCase(d, "GET", "/v1/requests/not-a-uuid", "malformed request id"),
        HttpCase(d, "POST", f"/v1/requests/{rid}/verify", "verify unknown request", body=b'{"code": "123456"}'),
        HttpCase(d, "POST", f"/v1/requests/{rid}/verify", "verify broken json", body=b'{"code": '),
        HttpCase(d, "POST", f"/v1/requests/{rid}/verify", "verify wrong type", body=b'{"code": 123456}'),
        HttpCase(d, "POST", f"/v1/requests/{rid}/verify", "verify huge body", body=b'{"code": "' + b"1" * 100_000 + b'"}'),
        HttpCase(d, "GET", "/v1/exports/forged-token", "forged export token"),
        HttpCase(d, "GET", "/v1/exports/" + "a" * 3000, "huge export token"),
        HttpCase(d, "POST", "/v1/exports/forged-token-forged-token", "forged export token download"),
        HttpCase(d, "POST", "/v1/exports/forged-token-forged-token", "forged export token download in a browser",
                 body=b"x" * 2_000_000, headers={"Accept": "text/html", "Content-Type": "application/x-www-form-urlencoded"}),
        HttpCase(d, "GET", "/v1/exports/forged-token-forged-token", "export page in an unknown language",
                 params={"lang": "<script>"}, headers={"Accept-Language": "x" * 5000}),
        HttpCase(c, "GET", "/v1/unsubscribe/forged", "unsubscribe page in an unknown language",
                 params={"lang": "{{7*7}}"}, headers={"Accept-Language": ";q=,,,;;q=abc"}),
        HttpCase(d, "GET", "/v1/admin/requests", "admin without token"),
        HttpCase(d, "GET", "/v1/admin/requests", "admin wrong token", headers={"Authorization": "Bearer wrong"}),
        HttpCase(d, "GET", "/v1/admin/requests", "admin wrong scheme", headers={"Authorization": "Basic dGVzdA=="}),
        HttpCase(d, "POST", f"/v1/admin/requests/{rid}/approve", "approve without token"),
        HttpCase(d, "POST", f"/v1/admin/requests/{rid}/reject", "reject without token", body=b'{"reason": "x"}'),
        HttpCase(d, "POST", f"/v1/admin/requests/{rid}/extend", "extend without token", body=b'{"months": 2, "reason": "x"}'),
        # Operator free text (sealed with the subject's key once accepted): refused when it is not text.
        HttpCase(d, "POST", f"/v1/admin/requests/{rid}/reject", "reject with a NUL in the reason",
                 body=b'{"reason": "Rut \\u0000 Raderasson"}', headers=ADMIN),
        HttpCase(d, "POST", f"/v1/admin/requests/{rid}/reject", "reject with a 100 KiB reason",
                 body=b'{"reason": "' + b"R" * 100_000 + b'"}', headers=ADMIN),
        HttpCase(d, "POST", f"/v1/admin/requests/{rid}/extend", "extend with a reason that is not text",
                 body=b'{"months": 1, "reason": {"name": "Rut"}}', headers=ADMIN),
        HttpCase(d, "POST", f"/v1/admin/requests/{rid}/extend", "extend with months as text",
                 body=b'{"months": "1", "reason": "lawyer"}', headers=ADMIN),
        HttpCase(d, "GET", "/v1/internal/subjects/u1/requests", "internal read without token"),
        HttpCase(d, "GET", "/v1/internal/subjects/u1/requests", "internal read wrong token",
                 headers={"Authorization": "Bearer wrong"}),
        HttpCase("notifier", "POST", "/v1/internal/subjects/lookup", "lookup without token",
                 body=b'{"email": "a@example.org"}'),
        HttpCase("notifier", "POST", "/v1/internal/subjects/lookup", "lookup wrong scheme",
                 body=b'{"email": "a@example.org"}', headers={"Authorization": "Basic dGVzdA=="}),
    ]


# --- the people-facing pages' forms (privacy center) -------------------------------------------------

#: Script and markup that must come back escaped wherever a page shows what was sent.
SCRIPT = "<script>alert(1)</script>\"'><img src=x onerror=alert(1)>{{7*7}}"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class FormCase:
    """A hostile body for a form: `{csrf}` in it is replaced by a valid token of the session, so the
    case reaches the form's own checks (a case without `{csrf}` must be refused by the CSRF check)."""

    name: str
    body: bytes
    content_type: str | None = FORM


def form_cases(fields: list[str]) -> list[FormCase]:
    """Hostile bodies for a form with these field names: oversized, wrong encodings and types, too
    many fields, script in every field."""
    from urllib.parse import urlencode

    every = urlencode({"csrf_token": "{csrf}", **dict.fromkeys(fields, SCRIPT)}).replace("%7Bcsrf%7D", "{csrf}")
    return [
        FormCase("oversized", b"csrf_token={csrf}&" + b"&".join(f.encode() + b"=" + b"x" * 40_000 for f in fields[:1])),
        FormCase("json body", b'{"csrf_token": "{csrf}"}', "application/json"),
        FormCase("multipart", b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--", "multipart/form-data; boundary=b"),
        FormCase("not utf-8", b"csrf_token={csrf}&" + fields[0].encode() + b"=%FF%FE"),
        FormCase("control characters", b"csrf_token={csrf}&" + fields[0].encode() + b"=a%00b%1B"),
        FormCase("too many fields", b"csrf_token={csrf}&" + b"&".join(b"f%d=1" % i for i in range(200))),
        FormCase("field repeated as a list", b"csrf_token={csrf}&" + b"&".join(f.encode() + b"=1&" + f.encode() + b"=2" for f in fields)),
        FormCase("numbers and empties", b"csrf_token={csrf}&" + b"&".join(f.encode() + b"=" for f in fields) + b"&right=7"),
        FormCase("no csrf, script everywhere", every.replace("csrf_token=%7Bcsrf%7D&", "").replace("csrf_token={csrf}&", "").encode()),
        FormCase("script in every field", every.encode()),
    ]
