"""`schemas/asyncapi.yaml` parses with the AsyncAPI project's own parser (`@asyncapi/parser` from npm,
pinned in deploy/tools/asyncapi/, installed into var/tools by `make tools`) with no error and no
warning; and the same check refuses a broken copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "deploy" / "tools" / "asyncapi" / "check.cjs"
TOOLS = Path(os.environ.get("PRIVACY_TOOLS_DIR", ROOT / "var" / "tools"))
MODULES = TOOLS / "asyncapi" / "node_modules"
#: The same opt-in as the ops tests: skip, rather than fail, when the tools are not installed.
ALLOW_MISSING = "PRIVACY_OPS_ALLOW_MISSING_TOOLS"


def _parse(document: Path) -> tuple[int, list[dict[str, str]]]:
    node = shutil.which("node")
    if node is None or not (MODULES / "@asyncapi" / "parser").is_dir():
        message = f"node or @asyncapi/parser (in {MODULES}) is missing. Run `make tools` (deploy/tools/install.sh)"
        if os.environ.get(ALLOW_MISSING) == "1":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    run = subprocess.run([node, str(CHECK), str(document), str(MODULES)], capture_output=True, text=True,
                         timeout=300, check=False)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode in (0, 1), run.stderr
    return run.returncode, lines


def test_the_asyncapi_document_parses_without_errors_or_warnings() -> None:
    code, diagnostics = _parse(ROOT / "schemas" / "asyncapi.yaml")
    counted = [d for d in diagnostics if d["severity"] in ("error", "warning")]
    assert code == 0 and not counted, counted


def test_the_parser_refuses_a_broken_copy(tmp_path: Path) -> None:
    # A copy beside its JSON Schemas (the payloads are $refs to them), with one key AsyncAPI does not know.
    shutil.copytree(ROOT / "schemas" / "jsonschema", tmp_path / "jsonschema")
    text = (ROOT / "schemas" / "asyncapi.yaml").read_text()
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(text.replace("\nasyncapi: 3.0.0\n", "\nasyncapi: 3.0.0\nbogus: true\n", 1))
    assert broken.read_text() != text
    code, diagnostics = _parse(broken)
    errors = [d for d in diagnostics if d["severity"] == "error"]
    assert code == 1 and any(d["path"] == "bogus" for d in errors), diagnostics
