"""`python -m devstack.system`: the whole system on the embedded stack (what `make run` does).

Starts Kafka, PostgreSQL and the SMTP sink under var/, then the consent, dsar and notifier services and
the privacy center as processes, and stand-ins for the downstream systems (`devstack/standins.py`),
prints where to look, and stops everything it started on Ctrl-C / SIGTERM.
A master key, an admin token and a service token are generated once into var/secrets.env (never committed).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devstack.stack import Stack, default_var_dir

SERVICES = (("consent", "CONSENT_WEB_PORT", 6066), ("dsar", "DSAR_WEB_PORT", 6067),
            ("notifier", "NOTIFIER_WEB_PORT", 6068), ("privacy_center", "PRIVACY_CENTER_WEB_PORT", 6069))
ROOT = Path(__file__).resolve().parent.parent
#: The privacy office's local operator (signs in with OFFICE_OPERATOR_TOKEN from var/secrets.env).
OFFICE_OPERATOR = "operator"


def say(message: str) -> None:
    print(f"[run] {message}", file=sys.stderr, flush=True)


def local_secrets(var_dir: Path) -> dict[str, str]:
    """Secrets for the local system: from the environment if set, else generated once and kept."""
    path = var_dir / "secrets.env"
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key and value:
                stored[key] = value
    stored.setdefault("PRIVACY_MASTER_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    stored.setdefault("ADMIN_TOKEN", secrets.token_urlsafe(24))
    stored.setdefault("SERVICE_TOKEN", secrets.token_urlsafe(24))
    # A personal token for the privacy office (only its hash goes into OFFICE_OPERATORS).
    stored.setdefault("OFFICE_OPERATOR_TOKEN", secrets.token_urlsafe(24))
    path.write_text("".join(f"{k}={v}\n" for k, v in stored.items()))
    path.chmod(0o600)
    return {k: os.environ.get(k) or v for k, v in stored.items()}


def service_env(stack_env: dict[str, str], secret_env: dict[str, str], var_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(stack_env)
    env.update(secret_env)
    env.setdefault("STATE_DIR", str(var_dir / "state"))
    ports = {name: int(env.get(var, default)) for name, var, default in SERVICES}
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{ports['dsar']}")
    env.setdefault("CONSENT_BASE_URL", f"http://127.0.0.1:{ports['consent']}")
    env.setdefault("CONSENT_PUBLIC_URL", f"http://127.0.0.1:{ports['consent']}")
    env.setdefault("DSAR_BASE_URL", f"http://127.0.0.1:{ports['dsar']}")
    env.setdefault("NOTIFIER_BASE_URL", f"http://127.0.0.1:{ports['notifier']}")
    env.setdefault("PRIVACY_CENTER_URL", f"http://127.0.0.1:{ports['privacy_center']}")
    digest = hashlib.sha256(secret_env["OFFICE_OPERATOR_TOKEN"].encode()).hexdigest()
    env.setdefault("OFFICE_OPERATORS", f"{OFFICE_OPERATOR}:{digest}")
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def wait_ready(url: str, process: subprocess.Popen[bytes], name: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see var/log/{name}.log")
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{name} not ready after {timeout}s; see var/log/{name}.log")


async def main() -> int:
    var_dir = default_var_dir()
    began = time.monotonic()
    stack = Stack(var_dir / "stack", cache_dir=var_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        endpoints = await stack.start()
        stack.write_env_file(var_dir / "stack.env")
        env = service_env(endpoints.env(), local_secrets(var_dir), var_dir)
        (var_dir / "log").mkdir(exist_ok=True)
        for name, _port_var, _default in SERVICES:
            log = (var_dir / "log" / f"{name}.log").open("ab")
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}", "worker", "-l", "warning"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            processes.append((name, process))
        # Only on the embedded broker by default: on a shared one, stand-ins would answer the real
        # systems' commands (and erasures would be confirmed that no system carried out).
        standins = os.environ.get("DOWNSTREAM_STANDINS", "1" if stack.kafka is not None else "0") != "0"
        if standins:  # the downstream systems, played locally so that cases can complete
            log = (var_dir / "log" / "standins.log").open("ab")
            processes.append(("standins", subprocess.Popen(
                [sys.executable, "-m", "devstack.standins"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )))
        log = (var_dir / "log" / "office.log").open("ab")
        processes.append(("office", subprocess.Popen(
            [sys.executable, "-m", "services.office"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )))
        office_port = int(env.get("OFFICE_WEB_PORT", 6070))
        for name, port_var, default in (*SERVICES, ("office", "OFFICE_WEB_PORT", 6070)):
            port = int(env.get(port_var, default))
            await wait_ready(f"http://127.0.0.1:{port}", dict(processes)[name], name)
        say(f"system up in {time.monotonic() - began:.1f}s")
        ports = {name: int(env.get(var, default)) for name, var, default in SERVICES}
        systems = ("played by local stand-ins that answer every command (var/log/standins.log; "
                   "DOWNSTREAM_STANDINS=0 leaves them to real systems)" if standins
                   else "not played: cases wait for real systems to answer (DOWNSTREAM_STANDINS=1 plays "
                        "them, on a broker of your own only)")
        print(f"""
  Privacy services are running.

  Privacy center (for people; sign in with a registered address, the link arrives as an email):
                 {env['PRIVACY_CENTER_URL']}/
  Emails (one .eml file per message):  {endpoints.mail_dir}
  Consent API:   http://127.0.0.1:{ports['consent']}/v1/decisions?subject=<id>&purpose=marketing_email
  DSAR API:      http://127.0.0.1:{ports['dsar']}/v1/requests/<request_id>
  Operator API:  http://127.0.0.1:{ports['dsar']}/v1/admin/requests  (Authorization: Bearer $ADMIN_TOKEN)
  Privacy office: http://127.0.0.1:{office_port}/  sign in with the token {env['OFFICE_OPERATOR_TOKEN']}
                 (as "{OFFICE_OPERATOR}"; OFFICE_OPERATOR_TOKEN in var/secrets.env), or ADMIN_TOKEN as "admin"
  Downstream systems: {systems}
  Metrics:       /metrics on ports {ports['consent']}, {ports['dsar']}, {ports['notifier']}, {ports['privacy_center']}
  Kafka:         {endpoints.kafka_bootstrap}     PostgreSQL: {endpoints.database_url}
  Secrets:       {var_dir / 'secrets.env'}   Stack env: {var_dir / 'stack.env'}   Logs: {var_dir / 'log'}/

  Try:  set -a; . var/stack.env; . var/secrets.env; set +a
        .venv/bin/privacyctl publish merger-notice --file examples/merger-notice.json
  Ctrl-C stops everything.
""", flush=True)
        await stop.wait()
        say("stopping")
        return 0
    finally:
        for _name, process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _name, process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        await stack.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
