"""The run's output: one table on stdout, a JSON file and a PNG plot under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.core import Bench, Figure

HEADERS = ("workload", "our figure", "baseline (same run, same broker/db)", "ratio", "target", "met?")


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def _row(figure: Figure) -> tuple[str, ...]:
    baseline = _number(figure.baseline, figure.unit) if figure.baseline is not None else "-"
    if figure.baseline is not None and figure.baseline_label:
        baseline += f" ({figure.baseline_label})"
    met = {True: "yes", False: "NO", None: "-"}[figure.met]
    ratio = f"{figure.ratio:.3f}" if figure.ratio is not None else "-"
    ours = _number(figure.ours, figure.unit) + (f"  [{figure.note}]" if figure.note else "")
    return (figure.label, ours, baseline, ratio, figure.target.text(figure.unit) if figure.target else "-", met)


def table(bench: Bench) -> str:
    rows = [_row(f) for f in bench.figures]
    rows += [(name, "not available", "-", "-", "-", "-") for name in bench.unavailable]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(HEADERS)]
    line = " | ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))
    out = [line, "-+-".join("-" * w for w in widths)]
    out += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def notes(bench: Bench) -> str:
    """Latency percentiles, what was not available and why, and where the time goes when short."""
    lines = ["ratio = our figure / baseline: for rates higher is better, for latencies lower is better."]
    if bench.latencies:
        lines.append("latency percentiles (ms):")
        for name, p in bench.latencies.items():
            cells = "  ".join(f"{k}={p[k]:.2f}" for k in ("p50", "p90", "p99", "p99.9", "max") if k in p)
            lines.append(f"  {name:<52} n={int(p.get('count', 0)):<7} {cells}")
    for name, reason in bench.unavailable.items():
        lines.append(f"not available: {name}: {reason}")
    short = [w for w in dict.fromkeys(f.workload for f in bench.figures if f.met is False)]
    for workload in short:
        explained = bench.details.get(workload, {})
        for key in ("where_the_time_goes", "py_spy", "database_statements"):
            if key in explained:
                lines.append(f"{workload} falls short; {key.replace('_', ' ')}:")
                lines += _explain(explained[key])
    return "\n".join(lines)


def _explain(value: Any, indent: str = "  ") -> list[str]:
    if isinstance(value, dict):
        out: list[str] = []
        for key, item in value.items():
            if isinstance(item, dict | list):
                out.append(f"{indent}{key}:")
                out += _explain(item, indent + "  ")
            else:
                out.append(f"{indent}{key}: {item}")
        return out
    if isinstance(value, list):
        return [f"{indent}{item if not isinstance(item, list | tuple) else '  '.join(map(str, item))}"
                for item in value]
    return [f"{indent}{value}"]


def machine() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
            "implementation": platform.python_implementation()}


def write_json(bench: Bench, path: Path, **extra: Any) -> None:
    document = {
        **machine(), **extra, "quick": bench.quick, "sizes": asdict(bench.sizes),
        "figures": [f.as_json() for f in bench.figures], "latency_ms": bench.latencies,
        "rss_peak_mb": bench.rss.peaks, "unavailable": bench.unavailable, "details": bench.details,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def write_plot(bench: Bench, path: Path) -> None:
    """Latency percentiles, throughput against baselines, scaling and RSS, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    _latency_panel(axes[0][0], bench)
    _throughput_panel(axes[0][1], bench)
    _scaling_panel(axes[1][0], bench)
    _rss_panel(axes[1][1], bench)
    fig.suptitle(f"python -m bench{' --quick' if bench.quick else ''}: {os.cpu_count()} cores, "
                 f"Python {sys.version.split()[0]}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _latency_panel(ax: Any, bench: Bench) -> None:
    points = ("p50", "p90", "p99", "p99.9")
    names = list(bench.latencies)
    width = 0.8 / len(points)
    for i, point in enumerate(points):
        values = [bench.latencies[n].get(point, 0.0) for n in names]
        ax.bar([x + i * width for x in range(len(names))], values, width, label=point)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names, rotation=20, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title("latency percentiles")
    ax.legend(fontsize=7)


def _throughput_panel(ax: Any, bench: Bench) -> None:
    rates = [f for f in bench.figures if f.unit.endswith("/s") and f.ours is not None and f.workload != "scaling"]
    labels = [f.label.strip() for f in rates]
    xs = range(len(rates))
    ax.bar([x - 0.2 for x in xs], [f.ours or 0 for f in rates], 0.4, label="ours")
    ax.bar([x + 0.2 for x in xs], [f.baseline or 0 for f in rates], 0.4, label="baseline")
    ax.set_xticks(list(xs), labels, rotation=20, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("per second")
    ax.set_title("throughput: ours vs baseline")
    ax.legend(fontsize=7)


def _scaling_panel(ax: Any, bench: Bench) -> None:
    runs = bench.details.get("scaling", {}).get("runs", [])
    for workers in sorted({r["workers"] for r in runs}):
        mine = sorted((r["partitions"], r["events_per_second"]) for r in runs if r["workers"] == workers)
        ax.plot([p for p, _ in mine], [v for _, v in mine], marker="o", label=f"{workers} worker(s)")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("partitions of consent-changed")
    ax.set_ylabel("events/s into the ledger")
    ax.set_title("consent ingest scaling")
    if runs:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)


def _rss_panel(ax: Any, bench: Bench) -> None:
    services = list(bench.rss.peaks)
    phases = sorted({phase for by_phase in bench.rss.peaks.values() for phase in by_phase})
    width = 0.8 / max(1, len(phases))
    for i, phase in enumerate(phases):
        values = [bench.rss.peaks[s].get(phase, 0.0) for s in services]
        ax.bar([x + i * width for x in range(len(services))], values, width, label=phase)
    ax.axhline(200, color="red", linestyle="--", linewidth=1, label="target 200 MB")
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(services))], services)
    ax.set_ylabel("peak RSS (MB)")
    ax.set_ylim(0, 260)
    ax.set_title("service memory by phase")
    ax.legend(fontsize=7, loc="upper left", ncol=4)
