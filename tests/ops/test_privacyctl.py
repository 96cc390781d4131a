"""privacyctl without servers: help text, validation errors, output formatting and actionable errors.

HTTP answers come from httpx.MockTransport; "unreachable" cases use a closed loopback port, which is
refused at once. Nothing here needs Kafka, PostgreSQL or a running service.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from privacyctl import main
from privacyctl.errors import redact_url
from privacyctl.http import ServiceClient
from privacyctl.kafka import replay_source, strip_error_headers
from schemas import topics

runner = CliRunner()

CONSENT_CHANGE = [
    "--subject",
    "usr_1",
    "--set",
    "purpose=marketing_email",
    "--set",
    "granted=false",
    "--set",
    "channel=support",
    "--set",
    "policy_version=2021-10-30",
]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "CONSENT_URL",
        "DSAR_URL",
        "ADMIN_TOKEN",
        "DATABASE_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "PRIVACYCTL_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PRIVACYCTL_TIMEOUT", "5")
    yield


def invoke(*args: str) -> Any:
    return runner.invoke(main.app, list(args), prog_name="privacyctl")


def mock_service(
    monkeypatch: pytest.MonkeyPatch,
    handler: Callable[[httpx.Request], httpx.Response],
    seen: list[httpx.Request] | None = None,
) -> None:
    def record(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return handler(request)

    original = ServiceClient.__init__

    def init(self: ServiceClient, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.transport = httpx.MockTransport(record)

    monkeypatch.setattr(ServiceClient, "__init__", init)


# --- help --------------------------------------------------------------------------------------


def test_root_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("publish", "consents", "decision", "cases", "dlq", "audit", "example", "topics"):
        assert command in result.output
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.output and "CONSENT_URL" in result.output


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["publish"], ["--file", "--set", "--subject", "--dry-run", "key:=json"]),
        (["consents"], ["SUBJECT", "--json"]),
        (["decision"], ["PURPOSE", "--system"]),
        (["cases", "list"], ["--status", "--overdue"]),
        (["cases", "approve"], ["REQUEST_ID"]),
        (["cases", "show"], ["REQUEST_ID", "--json"]),
        (["cases", "lift"], ["REQUEST_ID", "18(3)"]),
        (["cases", "reject"], ["--reason", "IMY"]),
        (["cases", "extend"], ["--months", "--reason"]),
        (["dlq", "replay"], ["--limit", "--dry-run", "privacyctl-replay"]),
        (["audit", "verify"], ["--service", "consent", "notifier", "all"]),
    ],
)
def test_command_help(command: list[str], expected: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    for text in expected:
        assert text in result.output


def test_no_arguments_shows_help() -> None:
    result = invoke("cases")
    assert "list" in result.output and "approve" in result.output


# --- publish: validation -----------------------------------------------------------------------


def test_unknown_topic_lists_the_contract_topics() -> None:
    result = invoke("publish", "consent-change", "--set", "a=b", "--subject", "u")
    assert result.exit_code == 2
    assert "unknown topic 'consent-change'" in result.output
    assert "consent-changed" in result.output and "privacy-commands.billing" in result.output


def test_invalid_data_names_each_field() -> None:
    result = invoke(
        "publish", "consent-changed", "--subject", "usr_1", "--set", "purpose=marketing", "--set", "granted=maybe"
    )
    assert result.exit_code == 2
    out = result.output
    assert "data.purpose" in out and "marketing_email" in out
    assert "data.granted" in out
    assert "data.channel: Field required" in out


def test_missing_subject() -> None:
    result = invoke("publish", "consent-changed", *CONSENT_CHANGE[2:])
    assert result.exit_code == 2
    assert "--subject" in result.output


def test_bad_subject_is_refused() -> None:
    result = invoke("publish", "consent-changed", "--subject", "bad subject!", *CONSENT_CHANGE[2:])
    assert result.exit_code == 2
    assert "subject" in result.output


def test_no_data() -> None:
    result = invoke("publish", "consent-changed", "--subject", "usr_1")
    assert result.exit_code == 2
    assert "privacyctl example consent-changed" in result.output


def test_malformed_set() -> None:
    result = invoke("publish", "consent-changed", "--subject", "usr_1", "--set", "purpose")
    assert result.exit_code == 2
    assert "key=value" in result.output
    result = invoke("publish", "consent-changed", "--subject", "usr_1", "--set", "granted:=nope")
    assert result.exit_code == 2
    assert "not JSON" in result.output


def test_time_needs_an_offset() -> None:
    result = invoke("publish", "consent-changed", *CONSENT_CHANGE, "--time", "2024-05-01T10:00:00", "--dry-run")
    assert result.exit_code == 2
    assert "offset" in result.output


# --- publish: building events (dry run) --------------------------------------------------------


def dry_run(*args: str) -> dict[str, Any]:
    result = invoke("publish", *args, "--dry-run")
    assert result.exit_code == 0, result.output
    text = result.stdout
    return dict(json.loads(text))


def test_dry_run_prints_a_valid_event() -> None:
    event = dry_run("consent-changed", *CONSENT_CHANGE, "--id", "evt-1")
    assert event["type"] == "consent-changed" and event["subject"] == "usr_1" and event["id"] == "evt-1"
    assert event["specversion"] == "1.0" and event["source"] == "urn:isopartner:privacyctl"
    assert event["data"]["granted"] is False  # JSON, not the string "false"


def test_set_falls_back_to_a_string_where_the_model_wants_one() -> None:
    event = dry_run(
        "policy-changed",
        "--set",
        "version=2",
        "--set",
        "effective_date=2024-06-01",
        "--set",
        "material=true",
        "--set",
        "summary_sv=Ny policy",
        "--set",
        "summary_en=New policy",
        "--set",
        "url=https://www.isopartner.se/integritetspolicy",
    )
    assert event["data"]["version"] == "2"
    assert event["data"]["material"] is True
    assert "subject" not in event  # policy-changed has no subject; its key is the version


def test_dotted_keys_and_json_values() -> None:
    request_id = "6f1c3a52-8a61-4a43-9d0e-0d7a3a4f3b10"
    event = dry_run(
        "dsar-requested",
        "--subject",
        "usr_1",
        "--set",
        f"request_id={request_id}",
        "--set",
        "right=portability",
        "--set",
        "identity_verified=false",
        "--set",
        "requested_via=web_form",
        "--set",
        "details.format=csv",
    )
    assert event["data"]["details"]["format"] == "csv"
    event = dry_run(
        "user-registered",
        "--subject",
        "usr_2",
        "--set",
        "email=a@example.com",
        "--set",
        'consents:=[{"purpose": "analytics", "granted": true}]',
        "--set",
        "source=web",
    )
    assert event["data"]["consents"] == [{"purpose": "analytics", "granted": True}]


def test_file_with_data_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(main.events.example_data("consent-changed")))
    event = dry_run("consent-changed", "--file", str(path), "--subject", "usr_1", "--set", "granted=true")
    assert event["data"]["granted"] is True
    assert event["data"]["purpose"] == main.events.example_data("consent-changed")["purpose"]


def test_file_with_a_whole_event(tmp_path: Path) -> None:
    first = dry_run("consent-changed", *CONSENT_CHANGE, "--id", "evt-file")
    path = tmp_path / "event.json"
    path.write_text(json.dumps(first))
    again = dry_run("consent-changed", "--file", str(path))
    assert again["id"] == "evt-file" and again["subject"] == "usr_1" and again["data"] == first["data"]
    result = invoke("publish", "dsar-requested", "--file", str(path), "--dry-run")
    assert result.exit_code == 2 and "not 'dsar-requested'" in result.output


def test_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = invoke("publish", "consent-changed", "--subject", "usr_1", "--file", str(bad))
    assert result.exit_code == 2 and "not valid JSON" in result.output
    result = invoke("publish", "consent-changed", "--subject", "usr_1", "--file", str(tmp_path / "missing.json"))
    assert result.exit_code == 2 and "cannot read" in result.output


def test_command_topic_checks_the_system() -> None:
    data = main.events.example_data("privacy-commands.billing")
    args = [f"--set={k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in data.items()]
    event = dry_run("privacy-commands.billing", "--subject", "usr_1", *args)
    assert event["data"]["system"] == "billing"
    result = invoke("publish", "privacy-commands.accounts", "--subject", "usr_1", *args, "--dry-run")
    assert result.exit_code == 2


def test_every_example_publishes_in_a_dry_run(tmp_path: Path) -> None:
    for topic in topics.DATA_TOPICS:
        path = tmp_path / f"{topic}.json"
        result = invoke("example", topic)
        assert result.exit_code == 0, result.output
        path.write_text(result.stdout)
        extra = ["--subject", "usr_1"] if topic not in topics.SUBJECTLESS_TOPICS else []
        result = invoke("publish", topic, "--file", str(path), *extra, "--dry-run")
        assert result.exit_code == 0, f"{topic}: {result.output}"


def test_topics_lists_data_and_dead_letter_topics() -> None:
    result = invoke("topics")
    assert result.exit_code == 0
    assert result.stdout.split() == [*topics.DATA_TOPICS, *topics.DLQ_TOPICS]


def test_unreachable_kafka_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{closed_port()}")
    result = invoke("publish", "consent-changed", *CONSENT_CHANGE)
    assert result.exit_code == 1
    assert "cannot reach Kafka" in result.output and "KAFKA_BOOTSTRAP_SERVERS" in result.output
    assert "Traceback" not in result.output


# --- consent -----------------------------------------------------------------------------------


def test_consents_table(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []
    answer = {
        "subject": "usr_1",
        "jurisdiction": "SE",
        "restricted": False,
        "objections": [],
        "purposes": [
            {
                "purpose": "marketing_email",
                "allowed": False,
                "basis": "consent",
                "reason": "withdrawn",
                "consent": {"purpose": "marketing_email", "granted": False, "channel": "email_footer"},
            },
            {"purpose": "service_delivery", "allowed": True, "basis": "contract", "reason": None, "consent": None},
        ],
        "history": [],
    }
    mock_service(monkeypatch, lambda r: httpx.Response(200, json=answer), seen)
    result = invoke("consents", "usr_1")
    assert result.exit_code == 0, result.output
    assert seen[0].url == httpx.URL("http://127.0.0.1:6066/v1/subjects/usr_1/consents")
    lines = result.output.splitlines()
    assert "jurisdiction SE" in lines[0]
    assert any(
        line.split()[:3] == ["marketing_email", "no", "consent"] and "withdrawn (email_footer)" in line
        for line in lines
    )
    result = invoke("consents", "usr_1", "--json")
    assert json.loads(result.output) == answer


def test_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []
    mock_service(
        monkeypatch,
        lambda r: httpx.Response(
            200,
            json={
                "subject": "usr_1",
                "purpose": "marketing_email",
                "system": "marketing_email",
                "allowed": False,
                "basis": "consent",
                "reason": "consent withdrawn",
            },
        ),
        seen,
    )
    monkeypatch.setenv("CONSENT_URL", "http://consent.example:8080/")
    result = invoke("decision", "usr_1", "marketing_email", "--system", "marketing_email")
    assert result.exit_code == 0, result.output
    assert seen[0].url.host == "consent.example" and seen[0].url.path == "/v1/decisions"
    assert dict(seen[0].url.params) == {"subject": "usr_1", "purpose": "marketing_email", "system": "marketing_email"}
    assert "marketing_email on marketing_email for usr_1: denied" in result.output
    assert "reason: consent withdrawn" in result.output


def test_service_error_message_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    mock_service(monkeypatch, lambda r: httpx.Response(404, json={"error": "unknown subject usr_9"}))
    result = invoke("decision", "usr_9", "analytics")
    assert result.exit_code == 1
    assert "answered 404: unknown subject usr_9" in result.output


def test_unreachable_consent_service_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSENT_URL", f"http://127.0.0.1:{closed_port()}")
    result = invoke("consents", "usr_1")
    assert result.exit_code == 1
    assert "cannot reach the consent service" in result.output and "CONSENT_URL" in result.output
    assert "connection refused" in result.output


# --- cases -------------------------------------------------------------------------------------


def test_cases_need_the_admin_token() -> None:
    result = invoke("cases", "list")
    assert result.exit_code == 2
    assert "ADMIN_TOKEN" in result.output
    # where a person running make run finds it: both files, as make run prints
    assert "var/stack.env" in result.output and "var/secrets.env" in result.output


def test_cases_list_sends_filters_and_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "s3cret")
    seen: list[httpx.Request] = []
    rows = [
        {
            "request_id": "r-1",
            "right": "access",
            "status": "in_progress",
            "due_at": "2024-06-01T10:00:00Z",
            "extended": False,
        }
    ]
    mock_service(monkeypatch, lambda r: httpx.Response(200, json={"requests": rows}), seen)
    result = invoke("cases", "list", "--status", "in_progress", "--overdue")
    assert result.exit_code == 0, result.output
    assert seen[0].headers["Authorization"] == "Bearer s3cret"
    assert seen[0].url.path == "/v1/admin/requests"
    assert dict(seen[0].url.params) == {"status": "in_progress", "overdue": "true"}
    assert "REQUEST_ID" in result.output and "r-1" in result.output and "in_progress" in result.output
    assert "s3cret" not in result.output


def test_cases_actions_send_the_contract_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "t")
    seen: list[httpx.Request] = []
    mock_service(monkeypatch, lambda r: httpx.Response(200, json={"request_id": "r-1", "status": "rejected"}), seen)
    assert invoke("cases", "approve", "r-1").exit_code == 0
    result = invoke("cases", "reject", "r-1", "--reason", "manifestly unfounded (Art. 12(5))")
    assert result.exit_code == 0 and "status rejected" in result.output
    assert invoke("cases", "extend", "r-1", "--months", "2", "--reason", "complex request").exit_code == 0
    assert [(r.method, r.url.path) for r in seen] == [
        ("POST", "/v1/admin/requests/r-1/approve"),
        ("POST", "/v1/admin/requests/r-1/reject"),
        ("POST", "/v1/admin/requests/r-1/extend"),
    ]
    assert json.loads(seen[1].content) == {"reason": "manifestly unfounded (Art. 12(5))"}
    assert json.loads(seen[2].content) == {"months": 2, "reason": "complex request"}


def test_cases_show_prints_each_systems_command_and_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "t")
    case = {
        "request_id": "r-1", "right": "erasure", "status": "awaiting_systems", "overdue": True,
        "subject": "usr_1", "received_at": "2026-01-01T10:00:00+00:00", "due_at": "2026-03-01T10:00:00+00:00",
        "extended": True, "extension_months": 1, "extension_reason": "many systems",
        "retained": [{"system": "billing", "basis": "Bokföringslagen 7:2"}],
        "steps": [
            {"system": "accounts", "action": "erase", "purpose": None, "attempt": 1, "outcome": "done",
             "command_id": "c-1"},
            {"system": "billing", "action": "erase", "purpose": None, "attempt": 3, "outcome": None,
             "command_id": "c-2"},
        ],
    }
    seen: list[httpx.Request] = []
    mock_service(monkeypatch, lambda r: httpx.Response(200, json=case), seen)
    result = invoke("cases", "show", "r-1")
    assert result.exit_code == 0, result.output
    assert (seen[0].method, seen[0].url.path) == ("GET", "/v1/admin/requests/r-1")
    lines = result.output.splitlines()
    assert lines[0] == "case r-1: erasure, awaiting_systems (overdue)"
    assert "extended by 1 month(s): many systems" in lines[1]
    assert "retained by billing: Bokföringslagen 7:2" in result.output
    assert "commands: 2, answered 1, waiting 1" in result.output
    billing = next(line for line in lines if line.startswith("billing"))
    assert billing.split() == ["billing", "erase", "-", "3", "waiting", "c-2"]


def test_cases_lift_posts_to_the_lift_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "t")
    seen: list[httpx.Request] = []
    mock_service(monkeypatch, lambda r: httpx.Response(200, json={"request_id": "r-1", "status": "completed"}), seen)
    result = invoke("cases", "lift", "r-1")
    assert result.exit_code == 0 and "r-1: lift accepted; status completed" in result.output
    assert (seen[0].method, seen[0].url.path) == ("POST", "/v1/admin/requests/r-1/lift")


def test_case_action_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "t")
    result = invoke("cases", "reject", "r-1")
    assert result.exit_code == 2 and "--reason" in result.output
    result = invoke("cases", "reject", "r-1", "--reason", "  ")
    assert result.exit_code == 2 and "must not be empty" in result.output
    result = invoke("cases", "extend", "r-1", "--months", "3", "--reason", "x")
    assert result.exit_code == 2 and "--months" in result.output


def test_wrong_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "wrong")
    mock_service(monkeypatch, lambda r: httpx.Response(401, json={"error": "missing or wrong bearer token"}))
    result = invoke("cases", "list")
    assert result.exit_code == 1
    assert "refused the operator token" in result.output and "ADMIN_TOKEN" in result.output


# --- dead letters and audit --------------------------------------------------------------------


def test_replay_topic_validation() -> None:
    assert replay_source("consent-changed") == "consent-changed"
    assert replay_source("consent-changed.dlq") == "consent-changed"
    result = invoke("dlq", "replay", "privacy-commands.billing")
    assert result.exit_code == 2
    assert "no dead-letter topic" in result.output and "consent-changed" in result.output
    result = invoke("dlq", "replay", "consent-changed", "--limit", "0")
    assert result.exit_code == 2


def test_replay_drops_only_the_error_headers() -> None:
    headers = [
        ("traceparent", b"00-1"),
        ("x-error", b"bad"),
        ("x-original-topic", b"t"),
        ("x-original-partition", b"0"),
        ("x-original-offset", b"7"),
        ("x-tenant", b"a"),
    ]
    assert strip_error_headers(headers) == [("traceparent", b"00-1"), ("x-tenant", b"a")]
    assert strip_error_headers(None) == []


def test_audit_verify_unreachable_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://privacy:hunter2@127.0.0.1:{closed_port()}/privacy")
    result = invoke("audit", "verify", "--service", "consent")
    assert result.exit_code == 1
    assert "cannot connect to PostgreSQL" in result.output and "DATABASE_URL" in result.output
    assert "hunter2" not in result.output


def test_audit_verify_rejects_unknown_service() -> None:
    result = invoke("audit", "verify", "--service", "billing")
    assert result.exit_code == 2


def test_redact_url() -> None:
    assert redact_url("postgresql://u:pw@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact_url("postgresql://h/d") == "postgresql://h/d"


def test_audit_verify_reports_each_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    from privacyctl import audit

    async def fake_verify(dsn: str, services: tuple[str, ...], timeout: float = 10.0,
                          kafka: object = None) -> list[audit.ChainReport]:
        assert services == ("consent", "dsar", "notifier") and kafka is not None, "compared with privacy-audit"
        return [
            audit.ChainReport("consent", 12, published="privacy-audit: 7 published entries compared (newest seq 12)"),
            audit.ChainReport(
                "dsar", 30, [(5, "content does not match its hash (row was altered)"), (9, "sequence gap: expected 8")]
            ),
            audit.ChainReport("notifier", 0),
        ]

    monkeypatch.setattr(audit, "verify", fake_verify)
    result = invoke("audit", "verify")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "consent: 12 entries checked, chain intact",
        "  privacy-audit: 7 published entries compared (newest seq 12)",
        "dsar: 30 entries checked, 2 problem(s):",
        "  seq 5: content does not match its hash (row was altered)",
        "  seq 9: sequence gap: expected 8",
        "notifier: 0 entries checked, chain intact",
    ]
