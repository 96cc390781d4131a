"""A throw-away PostgreSQL server under ``<root>/postgres``, on a free port of 127.0.0.1.

PostgreSQL refuses to run as root, so when this process is root the server (and
initdb) run as the ``postgres`` OS user, created when missing. The privilege drop is
done by Popen itself (setgid/setuid before exec, what ``setpriv`` does) rather than
``runuser``: runuser stays in between as a watching parent that turns our SIGINT into
SIGTERM plus a SIGKILL 2 s later, while the stack needs the postmaster's own pid to pick
the shutdown mode (SIGINT fast, SIGQUIT immediate, SIGKILL crash).

Both TCP and the unix socket require a password (scram-sha-256): the superuser's
random password lives in ``<root>/postgres/admin.password``; services use the
``privacy`` role, which owns the ``privacy`` database.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from devstack._proc import (
    PID_FILE_NAME,
    DevstackError,
    ManagedProcess,
    PidRecord,
    StopMode,
    free_port,
    port_is_free,
    say,
    spawn,
    start_on_free_ports,
    tail,
)

OS_USER = "postgres"
#: Unix socket paths are limited to 107 bytes; longer run dirs use TCP only.
_MAX_SOCKET_PATH = 100


def find_pg_bindir() -> Path | None:
    """The directory holding ``postgres`` and ``initdb`` ($PG_BINDIR, Debian layout, PATH)."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p)],
        reverse=True,
    )
    candidates += [Path(p).parent for p in debian]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    for name in ("postgres", "initdb"):
        found = shutil.which(name)
        if found:
            candidates.append(Path(found).resolve().parent)
    candidates += [Path("/usr/local/pgsql/bin"), Path("/usr/pgsql/bin")]
    for bindir in candidates:
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file():
            return bindir
    return None


