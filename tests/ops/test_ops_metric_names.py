"""Dashboards and alert rules use only metric names the services export (privacy_runtime/metrics.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy import metric_names
from deploy.metric_names import grafana_query_metric_names, promql_metric_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("privacy_cases_open", {"privacy_cases_open"}),
        ('sum by (job, topic) (rate(a_total{topic="x", job=~"y|z"}[5m]))', {"a_total"}),
        ("sum(rate(a_total[5m])) without (instance) / on (job) group_left (topic) b", {"a_total", "b"}),
        ("histogram_quantile(0.95, sum by (le) (rate(h_bucket[$__rate_interval])))", {"h_bucket"}),
        ("max_over_time(g[1h:5m]) > 1e3 and g offset 1d", {"g"}),
        ('label_replace(up2, "dst", "$1", "src", "(.*)")', {"up2"}),
        ('a_total{namespace=~"$namespace", system=~"${system}"} > bool 0 unless b', {"a_total", "b"}),
        ("vector(0) + time() - sum(c) by (d)", {"c"}),
    ],
)
def test_promql_scan(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_grafana_variable_queries() -> None:
    assert grafana_query_metric_names("label_values(privacy_cases_open{job='x'}, right)") == {"privacy_cases_open"}
    assert grafana_query_metric_names("label_values(namespace)") == set()
    assert grafana_query_metric_names("query_result(sum by (x) (y))") == {"y"}


def test_catalogue_names_follow_exposition_rules() -> None:
    names = metric_names.catalogue_names()
    assert "privacy_events_consumed_total" in names
    assert {"privacy_case_completion_seconds_bucket", "privacy_case_completion_seconds_count"} <= names
    assert "privacy_case_completion_seconds" not in names
    assert "privacy_consumer_lag_messages" in names


def test_dashboards_and_rules_use_only_catalogue_names() -> None:
    used = metric_names.names_by_source()
    unknown = {name: sorted(where) for name, where in used.items() if name not in metric_names.catalogue_names()}
    assert unknown == {}


def test_scrape_names() -> None:
    text = '# HELP a_total x\n# TYPE a_total counter\na_total{topic="t"} 1.0\nb 2\n\nh_bucket{le="+Inf"} 3\n'
    assert metric_names.scrape_names(text) == {"a_total", "b", "h_bucket"}


def test_the_four_dashboards() -> None:
    titles = {json.loads(p.read_text())["title"] for p in DASHBOARDS}
    assert titles == {"Privacy operations overview", "DSAR deadlines", "Propagation per system", "Notifier"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"] and len(board["uid"]) <= 40
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 6
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert promql_metric_names(target["expr"]), f"{panel['title']}: no metric in {target['expr']}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
