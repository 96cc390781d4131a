"""Process plumbing shared by the stack parts: pid files, free ports, stopping by pid.

Every long-lived child is started in its own session (so a Ctrl-C in the terminal
reaches only the Python parent, which then stops the children in order) and is
recorded in a JSON pid file holding the pid *and* its start time, so that a later
``python -m devstack down`` or a stale-run sweep never signals an unrelated process
that happens to reuse the pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal

import psutil

PID_FILE_NAME = "pid.json"
MAX_LOG_BYTES = 50 * 1024 * 1024


class DevstackError(RuntimeError):
    """A part of the local stack could not be prepared, started or stopped."""


def say(message: str) -> None:
    """Progress line on stderr (the stack is a developer tool: show what it does)."""
    print(f"[devstack] {message}", file=sys.stderr, flush=True)


#: Every port `free_port` handed out in this process.
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free right now (bind to port 0, then release it), and never one this
    process handed out before: the kernel may give a just-released port again, and once gave one
    test's consent and dsar services the same port (the second failed to bind, and the first answered
    for both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` (used to reuse a run's old ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def tail(path: Path, lines: int = 30) -> str:
    """Last lines of a log file, for error messages that explain a failed start."""
    try:
        data = path.read_bytes()[-20000:]
    except OSError:
        return "(no log)"
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


#: Starts tried when a port chosen as free is taken before the server binds it.
PORT_ATTEMPTS = 3


def port_was_taken(log_file: Path, since: int) -> bool:
    """Whether the server that wrote `log_file` past byte `since` failed to bind a port: the whole new
    part is read, since a server may log pages more (its settings, its shutdown) after the error."""
    try:
        with log_file.open("rb") as log:
            log.seek(since)
            return b"Address already in use" in log.read()
    except OSError:
        return False


async def start_on_free_ports(
    name: str,
    log_file: Path,
    launch: Callable[[], Awaitable[None]],
    ready: Callable[[], Awaitable[None]],
    new_ports: Callable[[], None] | None,
) -> int:
    """`launch` a server and wait until it is `ready`. A port found free can be taken (e.g. as another
    socket's ephemeral port) before the server binds it: then `new_ports` picks others and it is
    launched again, up to PORT_ATTEMPTS times. `new_ports` is None when the ports may not move (the
    caller chose them, or clients already use them). Returns the log's size before the last launch."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        log_size = log_file.stat().st_size if log_file.exists() else 0
        await launch()
        try:
            await ready()
            return log_size
        except DevstackError:
            if new_ports is None or attempt == PORT_ATTEMPTS or not port_was_taken(log_file, log_size):
                raise
            say(f"{name}: a port was taken before the server bound it; retrying on new ports")
            new_ports()
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds: enough to find the process again and prove it is ours."""

    name: str
    pid: int
    create_time: float
    argv: list[str]
    owner_pid: int

    def process(self) -> psutil.Process | None:
        """The live process, or None when it is gone or the pid now belongs to another."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 0.05:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None


def write_pid_file(path: Path, name: str, pid: int, argv: Sequence[str]) -> PidRecord:
    """Record a started child (atomic write, so ``down`` never reads half a file)."""
    try:
        create_time = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        create_time = 0.0
    record = PidRecord(name, pid, create_time, list(argv), os.getpid())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    tmp.replace(path)
    return record


def read_pid_file(path: Path) -> PidRecord | None:
    """Load a pid file; None when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
        return PidRecord(
            name=str(data["name"]),
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            argv=[str(a) for a in data["argv"]],
            owner_pid=int(data["owner_pid"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def iter_pid_files(root: Path) -> Iterator[Path]:
    """Pid files of every part under a run root (one level deep: ``<root>/<part>/pid.json``)."""
    if root.is_dir():
        yield from sorted(root.glob(f"*/{PID_FILE_NAME}"))


def wait_gone(proc: psutil.Process, timeout: float) -> bool:
    """Wait for a process to exit (reaping it when it is our child); True when it did."""
    try:
        proc.wait(timeout=timeout)
        return True
    except psutil.TimeoutExpired:
        return False
    except psutil.NoSuchProcess:
        return True


def stop_process(
    record: PidRecord,
    signals: Sequence[tuple[signal.Signals, float]] = ((signal.SIGTERM, 20.0),),
    *,
    group: bool = False,
) -> bool:
    """Send each signal in turn, waiting up to its timeout, then SIGKILL as a last resort.

    With ``group`` the SIGKILL goes to the whole process group (the child leads its own
    session), which matters for PostgreSQL: its backends are children of the postmaster
    and would otherwise keep the shared memory busy after the postmaster is gone.
    Returns True when the process had to be killed with SIGKILL.
    """
    proc = record.process()
    if proc is None:
        return False
    for sig, timeout in signals:
        _send(record.pid, sig, group)
        if wait_gone(proc, timeout):
            return sig == signal.SIGKILL
    say(f"{record.name} (pid {record.pid}) did not stop in time; sending SIGKILL")
    _send(record.pid, signal.SIGKILL, group)
    wait_gone(proc, 10.0)
    return True


def _send(pid: int, sig: signal.Signals, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group and sig == signal.SIGKILL:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_recorded(root: Path) -> list[str]:
    """Stop every process recorded under ``root`` (used by ``down`` and the stale sweep)."""
    stopped: list[str] = []
    for pid_file in iter_pid_files(root):
        record = read_pid_file(pid_file)
        if record is None:
            continue
        if record.process() is not None:
            say(f"stopping leftover {record.name} (pid {record.pid})")
            first = signal.SIGINT if record.name == "postgres" else signal.SIGTERM
            stop_process(record, ((first, 20.0),), group=record.name == "postgres")
            stopped.append(record.name)
        with contextlib.suppress(OSError):
            pid_file.unlink()
    return stopped


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> tuple[subprocess.Popen[bytes], PidRecord]:
    """Start a long-lived child with stdout+stderr appended to ``log_file``, record its pid.

    ``user`` drops privileges in the child before exec (Popen's setuid/setgid, the same
    thing ``setpriv`` does), so the recorded pid is the server itself and signals reach it
    directly; ``runuser`` would stay in between as a watching parent.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if log_file.stat().st_size > MAX_LOG_BYTES:  # keep a long-lived var/ from filling the disk
            log_file.replace(log_file.with_name(log_file.name + ".old"))
    with open(log_file, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
        log.flush()
        kwargs: dict[str, object] = {}
        if user is not None:
            kwargs.update(user=user, group=_primary_group(user), extra_groups=[])
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                **kwargs,  # type: ignore[call-overload]
            )
        except OSError as exc:
            raise DevstackError(f"cannot start {name} ({argv[0]}): {exc}") from exc
    record = write_pid_file(pid_file, name, popen.pid, argv)
    return popen, record


def _primary_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def reap(popen: subprocess.Popen[bytes] | None) -> None:
    """Collect an exited child's status so it does not linger as a zombie."""
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            popen.wait(timeout=0.1)


#: How a child is stopped: "fast" is its controlled shutdown, "immediate" a crash-like one where the
#: server has it (PostgreSQL), "kill" SIGKILL at once (for fault tests that want an unclean stop).
StopMode = Literal["fast", "immediate", "kill"]


class ManagedProcess:
    """What the broker, the database and the SMTP sink share: one child known by pid and pid file,
    stopped by signals, restarted on the same ports and data. A part says how it starts and, when it
    differs from SIGTERM, how it stops (`stop_steps`)."""

    #: How the child is named in messages.
    label: ClassVar[str]
    #: Seconds a controlled stop may take before SIGKILL.
    stop_grace: ClassVar[float] = 30.0
    #: SIGKILL the whole process group (a server whose workers are its children).
    kill_group: ClassVar[bool] = False

    pid_file: Path
    _record: PidRecord | None
    _popen: subprocess.Popen[bytes] | None

    async def start(self, within: float = 60.0) -> None:
        raise NotImplementedError

    def is_running(self) -> bool:
        return self._record is not None and self._record.process() is not None

    def stop_steps(self, mode: StopMode, grace: float) -> Sequence[tuple[signal.Signals, float]]:
        """The signals to send in turn, each with its grace; SIGKILL follows if the child is still there."""
        if mode == "kill":
            return ((signal.SIGKILL, 10.0),)
        return ((signal.SIGTERM, grace),)

    def after_stop(self, record: PidRecord, mode: StopMode) -> None:
        """Called once the child is gone and forgotten."""

    def stop_sync(self, mode: StopMode = "fast", grace: float | None = None) -> None:
        """Stop by pid (see `stop_steps`); nothing happens when the child is not running."""
        steps = self.stop_steps(mode, self.stop_grace if grace is None else grace)
        record = self._stop_by_pid(steps, group=self.kill_group)
        if record is not None:
            self.after_stop(record, mode)
            say(f"{self.label} stopped ({mode}, pid {record.pid})")

    async def stop(self, mode: StopMode = "fast", grace: float | None = None) -> None:
        await asyncio.to_thread(self.stop_sync, mode, grace)

    async def kill(self) -> None:
        """Crash the child (SIGKILL): for fault tests that want an unclean stop."""
        await self.stop("kill")

    async def restart(self, mode: StopMode = "fast", within: float | None = None) -> None:
        """Stop (in the given mode) and start again on the same ports and data."""
        await self.stop(mode)
        await (self.start() if within is None else self.start(within))

    def _stop_by_pid(
        self, steps: Sequence[tuple[signal.Signals, float]], *, group: bool = False
    ) -> PidRecord | None:
        """Send `steps` (signal, grace) until the child is gone, reap it, forget it; returns who it was."""
        record = self._record
        if record is not None:
            stop_process(record, steps, group=group)
            reap(self._popen)
        self._record = None
        self._popen = None
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
        return record