def ensure_pg_bindir() -> Path:
    """Find the server binaries, installing Debian's ``postgresql`` package as root if needed."""
    bindir = find_pg_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("PostgreSQL server binaries not found; installing with apt-get (postgresql)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
            result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise DevstackError(f"{' '.join(argv)} failed:\n{(result.stdout + result.stderr)[-3000:]}")
        bindir = find_pg_bindir()
        if bindir is not None:
            return bindir
    raise DevstackError(
        "PostgreSQL server binaries (postgres, initdb) not found. Install them "
        "(Debian/Ubuntu: sudo apt-get install -y postgresql; or set PG_BINDIR), "
        "or set DATABASE_URL to use an existing server"
    )


def ensure_os_user(name: str = OS_USER) -> pwd.struct_passwd:
    """The unprivileged account the server runs as when we are root (created if missing)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    say(f"creating OS user {name!r} to run PostgreSQL (it refuses to run as root)")
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    argv = [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DevstackError(f"could not create OS user {name!r}: {result.stderr.strip()}")
    return pwd.getpwnam(name)


def _check_traversable(path: Path, uid: int, gid: int) -> None:
    """Fail early, with a clear message, when the server user cannot reach its data dir."""
    for parent in [path, *path.parents]:
        st = parent.stat()
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            raise DevstackError(
                f"the {OS_USER} OS user cannot enter {parent} (mode {stat.filemode(st.st_mode)}); "
                f"use a run directory it can reach (e.g. chmod o+x {parent})"
            )


class PostgresServer(ManagedProcess):
    """initdb + postgres on 127.0.0.1:<port>; data, socket and log under ``<root>/postgres``.

    ``durable=False`` turns off fsync and full_page_writes: fine for a test stack whose data
    is thrown away (only a machine crash could lose commits), and much faster on slow disks.
    """

    name = "postgres"
    label = "postgres"
    kill_group = True

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        durable: bool = True,
        user: str = "privacy",
        password: str = "privacy",
        database: str = "privacy",
        max_connections: int = 200,
        statement_stats: bool = False,
    ) -> None:
        self.dir = Path(root).resolve() / "postgres"
        self.data_dir = self.dir / "data"
        self.socket_dir = self.dir / "run"
        self.log_file = self.dir / "postgres.log"
        self.pid_file = self.dir / PID_FILE_NAME
        self.password_file = self.dir / "admin.password"
        self.host = host
        self.durable = durable
        self.user = user
        self.password = password
        self.database = database
        self.max_connections = max_connections
        self.statement_stats = statement_stats
        self.port = self._choose_port(port)
        #: A port the caller chose, or one clients already use (after the first start), is kept.
        self._port_fixed = port is not None
        self._popen: subprocess.Popen[bytes] | None = None
        self._record: PidRecord | None = None
        self._run_as: str | None = None

    @property
    def database_url(self) -> str:
        """``DATABASE_URL`` for the services (password-authenticated ``privacy`` role)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def admin_url(self) -> str:
        """Superuser URL, for tests that need to inspect or break things."""
        return f"postgresql://postgres:{self._admin_password()}@{self.host}:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        return self._record.pid if self._record else None

    def _choose_port(self, port: int | None) -> int:
        saved = self.dir / "port.json"
        if port is None and saved.is_file():
            with contextlib.suppress(ValueError, KeyError, OSError):
                old = int(json.loads(saved.read_text())["port"])
                if port_is_free(old, self.host):
                    return old
        return port or free_port(self.host)

    def _admin_password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except OSError as exc:
            raise DevstackError(
                f"{self.data_dir} exists but {self.password_file} is missing; delete {self.dir} to start over"
            ) from exc

    def _chown(self, path: Path) -> None:
        if self._run_as is not None:
            pw = pwd.getpwnam(self._run_as)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _initdb(self, bindir: Path) -> None:
        """Create the cluster once; the superuser password is random and kept beside it."""
        if (self.data_dir / "PG_VERSION").is_file():
            return
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        password = secrets.token_urlsafe(18)
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)
        pwfile = self.dir / "initdb.pw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        argv = [
            str(bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ]
        if not self.durable:
            argv.append("--no-sync")
        try:
            uid, gid = self._ids()
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                check=False,
                user=uid,
                group=gid,
                extra_groups=None if uid is None else [],
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.log_file, "a") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise DevstackError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def _ids(self) -> tuple[int | None, int | None]:
        """uid/gid to drop to for initdb (None, None when not root)."""
        if self._run_as is None:
            return None, None
        pw = pwd.getpwnam(self._run_as)
        return pw.pw_uid, pw.pw_gid

    def _prepare(self) -> list[str]:
        """Blocking part of start: binaries, OS user, directories, initdb."""
        bindir = ensure_pg_bindir()
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = ensure_os_user()
            self._run_as = pw.pw_name
            _check_traversable(self.dir, pw.pw_uid, pw.pw_gid)
        self.socket_dir.mkdir(exist_ok=True)
        self._chown(self.socket_dir)
        self._chown(self.dir)  # initdb must create data/ inside it
        (self.dir / "port.json").write_text(json.dumps({"port": self.port}))
        self._initdb(bindir)
        socket_dirs = str(self.socket_dir)
        if len(socket_dirs) + len(f"/.s.PGSQL.{self.port}") > _MAX_SOCKET_PATH:
            socket_dirs = ""
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": socket_dirs,
            "max_connections": str(self.max_connections),
            # A stream batch holds one advisory lock per subject until it commits (up to BATCH_MAX_EVENTS
            # of them); the shared lock table has room for this times max_connections locks.
            "max_locks_per_transaction": "256",
            "logging_collector": "off",
            "log_line_prefix": "%m [%p] ",
        }
        if not self.durable:
            # fsync=off survives a *process* crash (the page cache keeps the writes), so fault
            # tests that kill the server still see every committed row. synchronous_commit=off
            # does not: a SIGQUIT/SIGKILL loses the last ~0.6 s of commits, so it stays on.
            settings.update(fsync="off", full_page_writes="off")
        if self.statement_stats and (bindir.parent / "lib" / "pg_stat_statements.so").is_file():
            # For the benchmarks' "where the database time goes"; absent from minimal installs.
            settings.update({"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"})
        argv = [str(bindir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    async def start(self, within: float = 60.0) -> None:
        """Start the server, create role and database, wait until the role can connect."""
        if self.is_running():
            return
        started = time.monotonic()

        async def launch() -> None:
            argv = await asyncio.to_thread(self._prepare)
            self._popen, self._record = spawn(
                self.name, argv, log_file=self.log_file, pid_file=self.pid_file,
                cwd=self.dir, user=self._run_as,
            )  # fmt: skip
            say(f"postgres starting on {self.host}:{self.port} (pid {self._popen.pid})")

        def new_port() -> None:
            self.port = free_port(self.host)

        await start_on_free_ports(
            "postgres", self.log_file, launch, lambda: self._wait_ready(started + within),
            None if self._port_fixed else new_port,
        )
        self._port_fixed = True
        say(f"postgres ready on {self.host}:{self.port} in {time.monotonic() - started:.1f}s")

    async def _wait_ready(self, deadline: float) -> None:
        admin_password = self._admin_password()
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if self._popen is not None and self._popen.poll() is not None:
                raise DevstackError(
                    f"postgres exited with code {self._popen.returncode}:\n{tail(self.log_file)}"
                )
            try:
                conn = await asyncpg.connect(
                    host=self.host, port=self.port, user="postgres",
                    password=admin_password, database="postgres", timeout=5,
                )  # fmt: skip
            except Exception as exc:  # not up yet: refused, starting up, auth not ready
                last_error = exc
                await asyncio.sleep(0.1)
                continue
            try:
                await self._bootstrap(conn)
            finally:
                await conn.close()
            conn = await asyncpg.connect(self.database_url, timeout=5)
            await conn.close()
            return
        raise DevstackError(
            f"postgres not ready on port {self.port} in time ({last_error!r}):\n{tail(self.log_file)}"
        )

    async def _bootstrap(self, conn: asyncpg.Connection) -> None:
        """Create the services' role and database (idempotent, so restarts are no-ops)."""
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", self.user)
        ident = _quote_ident(self.user)
        literal = _quote_literal(self.password)
        if exists:
            await conn.execute(f"ALTER ROLE {ident} LOGIN CREATEDB PASSWORD {literal}")
        else:
            await conn.execute(f"CREATE ROLE {ident} LOGIN CREATEDB PASSWORD {literal}")
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.database):
            await conn.execute(f"CREATE DATABASE {_quote_ident(self.database)} OWNER {ident}")

    def stop_steps(self, mode: StopMode, grace: float) -> Sequence[tuple[signal.Signals, float]]:
        """fast = SIGINT (roll back, disconnect, checkpoint), immediate = SIGQUIT (crash-like, recovery
        on next start), kill = SIGKILL to the whole process group.

        SIGTERM is not used: it is PostgreSQL's "smart" shutdown, which waits for every
        client to disconnect and would hang while services hold pooled connections.
        """
        return {
            "fast": ((signal.SIGINT, grace), (signal.SIGQUIT, 5.0)),
            "immediate": ((signal.SIGQUIT, grace),),
            "kill": ((signal.SIGKILL, 10.0),),
        }[mode]

    def after_stop(self, record: PidRecord, mode: StopMode) -> None:
        if mode == "kill":
            _wait_group_gone(record.pid)


def _wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
    """After a SIGKILL, wait for the backends too: they hold the shared memory segment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.05)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
