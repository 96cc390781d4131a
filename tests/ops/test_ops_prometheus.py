"""Alert rules: promtool checks and unit tests pass, and each alert the operators need is there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.metric_names import promql_metric_names
from tests.ops.conftest import need_tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules_test.yaml"
DOCS = ROOT / "docs" / "operations.md"

#: The alerts of the contract's issue and the metric each one watches.
REQUIRED = {
    "PrivacyCaseDueSoon": "privacy_cases_due_soon",
    "PrivacyCaseOverdue": "privacy_cases_overdue",
    # Nobody worked the review queue: the month runs on for cases only an operator can move.
    "PrivacyCasesAwaitingReview": "privacy_cases_awaiting_review",
    "PrivacyDeadLettersGrowing": "privacy_events_dead_lettered_total",
    "PrivacyCommandsOverdue": "privacy_commands_overdue",
    "PrivacyConsumerLagGrowing": "privacy_consumer_lag_messages",
    "PrivacyEmailsFailing": "privacy_emails_failed_total",
    "PrivacySmtpRetrying": "privacy_emails_retried_total",
    # Still firing when a long outage has made retries too rare for PrivacySmtpRetrying.
    "PrivacyEmailsDelayed": "privacy_email_oldest_due_seconds",
}


def alerts() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = need_tool("promtool")
    return subprocess.run([str(binary), *args], capture_output=True, text=True, check=False, cwd=ROOT)


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_rule_unit_tests() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_fails_a_wrong_expectation(tmp_path: Path) -> None:
    """The unit tests are not vacuous: a changed expected summary fails."""
    (tmp_path / "rules.yaml").write_text(RULES.read_text())
    broken = RULES_TEST.read_text().replace('summary: "2 open access case(s)', 'summary: "3 open access case(s)')
    assert broken != RULES_TEST.read_text()
    (tmp_path / "rules_test.yaml").write_text(broken)
    result = promtool("test", "rules", str(tmp_path / "rules_test.yaml"))
    assert result.returncode != 0


@pytest.mark.parametrize("alert", sorted(REQUIRED))
def test_required_alert_exists_and_is_documented(alert: str) -> None:
    rule = alerts()[alert]
    assert REQUIRED[alert] in promql_metric_names(rule["expr"])
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    anchor = rule["annotations"]["runbook"].split("#", 1)[1]
    headings = re.findall(r"^#+\s+(.*)$", DOCS.read_text(), re.MULTILINE)
    assert anchor in {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert fired == set(alerts())


def test_the_dead_letter_stat_counts_a_series_born_within_the_hour(tmp_path: Path) -> None:
    """The overview's "Dead letters (1h)": 3 from a reason first seen 10 minutes ago (increase() alone
    sees nothing there) plus 39 from an older series, evaluated by promtool."""
    from deploy.grafana.dashboards import overview

    [stat] = [p for p in overview()["panels"] if p.get("title") == "Dead letters (1h)"]
    expr = stat["targets"][0]["expr"].replace('namespace=~"$namespace"', 'namespace=~".*"')
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(
        {"groups": [{"name": "stat", "rules": [{"record": "dead_letters:last_hour", "expr": expr}]}]}))
    series = 'privacy_events_dead_lettered_total{namespace="privacy", topic="%s", reason="invalid_data"}'
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": series % "consent-changed", "values": "_x90 3x10"},
                {"series": series % "user-registered", "values": "1+0x60 1+1x40"},
            ],
            "promql_expr_test": [{"expr": "dead_letters:last_hour", "eval_time": "100m",
                                  "exp_samples": [{"labels": "dead_letters:last_hour", "value": 42}]}],
        }],
    }))
    result = promtool("test", "rules", str(tmp_path / "test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
