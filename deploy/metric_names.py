"""Metric names used by the dashboards and alert rules, and the names the services export.

    python -m deploy.metric_names            # used names, one a line, with where each is used
    python -m deploy.metric_names --unknown  # used names the catalogue does not export (exit 1 if any)

``used_names()`` is what a live check compares with a scrape of the running services: every name
it returns must appear in some service's ``/metrics``. ``catalogue_names()`` lists what
``privacy_runtime/metrics.py`` exports (counters as ``_total``, histograms as ``_bucket``/``_sum``/
``_count``), without starting anything.

The PromQL scan is deliberately small: it drops strings, label matchers, ranges, the label lists of
``by``/``without``/``on``/``ignoring``/``group_*``, Grafana variables, numbers and durations, then
takes every identifier that is not a function call or keyword as a metric name.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "deploy" / "grafana"
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"

KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "atan2",
        "inf",
        "nan",
        "start",
        "end",
    }
)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*|\d[\w.]*|\S")
_LABEL_VALUES = re.compile(r"^\s*label_values\s*\((.*)\)\s*$", re.DOTALL)
_QUERY_RESULT = re.compile(r"^\s*query_result\s*\((.*)\)\s*$", re.DOTALL)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names referenced by one PromQL expression."""
    text = _STRING.sub(" ", expr)
    text = _GRAFANA_VAR.sub(" ", text)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    tokens = _TOKEN.findall(text)
    names: set[str] = set()
    for i, token in enumerate(tokens):
        if not (token[0].isalpha() or token[0] in "_:"):
            continue
        if token.lower() in KEYWORDS:
            continue
        if i + 1 < len(tokens) and tokens[i + 1] == "(":
            continue  # a function or aggregation
        names.add(token)
    return names


def grafana_query_metric_names(query: str) -> set[str]:
    """Names in a Grafana variable query: PromQL, ``label_values(metric, label)`` or ``query_result(...)``."""
    match = _LABEL_VALUES.match(query)
    if match:
        args = match.group(1)
        if "," not in _BRACES.sub("", args):
            return set()  # label_values(label): no metric
        return promql_metric_names(args.rsplit(",", 1)[0])
    match = _QUERY_RESULT.match(query)
    if match:
        return promql_metric_names(match.group(1))
    if query.strip().startswith(("label_names(", "metrics(")):
        return set()
    return promql_metric_names(query)


def dashboard_queries(board: dict[str, Any]) -> Iterator[str]:
    """Every PromQL expression of a dashboard: panel targets (nested rows too) and variable queries."""

    def panels(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield str(target["expr"])


def dashboard_variable_queries(board: dict[str, Any]) -> Iterator[str]:
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if query:
            yield str(query)


def dashboard_names(board: dict[str, Any]) -> set[str]:
    names = {n for expr in dashboard_queries(board) for n in promql_metric_names(expr)}
    names |= {n for q in dashboard_variable_queries(board) for n in grafana_query_metric_names(q)}
    return names


def rule_expressions(rules: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(rule name, expr) of every alerting and recording rule of a Prometheus rule file."""
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            yield str(rule.get("alert") or rule.get("record")), str(rule["expr"])


def recorded_names(rules: dict[str, Any]) -> set[str]:
    """Series created by recording rules (usable by other rules, not exported by any service)."""
    return {str(r["record"]) for g in rules.get("groups", []) for r in g.get("rules", []) if "record" in r}


def names_by_source(dashboards_dir: Path = DASHBOARDS, rules_file: Path = RULES) -> dict[str, set[str]]:
    """Metric name -> where it is used (``grafana/<file>`` or ``rules:<alert>``)."""
    used: dict[str, set[str]] = {}
    for path in sorted(dashboards_dir.glob("*.json")):
        for name in dashboard_names(json.loads(path.read_text())):
            used.setdefault(name, set()).add(f"grafana/{path.name}")
    rules = yaml.safe_load(rules_file.read_text())
    recorded = recorded_names(rules)
    for rule, expr in rule_expressions(rules):
        for name in promql_metric_names(expr) - recorded:
            used.setdefault(name, set()).add(f"rules:{rule}")
    return used


def used_names(dashboards_dir: Path = DASHBOARDS, rules_file: Path = RULES) -> set[str]:
    """Every metric name the dashboards and alert rules read (what a scrape must contain)."""
    return set(names_by_source(dashboards_dir, rules_file))


def catalogue_names() -> set[str]:
    """Sample names ``privacy_runtime.metrics`` exports (``*_created`` series left out)."""
    from prometheus_client.metrics import MetricWrapperBase

    from privacy_runtime import metrics

    names: set[str] = set()
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        for family in obj.describe():
            if family.type == "counter":
                names.add(f"{family.name}_total")
            elif family.type == "histogram":
                names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
            elif family.type == "summary":
                names.update(f"{family.name}{suffix}" for suffix in ("", "_sum", "_count"))
            else:
                names.add(family.name)
    return names


def scrape_names(text: str) -> set[str]:
    """Sample names in Prometheus text exposition (a ``/metrics`` body)."""
    names: set[str] = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
        if match:
            names.add(match.group(0))
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Metric names used by dashboards and alert rules.")
    parser.add_argument("--unknown", action="store_true", help="list only names the catalogue does not export")
    args = parser.parse_args(argv)
    used = names_by_source()
    if args.unknown:
        unknown = sorted(set(used) - catalogue_names())
        for name in unknown:
            print(f"{name}\t{', '.join(sorted(used[name]))}")
        return 1 if unknown else 0
    for name in sorted(used):
        print(f"{name}\t{', '.join(sorted(used[name]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
