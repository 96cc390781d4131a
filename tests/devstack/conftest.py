"""Make the ``stack`` fixture available here even before tests/conftest.py enables the plugin."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("devstack.pytest_plugin"):
        config.pluginmanager.import_plugin("devstack.pytest_plugin")
