"""privacyctl against the running system (issue 6, "Must show"): the real CLI, as a process, with the
environment `make run` tells a person to load (`set -a; . var/stack.env; . var/secrets.env; set +a`).
It publishes a consent change and shows the resulting decision, lists a case and rejects it with a
reason, and verifies the audit chain. tests/ops/test_privacyctl.py covers the rest without servers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.stack import Stack
from tests.helpers import TEST_ADMIN_TOKEN, TEST_MASTER_KEY, ServiceProcess, subject_id, wait_until

pytestmark = pytest.mark.stack

#: The installed console script (what an operator runs); `python -m privacyctl` if it is not installed.
_SCRIPT = shutil.which("privacyctl", path=str(Path(sys.executable).parent))
PRIVACYCTL = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "privacyctl"]
#: Loads the two files exactly as `make run` prints, then runs privacyctl with the given arguments.
LOAD_AND_RUN = 'set -a; . "$1"; . "$2"; set +a; shift 2; exec "$@"'


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Ctl:
    stack_env: Path
    secrets_env: Path
    env: dict[str, str]

    async def __call__(self, *args: str) -> Result:
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", LOAD_AND_RUN, "privacyctl", str(self.stack_env), str(self.secrets_env), *PRIVACYCTL, *args,
            env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
        return Result(process.returncode or 0, out.decode(), err.decode())

    async def ok(self, *args: str) -> str:
        result = await self(*args)
        assert result.code == 0, f"privacyctl {' '.join(args)} exited {result.code}:\n{result.out}{result.err}"
        return result.out

    async def until(self, check: Callable[[str], bool], *args: str, what: str) -> str:
        """Run privacyctl until it succeeds with output that satisfies ``check`` (events are applied
        asynchronously: until then e.g. the subject is unknown, which privacyctl reports as an error)."""

        async def attempt() -> str:
            result = await self(*args)
            return result.out if result.code == 0 and check(result.out) else ""

        return await wait_until(attempt, timeout=30, interval=0.3, what=what)


@pytest.fixture
def ctl(stack: Stack, system: dict[str, ServiceProcess], tmp_path: Path) -> Ctl:
    stack_env = stack.write_env_file(tmp_path / "stack.env")
    secrets_env = tmp_path / "secrets.env"
    # The same plain KEY=value lines devstack.system writes to var/secrets.env.
    secrets_env.write_text(f"PRIVACY_MASTER_KEY={TEST_MASTER_KEY}\nADMIN_TOKEN={TEST_ADMIN_TOKEN}\n")
    # Nothing privacyctl reads may come from this process's environment: only from the two files,
    # plus the services' addresses (make run uses privacyctl's default ports; these tests cannot).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "DATABASE_", "ADMIN_TOKEN", "CONSENT_", "DSAR_", "PRIVACYCTL_"))}
    env.update(CONSENT_URL=system["consent"].url, DSAR_URL=system["dsar"].url)
    return Ctl(stack_env, secrets_env, env)


async def test_privacyctl_publishes_a_consent_change_and_shows_the_decision(ctl: Ctl, tmp_path: Path) -> None:
    subject = subject_id("ctl")
    registered = tmp_path / "user.json"
    registered.write_text(json.dumps({
        "email": f"{subject}@example.org", "locale": "en", "country": "SE",
        "consents": [{"purpose": "marketing_email", "granted": True}],
    }))
    await ctl.ok("publish", "user-registered", "--subject", subject, "--file", str(registered))
    await ctl.until(lambda out: ": allowed" in out, "decision", subject, "marketing_email",
                    what="marketing_email to be allowed after registration")

    published = await ctl.ok(
        "publish", "consent-changed", "--subject", subject,
        "--set", "purpose=marketing_email", "--set", "granted=false",
        "--set", "channel=email_footer", "--set", "policy_version=2021-10-30",
    )
    uuid.UUID(published.strip())  # the event id
    shown = await ctl.until(lambda out: ": denied" in out, "decision", subject, "marketing_email",
                            what="the withdrawal to show in the decision")
    assert shown.startswith(f"marketing_email for {subject}: denied")
    consents = await ctl.ok("consents", subject)
    assert re.search(r"^marketing_email\s+no\s+.*withdrawn \(email_footer\)", consents, re.MULTILINE), consents


async def test_privacyctl_lists_a_case_and_rejects_it_with_a_reason(ctl: Ctl) -> None:
    subject, request_id = subject_id("ctl-case"), str(uuid.uuid4())
    await ctl.ok(
        "publish", "dsar-requested", "--subject", subject,
        "--set", f"request_id={request_id}", "--set", "right=access",
        "--set", "identity_verified=false", "--set", "requested_via=web_form",
    )
    listed = await ctl.until(lambda out: request_id in out, "cases", "list", "--status", "identity_pending",
                             what="the case in privacyctl cases list")
    row = next(line for line in listed.splitlines() if request_id in line)
    assert row.split()[1:3] == ["access", "identity_pending"], listed

    reason = "manifestly unfounded: repetitive requests (GDPR Art. 12(5))"
    answer = await ctl.ok("cases", "reject", request_id, "--reason", reason)
    assert answer.startswith(f"{request_id}: reject accepted; status rejected"), answer
    rejected = await ctl.ok("cases", "list", "--status", "rejected", "--json")
    case = next(c for c in json.loads(rejected)["requests"] if c["request_id"] == request_id)
    assert (case["status"], case["reason"]) == ("rejected", reason)
    shown = await ctl.ok("cases", "show", request_id)
    assert shown.startswith(f"case {request_id}: access, rejected"), shown
    assert f"reason: {reason}" in shown and "closed:" in shown

    # A closed case cannot be rejected twice: the service's refusal reaches the operator.
    again = await ctl("cases", "reject", request_id, "--reason", reason)
    assert again.code == 1 and "answered 409" in again.out + again.err, again


async def test_privacyctl_verifies_the_audit_chain(ctl: Ctl) -> None:
    subject, request_id = subject_id("ctl-audit"), str(uuid.uuid4())  # something audited and published
    await ctl.ok("publish", "dsar-requested", "--subject", subject, "--set", f"request_id={request_id}",
                 "--set", "right=access", "--set", "identity_verified=false", "--set", "requested_via=web_form")
    await ctl.until(lambda out: request_id in out, "cases", "list", what="the case in privacyctl cases list")
    out = await ctl.until(lambda out: re.search(r"^dsar: .*\n  privacy-audit: [1-9]", out, re.MULTILINE) is not None,
                          "audit", "verify", what="the case's audit entries published and compared")
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines() if not line.startswith(" "))
    assert set(lines) == {"consent", "dsar", "notifier"}, out
    # The consent ledger's seals are checked with the consent chain.
    assert re.search(r"^  ledger: \d+ rows in \d+ sealed batches checked \(\d+ not anchored yet\)$", out, re.MULTILINE), out
    for service, report in lines.items():
        assert re.fullmatch(r"\d+ entries checked, chain intact", report), (service, out)
    # ...and each chain is compared with what its service published on privacy-audit.
    compared = re.findall(r"^  privacy-audit: (\d+) published entries compared", out, re.MULTILINE)
    assert len(compared) == 3 and int(compared[1]) > 0, out  # in the order consent, dsar, notifier
