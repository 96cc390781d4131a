"""``python -m devstack up|down|status``: run the local stack in the foreground, or stop one.

``up`` starts everything under ``var/`` (or ``--root``), creates the topics, writes
``var/stack.env`` and blocks until Ctrl-C or SIGTERM, then stops what it started.
``down`` stops a stack from another shell (or one whose ``up`` died) using the pid files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path

from devstack._proc import DevstackError, iter_pid_files, read_pid_file, say, stop_process, stop_recorded
from devstack.stack import OWNER_FILE, Stack, default_var_dir


async def _up(args: argparse.Namespace) -> int:
    stack = Stack(args.root, cache_dir=args.cache_dir, partitions=args.partitions, durable=not args.fast)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    for name in ("stack.env", "stack.json"):  # a stale file must not look like a ready stack
        with contextlib.suppress(OSError):
            (stack.root / name).unlink()
    try:
        endpoints = await stack.start()
        env_file = stack.write_env_file(args.env_file)
        (stack.root / "stack.json").write_text(
            json.dumps({**endpoints.env(), "MAIL_DIR": str(endpoints.mail_dir)}, indent=2) + "\n"
        )
        say(f"environment written to {env_file} (source it in a shell)")
        for key, value in endpoints.env().items():
            print(f"{key}={value}", flush=True)
        say(f"mail lands in {endpoints.mail_dir}; press Ctrl-C to stop")
        if args.ready_file:
            await asyncio.to_thread(Path(args.ready_file).write_text, "ready\n")
        await stop.wait()
        say("stopping")
    finally:
        await stack.stop()
        for name in ("stack.env", "stack.json"):
            with contextlib.suppress(OSError):
                (stack.root / name).unlink()
    return 0


def _down(args: argparse.Namespace) -> int:
    root: Path = args.root
    owner = read_pid_file(root / OWNER_FILE)
    proc = owner.process() if owner else None
    if owner is not None and proc is not None:
        say(f"asking the stack owner (pid {owner.pid}) to stop")
        stop_process(owner, ((signal.SIGTERM, 60.0),))
    stopped = stop_recorded(root)
    with contextlib.suppress(OSError):
        (root / OWNER_FILE).unlink()
    if proc is None and not stopped:
        say(f"no running stack recorded in {root}")
    return 0


def _status(args: argparse.Namespace) -> int:
    running = 0
    for pid_file in iter_pid_files(args.root):
        record = read_pid_file(pid_file)
        if record is None:
            continue
        alive = record.process() is not None
        running += alive
        print(f"{record.name:10} pid {record.pid:<8} {'running' if alive else 'gone'}")
    env_file = args.root / "stack.env"
    if env_file.is_file():
        print(env_file.read_text(), end="")
    return 0 if running else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Kafka, PostgreSQL and the SMTP sink; block until Ctrl-C")
    up.add_argument("--partitions", type=int, default=4, help="partitions per subject/command topic")
    up.add_argument("--fast", action="store_true", help="fsync off (data may be lost on a crash)")
    up.add_argument(
        "--cache-dir", type=Path, default=None, help="where the Kafka jars are cached (default var/)"
    )
    up.add_argument("--env-file", type=Path, default=None, help="default <root>/stack.env")
    up.add_argument("--ready-file", type=Path, default=None, help="touched once everything is up")
    for name in ("down", "status"):
        sub.add_parser(name, help=f"{name} the stack recorded in the root dir")
    for p in sub.choices.values():
        p.add_argument("--root", type=Path, default=default_var_dir(), help="run dir (default var/)")
    args = parser.parse_args(argv)
    args.root = args.root.resolve()
    began = time.monotonic()
    try:
        if args.command == "up":
            return asyncio.run(_up(args))
        if args.command == "down":
            return _down(args)
        return _status(args)
    except DevstackError as exc:
        say(f"error: {exc}")
        return 2
    finally:
        if args.command == "down":
            say(f"down in {time.monotonic() - began:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
