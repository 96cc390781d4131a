"""Workload 6: peak RSS of each service, sampled every 100 ms for the whole run (bench.core.RssSampler).

Not a load of its own: every other workload runs inside `bench.phase(name)`, so each sample is
attributed to "rest" or to the load that was running. This module turns the peaks into figures.
"""

from __future__ import annotations

from bench.core import Bench, Figure, Target

WORKLOAD = "memory"
LIMIT_MB = 200.0


def record(bench: Bench) -> None:
    for service, by_phase in sorted(bench.rss.peaks.items()):
        phase, peak = max(by_phase.items(), key=lambda item: item[1])
        rest = by_phase.get("rest")
        note = f"at rest {rest:.0f} MB; peak during {phase}" if rest is not None else f"peak during {phase}"
        bench.add(Figure(WORKLOAD, f"peak RSS {service}", "MB", peak, target=Target("<", LIMIT_MB), note=note))
    bench.detail(WORKLOAD, peak_mb_by_phase=bench.rss.peaks)
