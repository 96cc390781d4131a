"""Fixtures for the operations tests: rendered overlays and the offline manifest validator.

Tools come from deploy/tools/install.sh (run by make before the tests); a test skips, naming the
missing tool and the install script, only when a tool really is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy import validate

ROOT = Path(__file__).resolve().parents[2]


def need_tool(name: str) -> Path:
    path = validate.tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed ({validate.INSTALL_HINT})")
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
        pytest.skip(str(exc))
