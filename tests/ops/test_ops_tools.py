"""A missing ops tool fails the test (telling the person to run `make tools`) unless skipping is
asked for explicitly."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import validate
from tests.ops import conftest


def _no_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    def none(name: str) -> Path | None:
        return None

    monkeypatch.setattr(validate, "tool", none)


def test_missing_tool_fails_and_says_make_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_tools(monkeypatch)
    monkeypatch.delenv(conftest.ALLOW_MISSING, raising=False)
    with pytest.raises(pytest.fail.Exception, match=r"promtool is not installed.*Run `make tools`"):
        conftest.need_tool("promtool")


def test_missing_tool_skips_only_when_opted_in(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_tools(monkeypatch)
    monkeypatch.setenv(conftest.ALLOW_MISSING, "1")
    with pytest.raises(pytest.skip.Exception, match="make tools"):
        conftest.need_tool("kustomize")
