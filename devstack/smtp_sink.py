"""An SMTP sink: a real SMTP server (aiosmtpd) that keeps every message as an ``.eml`` file.

Run as its own process so it can be stopped and restarted like a real mail server:

    python -m devstack.smtp_sink --host 127.0.0.1 --port 2525 --maildir var/smtp/mail

Each accepted message becomes one file per recipient, ``<ns-time>-<seq>-<rand>-<rcpt>.eml``,
with ``Return-Path``, ``Delivered-To`` and ``Received`` headers prepended the way a
mail delivery agent would, so a person can open it in any mail client. Files are
written to ``<maildir>/tmp/`` and renamed into place, so a reader never sees half a file.

Fault injection: while a file named ``REFUSE`` exists in the control dir (default: the
maildir's parent), every RCPT and DATA is answered ``451 4.3.0 temporarily refusing``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.policy
import itertools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, localtime
from pathlib import Path
from typing import Any

from devstack._proc import (
    PID_FILE_NAME,
    DevstackError,
    ManagedProcess,
    PidRecord,
    free_port,
    port_is_free,
    say,
    spawn,
    tail,
)

REFUSE_FILE = "REFUSE"
REFUSE_REPLY = "451 4.3.0 temporarily refusing"
HOSTNAME = "devstack-smtp"
_seq = itertools.count()
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def _safe(address: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", address)[:80] or "unknown"


class MaildirHandler:
    """aiosmtpd handler: refuse while REFUSE exists, else store one file per recipient."""

    def __init__(self, maildir: Path, control_dir: Path) -> None:
        self.maildir = maildir
        self.control_dir = control_dir
        self.tmp_dir = maildir / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def refusing(self) -> bool:
        return (self.control_dir / REFUSE_FILE).exists()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.refusing():
            return REFUSE_REPLY
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refusing():
            return REFUSE_REPLY
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        # The client's port too: it tells one SMTP session's messages from another's.
        peer = f"[{session.peer[0]}]:{session.peer[1]}" if session.peer else "[unknown]"
        helo = session.host_name or "unknown"
        now = format_datetime(localtime())
        for rcpt in envelope.rcpt_tos:
            head = (
                f"Return-Path: <{envelope.mail_from}>\r\n"
                f"Delivered-To: {rcpt}\r\n"
                f"Received: from {helo} ({peer}) by {HOSTNAME} for <{rcpt}>; {now}\r\n"
            ).encode()
            self._store(rcpt, head + content)
        print(
            f"accepted message from {envelope.mail_from} for {len(envelope.rcpt_tos)} recipient(s)",
            file=sys.stderr,
            flush=True,
        )
        return "250 Message accepted for delivery"

    def _store(self, rcpt: str, data: bytes) -> Path:
        name = f"{time.time_ns()}-{next(_seq):06d}-{uuid.uuid4().hex[:8]}-{_safe(rcpt)}.eml"
        tmp = self.tmp_dir / name
        with open(tmp, "wb") as fh:
            fh.write(data)
        final = self.maildir / name
        os.replace(tmp, final)
        return final


async def serve(host: str, port: int, maildir: Path, control_dir: Path) -> None:
    """Serve until SIGTERM/SIGINT."""
    from aiosmtpd.smtp import SMTP

    handler = MaildirHandler(maildir, control_dir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname=HOSTNAME,
            ident="devstack SMTP sink",
            enable_SMTPUTF8=True,
            decode_data=False,
            data_size_limit=50 * 1024 * 1024,
        ),
        host=host,
        port=port,
        reuse_address=True,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"smtp sink listening on {host}:{port}, maildir {maildir}", file=sys.stderr, flush=True)
    await stop.wait()
    server.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 2.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.smtp_sink", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    parser.add_argument("--control-dir", type=Path, default=None, help="where REFUSE is looked for")
    args = parser.parse_args(argv)
    maildir: Path = args.maildir.resolve()
    maildir.mkdir(parents=True, exist_ok=True)
    control_dir: Path = (args.control_dir or maildir.parent).resolve()
    asyncio.run(serve(args.host, args.port, maildir, control_dir))


# --- reading what arrived -------------------------------------------------------------


def message_files(maildir: Path) -> list[Path]:
    """Stored messages, oldest first (file names start with the arrival time in ns)."""
    maildir = Path(maildir)
    return sorted(maildir.glob("*.eml")) if maildir.is_dir() else []


def read_messages(maildir: Path, containing: str | None = None) -> list[EmailMessage]:
    """Every stored message, parsed (``email.policy.default``), oldest first.

    `containing` (e.g. an address) skips, unparsed, every file whose raw bytes do not hold it: parsing
    is the slow part once a test session has stored thousands of messages."""
    parser = BytesParser(policy=email.policy.default)
    needle = containing.encode() if containing is not None else None
    messages: list[EmailMessage] = []
    for path in message_files(maildir):
        raw = path.read_bytes()
        if needle is not None and needle not in raw:
            continue
        msg = parser.parsebytes(raw)
        assert isinstance(msg, EmailMessage)
        messages.append(msg)
    return messages


def count_messages(maildir: Path) -> int:
    return len(message_files(maildir))


async def wait_for_messages(maildir: Path, count: int, within: float = 10.0) -> list[EmailMessage]:
    """Wait until at least ``count`` messages are stored; for tests of asynchronous senders."""
    deadline = time.monotonic() + within
    while count_messages(maildir) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count_messages(maildir)} of {count} messages arrived in {maildir}")
        await asyncio.sleep(0.05)
    return read_messages(maildir)


def set_refusing(control_dir: Path, refuse: bool = True) -> None:
    """Switch the sink's 451 fault mode on or off (takes effect on the next command)."""
    flag = Path(control_dir) / REFUSE_FILE
    if refuse:
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.touch()
    else:
        flag.unlink(missing_ok=True)


