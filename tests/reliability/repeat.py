"""Run the fault suite N times in a row and tabulate each run's missing/duplicated figures.

    .venv/bin/python -m tests.reliability.repeat --runs 10 [--tests tests/reliability] [-- pytest args]

Each run is one pytest session (its own embedded stack) over `--tests`, its output kept in
var/reports/faults-repeat-run<N>.log. After it, the fault reports the
tests wrote (var/reports/faults-*.json: consent, system, replicas) are read and one line is printed:
the pytest outcome and, per report, missing/duplicated. Reports are deleted before each run, so a
figure shown is that run's (a report a run did not write shows as "-"). The table is also written to
var/reports/faults-repeat.json. Exit status 0 only when every run passed.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "var" / "reports"
#: Report file stem -> column name.
FAULT_REPORTS = {"faults-consent": "consent", "faults-system": "system", "faults-replicas": "replicas"}


@dataclass
class Run:
    number: int
    passed: bool
    seconds: float
    summary: str
    figures: dict[str, tuple[int, int] | None] = field(default_factory=dict)  # column -> (missing, duplicated)


def _summary(output: str) -> str:
    """pytest's last line, e.g. '1 failed, 6 passed in 512.3s'."""
    lines = [line.strip("= ").strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def read_figures() -> dict[str, tuple[int, int] | None]:
    figures: dict[str, tuple[int, int] | None] = {}
    for stem, column in FAULT_REPORTS.items():
        path = REPORTS / f"{stem}.json"
        try:
            report = json.loads(path.read_text())
            figures[column] = (int(report["missing"]), int(report["duplicated"]))
        except (OSError, ValueError, KeyError):
            figures[column] = None
    return figures


def run_once(number: int, tests: str, extra: list[str]) -> Run:
    for stem in FAULT_REPORTS:
        (REPORTS / f"{stem}.json").unlink(missing_ok=True)
    began = time.monotonic()
    REPORTS.mkdir(parents=True, exist_ok=True)
    log = REPORTS / f"faults-repeat-run{number}.log"
    with log.open("w") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests, *extra],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
        )
        try:
            code = child.wait()
        except BaseException:  # interrupted: let pytest stop its services and stack before leaving
            child.send_signal(signal.SIGINT)
            child.wait()
            raise
    return Run(number, code == 0, time.monotonic() - began, _summary(log.read_text()), read_figures())


def _cell(figures: tuple[int, int] | None) -> str:
    return "-" if figures is None else f"{figures[0]}/{figures[1]}"


def table(runs: list[Run]) -> str:
    columns = list(FAULT_REPORTS.values())
    head = ["run", "result", "seconds", *(f"{c} miss/dup" for c in columns), "pytest"]
    rows = [[str(r.number), "pass" if r.passed else "FAIL", f"{r.seconds:.0f}",
             *(_cell(r.figures.get(c)) for c in columns), r.summary] for r in runs]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [head, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.repeat", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tests", default="tests/reliability", help="what pytest runs each time")
    parser.add_argument("extra", nargs="*", help="further pytest arguments (after --)")
    args = parser.parse_args(argv)
    runs: list[Run] = []
    for number in range(1, args.runs + 1):
        runs.append(run_once(number, args.tests, args.extra))
        print(table(runs[-1:]).splitlines()[-1] if number > 1 else table(runs), flush=True)
    print("\n" + table(runs))
    passed = sum(r.passed for r in runs)
    print(f"\n{passed} of {len(runs)} runs passed")
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "faults-repeat.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))
    return 0 if passed == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
