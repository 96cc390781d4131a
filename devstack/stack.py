"""The whole local stack: Kafka broker, PostgreSQL and the SMTP sink, started together.

A run lives in one root dir (``var/`` for ``make run``, ``var/test-<pid>`` for tests);
downloaded broker jars live in a shared cache dir (``var/`` by default) so every run
after the first starts from local files. When ``KAFKA_BOOTSTRAP_SERVERS``,
``DATABASE_URL`` or ``SMTP_HOST`` are set, that part is not started and the given
server is used instead (the contract's "bring your own infrastructure" switch).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shlex
import shutil
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import psutil

from devstack._proc import DevstackError, read_pid_file, say, stop_recorded, write_pid_file
from devstack.kafka import DEFAULT_HEAP, KafkaBroker
from devstack.postgres import PostgresServer
from devstack.smtp_sink import SmtpSink
from devstack.topics import create_topics

T = TypeVar("T")
OWNER_FILE = "owner.json"
TEST_DIR_PREFIX = "test-"


@dataclass(frozen=True)
class Endpoints:
    """Where the running parts can be reached; ``mail_dir`` is only filled by the embedded sink."""

    kafka_bootstrap: str
    database_url: str
    smtp_host: str
    smtp_port: int
    mail_dir: Path
    #: SMTP_STARTTLS for services using this stack: "false" for the embedded sink (it has no TLS, and the
    #: notifier requires STARTTLS unless told otherwise); for an external relay, what the environment says.
    smtp_starttls: str | None = None

    def env(self) -> dict[str, str]:
        """The contract's environment variables for services started against this stack."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "DATABASE_URL": self.database_url,
            "SMTP_HOST": self.smtp_host,
            "SMTP_PORT": str(self.smtp_port),
        }
        if self.smtp_starttls is not None:
            env["SMTP_STARTTLS"] = self.smtp_starttls
        return env


def default_var_dir() -> Path:
    """``$DEVSTACK_VAR`` or ``./var``: the default run root and the jar cache."""
    return Path(os.environ.get("DEVSTACK_VAR", "var")).resolve()


def session_root(var_dir: Path | None = None) -> Path:
    """The per-process run root for a test session: ``var/test-<pid>``."""
    return (var_dir or default_var_dir()) / f"{TEST_DIR_PREFIX}{os.getpid()}"


def sweep_stale_test_roots(var_dir: Path) -> None:
    """Stop processes and delete dirs of test runs whose pytest process died (e.g. SIGKILL)."""
    if not var_dir.is_dir():
        return
    for path in var_dir.glob(f"{TEST_DIR_PREFIX}*"):
        suffix = path.name[len(TEST_DIR_PREFIX) :]
        if not suffix.isdigit() or int(suffix) == os.getpid() or psutil.pid_exists(int(suffix)):
            continue
        say(f"cleaning up stale test run {path}")
        stop_recorded(path)
        shutil.rmtree(path, ignore_errors=True)


def _kafka_client_options(environ: Mapping[str, str]) -> dict[str, object]:
    """aiokafka security options from the contract's optional KAFKA_* variables."""
    options: dict[str, object] = {}
    if environ.get("KAFKA_SECURITY_PROTOCOL"):
        options["security_protocol"] = environ["KAFKA_SECURITY_PROTOCOL"]
    if environ.get("KAFKA_SASL_MECHANISM"):
        options["sasl_mechanism"] = environ["KAFKA_SASL_MECHANISM"]
        options["sasl_plain_username"] = environ.get("KAFKA_SASL_USERNAME")
        options["sasl_plain_password"] = environ.get("KAFKA_SASL_PASSWORD")
    if "SSL" in environ.get("KAFKA_SECURITY_PROTOCOL", ""):
        options["ssl_context"] = ssl.create_default_context(cafile=environ.get("KAFKA_SSL_CAFILE") or None)
    return options


