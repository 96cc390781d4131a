"""A real single-node Apache Kafka broker (KRaft, combined broker+controller), without Docker.

The broker comes from Maven Central (``devstack/kafka/pom.xml``) and runs with the
installed JDK: ``java -cp <libs>/* kafka.Kafka server.properties``.

What checking /work/shared/KAFKA_LOCAL.md against Kafka 4.3.1 showed:

- Coordinates and main classes (``kafka.Kafka``, ``kafka.tools.StorageTool`` with
  ``random-uuid`` / ``format -t ID -c FILE --standalone`` / ``-g``): correct. So is
  "``--standalone`` must not be combined with ``controller.quorum.voters``": format
  refuses with "You cannot specify controller.quorum.voters and format the node with
  ... --standalone"; this node uses ``controller.quorum.bootstrap.servers`` instead.
- "The log binding is not in the published POM": half right. ``kafka_2.13`` 4.3.1
  already depends on ``log4j-api`` and ``log4j-core`` 2.25.4 at runtime; only the SLF4J
  binding is missing. ``log4j-slf4j-impl`` 2.25.4 works; ``log4j-slf4j2-impl`` indeed
  gives "SLF4J: Defaulting to no-operation (NOP) logger" and a silent broker.
  ``slf4j-simple`` 1.7.36 works as the fallback (profile ``slf4j-simple``).
- "RF 1 / min ISR 1 for offsets.topic, transaction.state.log, share.coordinator.state.topic":
  there is no ``offsets.topic.min.isr`` setting; ``__consumer_offsets`` follows the broker's
  ``min.insync.replicas`` (default 1, and ``format`` also writes 1). The other two do have
  ``*.min.isr`` settings (default 2) and need them set to 1.
- Not mentioned: after a SIGKILL (crash test) the restarted node cannot register until
  the old registration's ``broker.session.timeout.ms`` (9 s) runs out; lowered to 3 s.
- Not mentioned but worth changing for a test broker: ``offsets.topic.num.partitions`` and
  ``share.coordinator.state.topic.num.partitions`` default to 50 (slow first group join),
  and ``log.cleaner.dedupe.buffer.size`` defaults to 128 MiB of heap, which a small heap
  cannot spare. All are lowered here.
- "The broker opens its PLAINTEXT port only once it is serving": confirmed (the first TCP
  connect and the first metadata answer were ~30 ms apart, after "Enabling request
  processing"). Readiness here is still an aiokafka metadata call that lists a broker,
  after a plain TCP probe that keeps aiokafka from logging an ERROR per refused attempt.
- Restarting on an existing, ``--standalone``-formatted data dir with *different* ports
  works (single voter), but ports are still reused across runs when free, so a bootstrap
  address written into ``var/stack.env`` stays valid.
- Heap: 1 GiB is not needed. With ``-Xmx512m -Xms64m -XX:+UseSerialGC`` the broker's RSS
  was ~210 MB after creating the 36 contract topics and moving 2000 messages, the same
  as with ``-Xmx256m``; start to first metadata answer ~1.8 s warm (2 cores).

Optional SASL (``KafkaBroker(..., sasl_users={"privacy": "secret"})``; off by default, and then
nothing below changes the configuration): a second client listener ``SASL_PLAINTEXT`` on its own
port (``sasl_bootstrap``) next to the PLAINTEXT one, which stays for admin and inter-broker
traffic; the ``CONTROLLER`` listener stays PLAINTEXT, so no ``sasl.mechanism.controller.protocol``
is needed. What Kafka 4.3.1 KRaft accepted:

- ``listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512`` and one
  ``listener.name.sasl_plaintext.<mechanism lower-case>.sasl.jaas.config`` per mechanism: for PLAIN
  ``PlainLoginModule required user_<name>="<password>";`` (the broker-side ``username``/``password``
  options are only for inter-broker SASL, unused here); for SCRAM ``ScramLoginModule required;``.
- SCRAM credentials live in the KRaft metadata log, not in JAAS. They are written when the data dir
  is formatted (``StorageTool format --add-scram 'SCRAM-SHA-512=[name=u,password="p"]'``), so a
  SASL broker needs a fresh root: users added later to an already formatted dir get PLAIN only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from devstack._proc import (
    PID_FILE_NAME,
    DevstackError,
    ManagedProcess,
    PidRecord,
    free_port,
    port_is_free,
    say,
    spawn,
    start_on_free_ports,
    tail,
)

KAFKA_VERSION = "4.3.1"
POM_FILE = Path(__file__).with_name("kafka") / "pom.xml"
LOG4J_FILE = Path(__file__).with_name("kafka") / "log4j2.xml"
#: Measured on Kafka 4.3.1 / JDK 17: a 256 MiB heap serves the test suite; 512 MiB leaves
#: headroom for ``make run`` with three services. The stock scripts use 1 GiB.
DEFAULT_HEAP = "512m"
#: A local broker compiles with C1 only (-XX:TieredStopAtLevel=1) unless asked for its peak speed:
#: measured on this 2-core machine, that took its CPU from 3.4 to 2.1 s until ready and from 8.1 to
#: 4.9 s over a minute of light test traffic. The bench asks for the optimising compiler (C2), which
#: serves a saturating load faster, so its figures describe a broker as deployed.
MIN_JAVA = 17
#: SASL mechanisms enabled on the optional SASL_PLAINTEXT listener.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_LISTENER = "SASL_PLAINTEXT"


@functools.cache
def find_java() -> str:
    """The ``java`` executable ($JAVA_HOME first), checked to be Java 17 or newer (cached)."""
    candidates = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidates.append(str(Path(java_home) / "bin" / "java"))
    found = shutil.which("java")
    if found:
        candidates.append(found)
    for java in candidates:
        if os.access(java, os.X_OK):
            version = java_major_version(java)
            if version >= MIN_JAVA:
                return java
            raise DevstackError(
                f"{java} is Java {version}; the Kafka {KAFKA_VERSION} broker needs Java {MIN_JAVA}+ "
                "(Debian: apt-get install -y openjdk-17-jre-headless)"
            )
    raise DevstackError(
        "java not found: the local Kafka broker needs Java 17+ on PATH or in $JAVA_HOME "
        "(Debian: apt-get install -y openjdk-17-jre-headless), or set KAFKA_BOOTSTRAP_SERVERS "
        "to use an existing broker"
    )


def java_major_version(java: str) -> int:
    """Major version from ``java -version`` (printed on stderr, e.g. ``"17.0.15"``)."""
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_mvn() -> str:
    """The ``mvn`` executable, with a message that says what to do when it is missing."""
    found = shutil.which("mvn")
    if found is None:
        raise DevstackError(
            "mvn (Apache Maven) not found: it is needed once to fetch the Kafka broker jars "
            "from Maven Central (Debian: apt-get install -y maven), or set "
            "KAFKA_BOOTSTRAP_SERVERS to use an existing broker"
        )
    return found


def _pom_digest() -> str:
    return hashlib.sha256(POM_FILE.read_bytes()).hexdigest()


def ensure_kafka_libs(cache_dir: Path) -> Path:
    """Resolve the broker jars into ``<cache_dir>/kafka-libs`` once; later calls are free.

    The folder carries a marker with the pom's hash, so editing the pom re-resolves.
    A file lock serialises concurrent runs; the jars land in a temporary folder that is
    renamed into place, so a killed resolve never leaves a half-filled folder behind.
    Maven's own cache (~/.m2) makes a re-resolve after deleting var/ quick.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    libs = cache_dir / "kafka-libs"
    marker = libs / ".resolved"
    digest = _pom_digest()
    if marker.is_file() and marker.read_text().split()[0] == digest:
        return libs
    with open(cache_dir / ".kafka-libs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().split()[0] == digest:
            return libs
        mvn = find_mvn()
        tmp = cache_dir / f"kafka-libs.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.monotonic()
        say(f"resolving Apache Kafka {KAFKA_VERSION} broker jars with Maven into {libs} (first run only)")
        binding = "log4j-slf4j-impl"
        error = _mvn_copy(mvn, tmp, profile=None)
        if error is not None:
            say(f"resolving with the log4j binding failed, falling back to slf4j-simple:\n{error}")
            shutil.rmtree(tmp, ignore_errors=True)
            binding = "slf4j-simple"
            error = _mvn_copy(mvn, tmp, profile="slf4j-simple")
            if error is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                raise DevstackError(f"mvn could not resolve the Kafka broker:\n{error}")
        if not (tmp / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
            raise DevstackError(f"mvn finished but kafka_2.13-{KAFKA_VERSION}.jar is not in {tmp}")
        (tmp / ".resolved").write_text(f"{digest} {binding}\n")
        shutil.rmtree(libs, ignore_errors=True)
        tmp.replace(libs)
        say(f"resolved {len(list(libs.glob('*.jar')))} jars in {time.monotonic() - started:.1f}s")
    return libs


def _mvn_copy(mvn: str, out: Path, profile: str | None) -> str | None:
    argv = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(POM_FILE),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={out}",
    ]
    if profile:
        argv[1:1] = ["-P", profile]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return (result.stdout + result.stderr)[-4000:]
    return None


def random_cluster_id() -> str:
    """What `kafka-storage random-uuid` prints (Kafka's Uuid: 16 random bytes, URL-safe base64 without
    padding, never starting with '-'), without starting a JVM for it (about a second of CPU)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker(ManagedProcess):
    """One combined KRaft node on 127.0.0.1 with its data under ``<root>/kafka``.

    ``restart()`` keeps ports and data, so clients and fault tests see the same broker
    come back. All methods that wait are async; stopping is by pid (SIGTERM, then SIGKILL).
    """

    name = "kafka"
    label = "kafka broker"

    def __init__(
        self,
        root: Path,
        libs_dir: Path | None = None,
        *,
        cache_dir: Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        controller_port: int | None = None,
        num_partitions: int = 4,
        heap: str = DEFAULT_HEAP,
        peak_jit: bool = False,
        sasl_users: Mapping[str, str] | None = None,
        sasl_port: int | None = None,
    ) -> None:
        self.dir = Path(root).resolve() / "kafka"
        self.data_dir = self.dir / "data"
        self.log_file = self.dir / "broker.log"
        self.pid_file = self.dir / PID_FILE_NAME
        self.props_file = self.dir / "server.properties"
        self.cache_dir = Path(cache_dir or root).resolve()
        self._libs_dir = libs_dir
        self.host = host
        self.num_partitions = num_partitions
        self.heap = heap
        self.peak_jit = peak_jit
        #: Ports the caller chose, or that clients use (after the first start), are kept.
        self._ports_fixed = port is not None or controller_port is not None or sasl_port is not None
        self.port, self.controller_port = self._choose_ports(port, controller_port)
        #: user -> password for the SASL_PLAINTEXT listener; empty means no SASL listener at all.
        self.sasl_users: dict[str, str] = dict(sasl_users or {})
        for user, password in self.sasl_users.items():
            _check_sasl_value("user name", user)
            _check_sasl_value("password", password)
        self.sasl_port: int | None = self._choose_sasl_port(sasl_port) if self.sasl_users else None
        self._popen: subprocess.Popen[bytes] | None = None
        self._record: PidRecord | None = None

    @property
    def bootstrap(self) -> str:
        """The PLAINTEXT address clients use (``KAFKA_BOOTSTRAP_SERVERS``)."""
        return f"{self.host}:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """The SASL_PLAINTEXT address (only when the broker was made with ``sasl_users``)."""
        if self.sasl_port is None:
            raise DevstackError("this broker has no SASL listener (pass sasl_users=...)")
        return f"{self.host}:{self.sasl_port}"

    @property
    def pid(self) -> int | None:
        return self._record.pid if self._record else None

    def _choose_ports(
        self, port: int | None, controller_port: int | None, *, reuse: bool = True
    ) -> tuple[int, int]:
        """Reuse last run's ports when still free (stable addresses), else take new free ones."""
        saved = self.dir / "ports.json"
        if reuse and port is None and controller_port is None and saved.is_file():
            with contextlib.suppress(ValueError, KeyError, OSError):
                old = json.loads(saved.read_text())
                p, c = int(old["port"]), int(old["controller_port"])
                if port_is_free(p, self.host) and port_is_free(c, self.host):
                    return p, c
        port = port or free_port(self.host)
        controller_port = controller_port or free_port(self.host)
        while controller_port == port:
            controller_port = free_port(self.host)
        return port, controller_port

    def _choose_sasl_port(self, sasl_port: int | None, *, reuse: bool = True) -> int:
        """Like ``_choose_ports``: last run's SASL port when still free, else a new free one."""
        taken = {self.port, self.controller_port}
        saved = self.dir / "ports.json"
        if reuse and sasl_port is None and saved.is_file():
            with contextlib.suppress(ValueError, KeyError, OSError, TypeError):
                old = int(json.loads(saved.read_text())["sasl_port"])
                if old not in taken and port_is_free(old, self.host):
                    return old
        sasl_port = sasl_port or free_port(self.host)
        while sasl_port in taken:
            sasl_port = free_port(self.host)
        return sasl_port

    def _sasl_properties(self) -> dict[str, str]:
        """Overrides and additions for the optional SASL_PLAINTEXT listener."""
        sasl = f"{SASL_LISTENER}://{self.host}:{self.sasl_port}"
        prefix = f"listener.name.{SASL_LISTENER.lower()}"
        plain_users = " ".join(f'user_{user}="{password}"' for user, password in self.sasl_users.items())
        props = {
            "listeners": f"PLAINTEXT://{self.host}:{self.port},{sasl},"
            f"CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port},{sasl}",
            "listener.security.protocol.map": (
                f"PLAINTEXT:PLAINTEXT,{SASL_LISTENER}:{SASL_LISTENER},CONTROLLER:PLAINTEXT"
            ),
            f"{prefix}.sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            f"{prefix}.plain.sasl.jaas.config": (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
            ),
        }
        for mechanism in SASL_MECHANISMS:
            if mechanism.startswith("SCRAM-"):
                props[f"{prefix}.{mechanism.lower()}.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
        return props

    def _scram_format_args(self) -> list[str]:
        """``--add-scram`` arguments giving every SASL user a credential for each SCRAM mechanism."""
        args: list[str] = []
        for mechanism in SASL_MECHANISMS:
            if mechanism.startswith("SCRAM-"):
                for user, password in self.sasl_users.items():
                    args += ["--add-scram", f'{mechanism}=[name={user},password="{password}"]']
        return args

    def server_properties(self) -> str:
        """The broker configuration (one combined node; replication 1 everywhere)."""
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.num_partitions),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            # After a SIGKILL the restarted node is refused (DUPLICATE_BROKER_REGISTRATION)
            # until its old registration's session expires: 9 s by default, 3 s here.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "750",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.retention.hours": "168",
        }
        if self.sasl_users:
            props.update(self._sasl_properties())
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _java_argv(self, libs: Path, main: str, *args: str, heap: str, quick_exit: bool = False) -> list[str]:
        # A tool that runs for a second gains nothing from the optimising compiler (about 30% of its CPU);
        # the broker skips it too unless asked for its peak speed (DEFAULT_HEAP's note).
        jit = ["-XX:TieredStopAtLevel=1"] if quick_exit or not self.peak_jit else []
        return [
            find_java(),
            f"-Xmx{heap}",
            "-Xms64m",
            "-XX:+UseSerialGC",
            *jit,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_FILE}",
            f"-Dkafka.logs.dir={self.dir}",
            "-Dorg.slf4j.simpleLogger.logFile=System.err",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp",
            str(libs / "*"),
            main,
            *args,
        ]

    def preflight(self) -> None:
        """Fail before anything starts when java (or, for a first run, mvn) is missing."""
        find_java()
        if self._libs_dir is None and not (self.cache_dir / "kafka-libs" / ".resolved").is_file():
            find_mvn()

    def _libs(self) -> Path:
        if self._libs_dir is None:
            self._libs_dir = ensure_kafka_libs(self.cache_dir)
        return self._libs_dir

    def _format_storage(self, libs: Path) -> None:
        """Give a fresh data dir a cluster id (``--standalone``: this node is the only voter)."""
        if (self.data_dir / "meta.properties").is_file():
            return
        with open(self.log_file, "ab") as log:
            fmt = subprocess.run(
                self._java_argv(
                    libs,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    random_cluster_id(),
                    "-c",
                    str(self.props_file),
                    "--standalone",
                    "-g",
                    *self._scram_format_args(),
                    heap="128m",
                    quick_exit=True,
                ),
                stdout=log,
                stderr=log,
                check=False,
            )
        if fmt.returncode != 0:
            raise DevstackError(f"kafka StorageTool format failed:\n{tail(self.log_file)}")

    def _prepare(self) -> list[str]:
        """Blocking part of start: resolve jars, write config, format storage."""
        libs = self._libs()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.props_file.write_text(self.server_properties())
        ports: dict[str, int] = {"port": self.port, "controller_port": self.controller_port}
        if self.sasl_port is not None:
            ports["sasl_port"] = self.sasl_port
        (self.dir / "ports.json").write_text(json.dumps(ports))
        self._format_storage(libs)
        return self._java_argv(libs, "kafka.Kafka", str(self.props_file), heap=self.heap)

    async def start(self, within: float = 90.0) -> None:
        """Start the broker and wait until it answers a metadata request."""
        if self.is_running():
            return
        started = time.monotonic()
        fresh = not (self.data_dir / "meta.properties").is_file()

        async def launch() -> None:
            argv = await asyncio.to_thread(self._prepare)
            self._popen, self._record = spawn(
                self.name, argv, log_file=self.log_file, pid_file=self.pid_file, cwd=self.dir
            )
            say(f"kafka broker starting on {self.bootstrap} (pid {self._popen.pid}, heap {self.heap})")

        def new_ports() -> None:
            self.port, self.controller_port = self._choose_ports(None, None, reuse=False)
            if self.sasl_port is not None:
                self.sasl_port = self._choose_sasl_port(None, reuse=False)
            if fresh:  # formatted with the old controller address: format again
                shutil.rmtree(self.data_dir, ignore_errors=True)

        log_size = await start_on_free_ports(
            "kafka broker", self.log_file, launch, lambda: self._wait_ready(started + within),
            None if self._ports_fixed else new_ports,
        )
        self._ports_fixed = True  # clients use them now: a restart keeps them
        self._check_logging(log_size)
        sasl = f" (SASL_PLAINTEXT on {self.sasl_bootstrap})" if self.sasl_port is not None else ""
        say(f"kafka ready on {self.bootstrap}{sasl} in {time.monotonic() - started:.1f}s")

    async def _wait_ready(self, deadline: float) -> None:
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if self._popen is not None and self._popen.poll() is not None:
                raise DevstackError(
                    f"kafka broker exited with code {self._popen.returncode}:\n{tail(self.log_file)}"
                )
            if not await _tcp_open(self.host, self.port):
                # Probe with a plain connect first: aiokafka logs an ERROR per refused attempt.
                await asyncio.sleep(0.1)
                continue
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
            try:
                await admin.start()
                cluster = await admin.describe_cluster()
                if cluster.get("brokers") and (
                    self.sasl_port is None or await _tcp_open(self.host, self.sasl_port)
                ):
                    return
            except Exception as exc:
                last_error = exc
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()
            await asyncio.sleep(0.25)
        raise DevstackError(
            f"kafka broker not ready on {self.bootstrap} in time ({last_error!r}):\n{tail(self.log_file)}"
        )

    def _check_logging(self, offset: int) -> None:
        """Warn when the broker logs nothing: the sign of a missing SLF4J 1.7 binding."""
        with contextlib.suppress(OSError), open(self.log_file, "rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", "replace")
            if "NOP" in text or " INFO " not in text:
                say(f"warning: the kafka broker does not seem to log (check the SLF4J binding in {POM_FILE})")

    def rss_bytes(self) -> int:
        """Resident memory of the broker JVM (0 when not running)."""
        proc = self._record.process() if self._record else None
        return proc.memory_info().rss if proc else 0


def _check_sasl_value(what: str, value: str) -> None:
    """Refuse what would need quoting in a JAAS line, a properties file or ``--add-scram``."""
    if not value or re.search(r'["\\,\[\]=\s]', value) or not value.isascii():
        raise DevstackError(
            f"SASL {what} {value!r} must be non-empty printable ASCII without quotes, "
            "backslashes, commas, brackets, '=' or spaces"
        )


async def _tcp_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (TimeoutError, OSError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
