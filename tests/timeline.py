"""Where `make test`'s wall time goes: each worker's files in the order it ran them.

tests/conftest.py appends one line per test to var/test-timeline/<worker>.tsv (start, end, node id);
`python -m tests.timeline` prints, per worker, when it finished and its longest files, and how long the
first worker to finish waited for the last (time a better order of files could take off).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

TIMELINE_DIR = Path(__file__).resolve().parent.parent / "var" / "test-timeline"


def record(worker: str, start: float, end: float, nodeid: str) -> None:
    TIMELINE_DIR.mkdir(parents=True, exist_ok=True)
    with (TIMELINE_DIR / f"{worker}.tsv").open("a") as out:
        out.write(f"{start:.3f}\t{end:.3f}\t{nodeid}\n")


def clear() -> None:
    for path in TIMELINE_DIR.glob("*.tsv"):
        path.unlink()


def summary(directory: Path = TIMELINE_DIR, longest: int = 6) -> str:
    rows = {path.stem: [line.split("\t") for line in path.read_text().splitlines()]
            for path in sorted(directory.glob("*.tsv"))}
    if not rows:
        return f"no timeline under {directory}"
    began = min(float(r[0]) for lines in rows.values() for r in lines)
    lines_out, finished = [], {}
    for worker, lines in rows.items():
        files: dict[str, list[float]] = defaultdict(lambda: [float("inf"), 0.0])
        for start, end, nodeid in lines:
            span = files[nodeid.strip().split("::", 1)[0]]
            span[0], span[1] = min(span[0], float(start)), max(span[1], float(end))
        finished[worker] = max(end for _, end in files.values()) - began
        lines_out.append(f"{worker}: {len(files)} files, finished at {finished[worker]:.0f} s; longest:")
        for path, (start, end) in sorted(files.items(), key=lambda f: f[1][0] - f[1][1])[:longest]:
            lines_out.append(f"  {end - start:6.1f} s  from {start - began:5.0f} s  {path}")
        last = max(files.items(), key=lambda f: f[1][1])
        lines_out.append(f"  last file: {last[0]} ({last[1][1] - last[1][0]:.0f} s)")
    lines_out.append(f"the first worker to finish waited {max(finished.values()) - min(finished.values()):.0f} s "
                     "for the last")
    return "\n".join(lines_out)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1]) if len(sys.argv) > 1 else TIMELINE_DIR))
