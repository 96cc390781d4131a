"""The Dockerfile (static checks: no image is built in the tests) and the tool installer."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_multi_stage_and_non_root() -> None:
    steps = instructions()
    stages = [rest for word, rest in steps if word == "FROM"]
    assert len(stages) >= 2
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot checks it)"
    assert any(word == "COPY" and "--from=" in rest for word, rest in final)


def test_copies_what_the_services_need() -> None:
    copied = " ".join(rest for word, rest in instructions() if word == "COPY")
    for path in ("pyproject.toml", "schemas/", "privacy_runtime/", "services/", "privacyctl/"):
        assert path in copied
        assert (ROOT / path).exists()


def test_no_secrets_baked_in() -> None:
    env = " ".join(rest for word, rest in instructions() if word in {"ENV", "ARG"})
    for name in ("PRIVACY_MASTER_KEY", "ADMIN_TOKEN", "DATABASE_URL", "KAFKA_SASL_PASSWORD"):
        assert name not in env


def test_install_script_is_valid_bash() -> None:
    script = ROOT / "deploy" / "tools" / "install.sh"
    assert script.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(script)], check=True)