class Stack:
    """Start/stop the three parts as one; ``kafka``/``postgres``/``smtp`` are None when external.

    Use ``await stack.start()`` / ``await stack.stop()`` from async code, or
    ``start_blocking()`` / ``stop_blocking()`` from sync code (they run the async
    versions on a private thread, so they never disturb the caller's event loop).
    Parts hold no event-loop state, so ``await stack.kafka.restart()`` works from any loop.
    """

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        cache_dir: Path | str | None = None,
        partitions: int = 4,
        dlq_partitions: int = 1,
        replication_factor: int = 1,
        durable: bool = True,
        statement_stats: bool = False,
        kafka_heap: str = DEFAULT_HEAP,
        kafka_peak_jit: bool = False,
        with_topics: bool = True,
        cleanup: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root).resolve() if root is not None else default_var_dir()
        self.cache_dir = Path(cache_dir).resolve() if cache_dir is not None else default_var_dir()
        self.partitions = partitions
        self.dlq_partitions = dlq_partitions
        self.replication_factor = replication_factor
        self.with_topics = with_topics
        self.cleanup = cleanup
        self.environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        self.kafka: KafkaBroker | None = None
        self.postgres: PostgresServer | None = None
        self.smtp: SmtpSink | None = None
        if not self.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            self.kafka = KafkaBroker(
                self.root, cache_dir=self.cache_dir, num_partitions=partitions, heap=kafka_heap,
                peak_jit=kafka_peak_jit,
            )
        if not self.environ.get("DATABASE_URL"):
            self.postgres = PostgresServer(self.root, durable=durable, statement_stats=statement_stats)
        if not self.environ.get("SMTP_HOST"):
            self.smtp = SmtpSink(self.root)
        self.startup_seconds: float | None = None
        self.timings: dict[str, float] = {}
        self._started = False

    # --- addresses -----------------------------------------------------------------

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(
            kafka_bootstrap=self.kafka.bootstrap if self.kafka else self.environ["KAFKA_BOOTSTRAP_SERVERS"],
            database_url=self.postgres.database_url if self.postgres else self.environ["DATABASE_URL"],
            smtp_host=self.smtp.host if self.smtp else self.environ["SMTP_HOST"],
            smtp_port=self.smtp.port if self.smtp else int(self.environ.get("SMTP_PORT") or 25),
            mail_dir=self.smtp.mail_dir if self.smtp else self.root / "smtp" / "mail",
            smtp_starttls="false" if self.smtp else self.environ.get("SMTP_STARTTLS"),
        )

    def env(self) -> dict[str, str]:
        """KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, SMTP_HOST, SMTP_PORT (and SMTP_STARTTLS) for this stack."""
        return self.endpoints.env()

    def write_env_file(self, path: Path | None = None) -> Path:
        """Write ``export KEY=value`` lines (``source var/stack.env`` in a shell)."""
        path = path or self.root / "stack.env"
        lines = [f"export {key}={shlex.quote(value)}\n" for key, value in self.env().items()]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("# written by python -m devstack up; valid while it runs\n" + "".join(lines))
        tmp.replace(path)
        return path

    # --- lifecycle -----------------------------------------------------------------

    def _claim_root(self) -> None:
        """One stack per root: refuse a live owner, clean up after a dead one."""
        self.root.mkdir(parents=True, exist_ok=True)
        owner = read_pid_file(self.root / OWNER_FILE)
        if owner is not None and owner.pid != os.getpid() and owner.process() is not None:
            raise DevstackError(
                f"a stack already runs in {self.root} (pid {owner.pid}); "
                f"stop it with: python -m devstack down --root {self.root}"
            )
        stop_recorded(self.root)
        write_pid_file(self.root / OWNER_FILE, "devstack", os.getpid(), sys.argv)

    async def start(self) -> Endpoints:
        """Start the parts concurrently, then create topics; print how long it took."""
        if self._started:
            return self.endpoints
        began = time.monotonic()
        if self.kafka is not None:
            self.kafka.preflight()
        sweep_stale_test_roots(self.cache_dir)
        self._claim_root()
        self._started = True
        atexit.register(self.stop_sync)
        _install_signal_handlers()
        external = [name for name, part in self._parts() if part is None]
        if external:
            say(f"using external {', '.join(external)} from the environment")
        parts = [part for _, part in self._parts() if part is not None]
        results = await asyncio.gather(*(self._timed(p) for p in parts), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.stop()
            raise errors[0]
        if self.with_topics:
            await self.create_topics()
        self.startup_seconds = time.monotonic() - began
        say(f"stack up in {self.startup_seconds:.1f}s ({self._timing_summary()})")
        return self.endpoints

    async def create_topics(self) -> list[str]:
        """Create the contract topics (idempotent); on an external cluster, failures only warn."""
        began = time.monotonic()
        try:
            created = await create_topics(
                self.endpoints.kafka_bootstrap,
                partitions=self.partitions,
                dlq_partitions=self.dlq_partitions,
                replication_factor=self.replication_factor,
                admin_options=None if self.kafka else _kafka_client_options(self.environ),
            )
        except Exception as exc:
            if self.kafka is not None:
                raise
            say(f"warning: could not create topics on the external cluster: {exc!r}")
            created = []
        self.timings["topics"] = time.monotonic() - began
        return created

    async def _timed(self, part: KafkaBroker | PostgresServer | SmtpSink) -> None:
        began = time.monotonic()
        await part.start()
        self.timings[part.name] = time.monotonic() - began

    def _timing_summary(self) -> str:
        return ", ".join(f"{name} {secs:.1f}s" for name, secs in self.timings.items())

    def _parts(self) -> list[tuple[str, KafkaBroker | PostgresServer | SmtpSink | None]]:
        return [("kafka", self.kafka), ("postgres", self.postgres), ("smtp", self.smtp)]

    def stop_sync(self) -> None:
        """Stop every started part by pid; safe to call twice (atexit does)."""
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop_sync)
        # Sequential on purpose: this also runs from atexit, where no new threads or
        # executors may start. SMTP and PostgreSQL stop in well under a second.
        for _, part in reversed(self._parts()):
            if part is not None:
                try:
                    part.stop_sync()
                except Exception as exc:  # keep stopping the others
                    say(f"error while stopping {part.name}: {exc!r}")
        with contextlib.suppress(OSError):
            (self.root / OWNER_FILE).unlink()
        if self.cleanup:
            shutil.rmtree(self.root, ignore_errors=True)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)

    def start_blocking(self) -> Endpoints:
        """``start()`` for sync callers (pytest fixtures, scripts)."""
        _install_signal_handlers()
        return run_in_thread(self.start)

    def stop_blocking(self) -> None:
        self.stop_sync()

    async def __aenter__(self) -> Stack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def run_in_thread(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a fresh event loop in a private thread.

    ``asyncio.run`` on the main thread would replace (and then clear) the main thread's
    current event loop, which pytest-asyncio's session loop relies on.
    """
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=runner, name="devstack", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP would end Python without running atexit; turn them into SystemExit."""
    raise SystemExit(128 + signum)


def _install_signal_handlers() -> None:
    """Make SIGTERM/SIGHUP run atexit (and so stop the stack), unless someone else handles them."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _exit_on_signal)
