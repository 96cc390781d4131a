"""The Grafana dashboards, built from short panel lists (``deploy/k8s/generate.py`` writes the JSON).

Every query uses only metric names from ``privacy_runtime/metrics.py`` (``tests/ops`` checks it with
``deploy/metric_names.py``). Each dashboard has a ``datasource`` and a ``namespace`` variable, so the
same JSON serves the dev and prod namespaces; kustomize packages the files as ConfigMaps labelled
``grafana_dashboard: "1"`` for Grafana's dashboard sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"
CENTER = 'job="privacy-center"'


def sel(metric: str, *matchers: str) -> str:
    """``metric{namespace=~"$namespace", ...}``."""
    return f"{metric}{{{', '.join((NS, *matchers))}}}"


def rate(metric: str, by: str, window: str = RATE, *matchers: str) -> str:
    return f"sum by ({by}) (rate({sel(metric, *matchers)}[{window}]))"


def increase(metric: str, by: str, window: str, *matchers: str) -> str:
    return f"sum by ({by}) (increase({sel(metric, *matchers)}[{window}]))"


def quantile(q: float, histogram: str, by: str, window: str = RATE, *matchers: str) -> str:
    inner = f"sum by (le, {by}) (rate({sel(histogram + '_bucket', *matchers)}[{window}]))"
    return f"histogram_quantile({q}, {inner})"


def gauge(metric: str, by: str, dedupe: str, *matchers: str) -> str:
    """A gauge every replica reports from the same database: take one copy per series, then sum."""
    return f"sum by ({by}) (max by ({dedupe}) ({sel(metric, *matchers)}))"


@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (expr, legend)
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    description: str = ""
    thresholds: list[tuple[float, str]] = field(default_factory=list)


def stat(title: str, expr: str, unit: str = "short", description: str = "", red_above: float | None = None) -> Panel:
    steps = [(0.0, "green")] if red_above is None else [(0.0, "green"), (red_above, "red")]
    return Panel(title, [(expr, title)], unit, "stat", 4, 4, description, steps)


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
        for i, (expr, legend) in enumerate(panel.targets)
    ]
    steps: list[dict[str, Any]] = [
        {"color": color, "value": None if i == 0 else value} for i, (value, color) in enumerate(panel.thresholds)
    ] or [{"color": "green", "value": None}]
    out: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "targets": targets,
    }
    if panel.kind == "stat":
        out["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
        }
    else:
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    return out


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def dashboard(
    uid: str, title: str, description: str, panels: list[Panel], variables: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    laid_out: list[dict[str, Any]] = []
    x = y = row_height = 0
    for i, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        laid_out.append(_panel_json(panel, i, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    templating = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        },
        _variable("namespace", "Namespace", "label_values(privacy_events_consumed_total, namespace)"),
        *(variables or []),
    ]
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["privacy"],
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": templating},
        "annotations": {"list": []},
        "links": [],
        "panels": laid_out,
    }


def overview() -> dict[str, Any]:
    dead = sel("privacy_events_dead_lettered_total")
    lag = gauge("privacy_consumer_lag_messages", "job, topic", "job, topic, partition")
    panels = [
        stat("Events processed /s", f"sum(rate({sel('privacy_events_processed_total')}[{RATE}]))", "ops"),
        stat(
            "Dead letters (1h)",
            # A series born within the hour (a process's first dead letter of a reason) has no earlier
            # sample for increase() to count from: its whole value counts instead (as the alert does).
            f"(sum(increase({dead}[1h]) and {dead} offset 1h) or vector(0)) + "
            f"(sum({dead} unless {dead} offset 1h) or vector(0))",
            red_above=1,
            description="Messages sent to <topic>.dlq in the last hour; see privacyctl dlq replay.",
        ),
        stat("Consumer lag", f"sum({lag})", red_above=1000),
        # Every replica counts the whole outbox table: one copy per service, or it multiplies by replicas.
        stat("Outbox pending", f"sum(max by (job) ({sel('privacy_outbox_pending_messages')}))", red_above=1000),
        stat("Commands overdue", f"sum({gauge('privacy_commands_overdue', 'job', 'job, system')})", red_above=1),
        stat("Cases overdue", f"sum({gauge('privacy_cases_overdue', 'right', 'right')})", red_above=1),
        Panel("Consumed per topic", [(rate("privacy_events_consumed_total", "topic"), "{{topic}}")], "ops"),
        Panel("Processed per topic", [(rate("privacy_events_processed_total", "topic"), "{{topic}}")], "ops"),
        Panel(
            "Dead-lettered per topic",
            [(rate("privacy_events_dead_lettered_total", "topic, reason"), "{{topic}} ({{reason}})")],
            "ops",
        ),
        Panel("Duplicates ignored per topic", [(rate("privacy_events_duplicate_total", "topic"), "{{topic}}")], "ops"),
        Panel(
            "Batch processing time p95",
            [(quantile(0.95, "privacy_event_processing_seconds", "topic"), "{{topic}}")],
            "s",
        ),
        Panel(
            "Event time to committed effect p95",
            [(quantile(0.95, "privacy_event_delay_seconds", "topic"), "{{topic}}")],
            "s",
        ),
        Panel(
            "Consumer lag per topic",
            [(lag, "{{job}} {{topic}}")],
            "short",
            description="KEDA scales each service on its consumer-group lag.",
        ),
        Panel(
            "Batches retried (dependency unavailable)",
            [(rate("privacy_processing_retries_total", "topic"), "{{topic}}")],
            "ops",
        ),
        Panel(
            "Outbox",
            [
                (f"max by (job) ({sel('privacy_outbox_pending_messages')})", "pending {{job}}"),
                (rate("privacy_outbox_published_total", "topic"), "published {{topic}} /s"),
                (rate("privacy_outbox_dropped_erased_total", "job"), "dropped (erased) {{job}} /s"),
            ],
        ),
        Panel("Audit entries", [(rate("privacy_audit_entries_total", "action"), "{{action}}")], "ops"),
        Panel(
            "HTTP requests", [(rate("privacy_http_requests_total", "route, status"), "{{route}} {{status}}")], "reqps"
        ),
        Panel("HTTP latency p95", [(quantile(0.95, "privacy_http_request_seconds", "route"), "{{route}}")], "s"),
        # The privacy center (its Service, so its scrape job, is privacy-center): what people do, and refusals.
        Panel(
            "Privacy center: pages and forms",
            [(rate("privacy_http_requests_total", "route, status", RATE, CENTER), "{{route}} {{status}}")],
            "reqps",
            description="Sign-in links asked for (ask_for_link), sign-ins, consent changes, requests, codes.",
        ),
        Panel(
            "Privacy center: refused and failed",
            [
                (rate("privacy_http_requests_total", "route", RATE, CENTER, 'status="429"'), "{{route}} rate-limited"),
                (rate("privacy_http_requests_total", "route", RATE, CENTER, 'status="403"'), "{{route}} CSRF refused"),
                (rate("privacy_http_requests_total", "route", RATE, CENTER, 'status=~"5.."'), "{{route}} failed"),
            ],
            "reqps",
            description="429 on ask_for_link: someone trying many addresses; 503: a service it reads did not answer.",
        ),
    ]
    return dashboard(
        "privacy-overview",
        "Privacy operations overview",
        "Stream processing, dead letters, lag, outbox and HTTP across consent, dsar, notifier and the privacy center.",
        panels,
    )


def dsar_deadlines() -> dict[str, Any]:
    def per_right(metric: str) -> str:
        return gauge(metric, "right", "right")

    panels = [
        stat("Open cases", f"sum({per_right('privacy_cases_open')})"),
        stat("Due within 3 days", f"sum({per_right('privacy_cases_due_soon')})", red_above=1),
        stat(
            "Overdue",
            f"sum({per_right('privacy_cases_overdue')})",
            red_above=1,
            description="Past due_at: GDPR Art. 12(3) one month (or the extension).",
        ),
        stat("Opened (30d)", f"sum(increase({sel('privacy_cases_opened_total')}[30d]))"),
        stat("Closed (30d)", f"sum(increase({sel('privacy_cases_closed_total')}[30d]))"),
        stat(
            "Median time to complete (30d)",
            f"histogram_quantile(0.5, sum by (le) (rate({sel('privacy_case_completion_seconds_bucket')}[30d])))",
            "s",
        ),
        Panel("Open cases per right", [(per_right("privacy_cases_open"), "{{right}}")]),
        Panel("Due within 3 days per right", [(per_right("privacy_cases_due_soon"), "{{right}}")]),
        Panel("Overdue per right", [(per_right("privacy_cases_overdue"), "{{right}}")]),
        Panel(
            "Waiting for an operator per right",
            [(per_right("privacy_cases_awaiting_review"), "{{right}}")],
            description="Cases in manual review (approve or reject: privacyctl cases list), completed "
            "restrictions whose lift failed included.",
        ),
        Panel("Opened per day", [(increase("privacy_cases_opened_total", "right", "1d"), "{{right}}")]),
        Panel(
            "Closed per day by status",
            [(increase("privacy_cases_closed_total", "right, status", "1d"), "{{right}} {{status}}")],
        ),
        Panel(
            "Time to complete (p50, p95 over 7d)",
            [
                (quantile(0.5, "privacy_case_completion_seconds", "right", "7d"), "p50 {{right}}"),
                (quantile(0.95, "privacy_case_completion_seconds", "right", "7d"), "p95 {{right}}"),
            ],
            "s",
        ),
        Panel(
            "Mean time to complete (7d)",
            [
                (
                    f"sum by (right) (rate({sel('privacy_case_completion_seconds_sum')}[7d])) / "
                    f"sum by (right) (rate({sel('privacy_case_completion_seconds_count')}[7d]))",
                    "{{right}}",
                )
            ],
            "s",
        ),
    ]
    return dashboard(
        "privacy-dsar-deadlines",
        "DSAR deadlines",
        "Data-subject request cases: open, due soon, overdue, waiting for an operator, throughput and time "
        "to complete.",
        panels,
    )


def propagation() -> dict[str, Any]:
    system = 'system=~"$system"'

    def per_system(metric: str) -> str:
        return gauge(metric, "job, system", "job, system", system)

    panels = [
        stat("Commands outstanding", f"sum({per_system('privacy_commands_outstanding')})"),
        stat(
            "Commands overdue",
            f"sum({per_system('privacy_commands_overdue')})",
            red_above=1,
            description="Sent and not acknowledged past respond_by.",
        ),
        stat("Sent (24h)", f"sum(increase({sel('privacy_commands_sent_total', system)}[24h]))"),
        stat("Acknowledged (24h)", f"sum(increase({sel('privacy_commands_acknowledged_total', system)}[24h]))"),
        stat("Re-sent (24h)", f"sum(increase({sel('privacy_commands_resent_total', system)}[24h]))"),
        stat(
            "Reported overdue (24h)",
            f"sum(increase({sel('privacy_commands_overdue_reported_total', system)}[24h]))",
            red_above=1,
        ),
        Panel("Outstanding per system", [(per_system("privacy_commands_outstanding"), "{{system}} ({{job}})")]),
        Panel("Overdue per system", [(per_system("privacy_commands_overdue"), "{{system}} ({{job}})")]),
        Panel(
            "Sent per system and action",
            [(rate("privacy_commands_sent_total", "system, action", RATE, system), "{{system}} {{action}}")],
            "ops",
        ),
        Panel(
            "Acknowledgements per system and status",
            [(rate("privacy_commands_acknowledged_total", "system, status", RATE, system), "{{system}} {{status}}")],
            "ops",
        ),
        Panel(
            "Re-sent for want of an ack",
            [(rate("privacy_commands_resent_total", "system", RATE, system), "{{system}}")],
            "ops",
        ),
        Panel(
            "Reported past respond_by (per day)",
            [(increase("privacy_commands_overdue_reported_total", "system", "1d", system), "{{system}}")],
        ),
        Panel(
            "Consent changes per purpose",
            [(rate("privacy_consent_changes_total", "purpose, granted"), "{{purpose}} granted={{granted}}")],
            "ops",
        ),
        Panel(
            "Purpose decisions",
            [(rate("privacy_decisions_total", "purpose, allowed"), "{{purpose}} allowed={{allowed}}")],
            "ops",
        ),
    ]
    variables = [_variable("system", "System", "label_values(privacy_commands_outstanding, system)")]
    return dashboard(
        "privacy-propagation",
        "Propagation per system",
        "Commands to downstream systems (opt-outs, revocations, case work) and their acknowledgements.",
        panels,
        variables,
    )


def notifier() -> dict[str, Any]:
    panels = [
        stat("Sent (24h)", f"sum(increase({sel('privacy_emails_sent_total')}[24h]))"),
        stat("Failed (24h)", f"sum(increase({sel('privacy_emails_failed_total')}[24h]))", red_above=1),
        stat("Retried (1h)", f"sum(increase({sel('privacy_emails_retried_total')}[1h]))", red_above=10),
        stat("Queue depth", f"sum(max by (job) ({sel('privacy_email_queue_depth')}))", red_above=100),
        stat("Fan-outs in progress", f"sum(max by (job) ({sel('privacy_fanout_in_progress')}))"),
        stat("Suppressed (24h)", f"sum(increase({sel('privacy_emails_suppressed_total')}[24h]))"),
        Panel("Sent per template", [(rate("privacy_emails_sent_total", "template"), "{{template}}")], "ops"),
        Panel(
            "Failed permanently per template",
            [(rate("privacy_emails_failed_total", "template"), "{{template}}")],
            "ops",
        ),
        Panel(
            "Deferred after a temporary SMTP failure", [(rate("privacy_emails_retried_total", "job"), "{{job}}")], "ops"
        ),
        Panel("Suppressed on purpose", [(rate("privacy_emails_suppressed_total", "reason"), "{{reason}}")], "ops"),
        Panel("Queue depth", [(f"max by (job) ({sel('privacy_email_queue_depth')})", "{{job}}")]),
        Panel(
            "Oldest email due, not sent",
            [(f"max by (queue) ({sel('privacy_email_oldest_due_seconds')})", "{{queue}}")],
            "s",
        ),
        Panel(
            "SMTP send time",
            [
                (quantile(0.5, "privacy_email_send_seconds", "job"), "p50"),
                (quantile(0.95, "privacy_email_send_seconds", "job"), "p95"),
            ],
            "s",
        ),
        Panel("Fan-out recipients queued", [(rate("privacy_fanout_recipients_total", "notice"), "{{notice}}")], "ops"),
        Panel("Fan-outs in progress", [(f"max by (job) ({sel('privacy_fanout_in_progress')})", "{{job}}")]),
    ]
    return dashboard(
        "privacy-notifier",
        "Notifier",
        "Email delivery: sent, failed, retried, suppressed, queue and notice fan-outs.",
        panels,
    )


def all_dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON."""
    return {
        "privacy-overview.json": overview(),
        "dsar-deadlines.json": dsar_deadlines(),
        "propagation.json": propagation(),
        "notifier.json": notifier(),
    }
