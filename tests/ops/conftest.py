"""Fixtures for the operations tests: rendered overlays and the offline manifest validator.

Tools come from deploy/tools/install.sh, which `make test` runs first (`make tools`). A missing tool is
a failure naming it and `make tools`, not a skip: a skip would let `make test` pass without the
promtool and manifest checks it promises. On a machine without the tools, set
PRIVACY_OPS_ALLOW_MISSING_TOOLS=1 to skip those tests instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

import pytest

from deploy import validate

ROOT = Path(__file__).resolve().parents[2]
#: Opt-in (value 1) to skip, not fail, the tests whose tools or schemas are not installed.
ALLOW_MISSING = "PRIVACY_OPS_ALLOW_MISSING_TOOLS"


def missing(what: str) -> NoReturn:
    message = f"{what}. Run `make tools` (deploy/tools/install.sh), or set {ALLOW_MISSING}=1 to skip these tests"
    if os.environ.get(ALLOW_MISSING) == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def need_tool(name: str) -> Path:
    path = validate.tool(name)
    if path is None:
        missing(f"{name} is not installed in {validate.TOOLS / 'bin'} or on PATH")
    return path


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """overlay name -> its manifests (kustomize build), rendered once per test session."""
    need_tool("kustomize")
    return {overlay: validate.render(overlay) for overlay in validate.overlays()}


@pytest.fixture(scope="session")
def validator() -> validate.ManifestValidator:
    try:
        return validate.ManifestValidator()
    except validate.ToolMissing as exc:
        missing(str(exc).rstrip("."))