# --- managing the sink process ----------------------------------------------------------


class SmtpSink(ManagedProcess):
    """The sink as a child process: ``<root>/smtp/mail`` holds mail, ``<root>/smtp`` is control."""

    name = "smtp"
    label = "smtp sink"
    stop_grace = 10.0

    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.dir = Path(root).resolve() / "smtp"
        self.mail_dir = self.dir / "mail"
        self.control_dir = self.dir
        self.log_file = self.dir / "smtp.log"
        self.pid_file = self.dir / PID_FILE_NAME
        self.host = host
        self.port = port or self._saved_port() or free_port(host)
        self._popen: subprocess.Popen[bytes] | None = None
        self._record: PidRecord | None = None

    def _saved_port(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            old = int((self.dir / "port").read_text())
            if port_is_free(old, self.host):
                return old
        return None

    @property
    def pid(self) -> int | None:
        return self._record.pid if self._record else None

    def refuse(self, on: bool = True) -> None:
        """Fault injection: answer 451 to every RCPT/DATA while on."""
        set_refusing(self.control_dir, on)

    def messages(self) -> list[EmailMessage]:
        return read_messages(self.mail_dir)

    def clear(self) -> None:
        """Delete stored messages (between tests that count mail)."""
        for path in message_files(self.mail_dir):
            path.unlink(missing_ok=True)

    async def start(self, within: float = 20.0) -> None:
        if self.is_running():
            return
        started = time.monotonic()
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "port").write_text(str(self.port))
        package_parent = str(_PACKAGE_PARENT)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        argv = [
            sys.executable,
            "-m",
            "devstack.smtp_sink",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--maildir",
            str(self.mail_dir),
            "--control-dir",
            str(self.control_dir),
        ]
        self._popen, self._record = spawn(
            self.name, argv, log_file=self.log_file, pid_file=self.pid_file, cwd=self.dir, env=env
        )
        await self._wait_ready(started + within)
        say(f"smtp sink ready on {self.host}:{self.port} (pid {self._popen.pid}), mail in {self.mail_dir}")

    async def _wait_ready(self, deadline: float) -> None:
        """Ready = the 220 greeting arrives (then QUIT politely)."""
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if self._popen is not None and self._popen.poll() is not None:
                raise DevstackError(
                    f"smtp sink exited with code {self._popen.returncode}:\n{tail(self.log_file)}"
                )
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 2)
                try:
                    greeting = await asyncio.wait_for(reader.readline(), 2)
                    writer.write(b"QUIT\r\n")
                    await writer.drain()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
                if greeting.startswith(b"220"):
                    return
            except (TimeoutError, OSError) as exc:
                last_error = exc
            await asyncio.sleep(0.05)
        raise DevstackError(
            f"smtp sink not ready on port {self.port} ({last_error!r}):\n{tail(self.log_file)}"
        )


if __name__ == "__main__":
    main()
