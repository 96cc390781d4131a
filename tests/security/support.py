"""Shared bits of the security and shutdown tests: extra servers that a stale-run sweep can find."""

from __future__ import annotations

import contextlib
from pathlib import Path

from devstack._proc import PID_FILE_NAME, write_pid_file
from devstack.stack import Stack


def sweep_record(stack: Stack, part: str, name: str, pid: int | None) -> Path | None:
    """Record an extra server's pid one level under the session root (``<root>/<part>/pid.json``).

    ``devstack`` sweeps exactly that level when a later run finds this session's pytest dead, so a
    broker or database a test started is stopped even if pytest itself was SIGKILLed. ``name`` picks
    how it is stopped (``postgres`` gets SIGINT to the group, anything else SIGTERM).
    """
    if pid is None:
        return None
    path = stack.root / part / PID_FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    write_pid_file(path, name, pid, [name])
    return path


def forget(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()
