"""pytest plugin with a session-scoped ``stack`` fixture (the started local stack, topics created).

Enable it from the top-level ``tests/conftest.py``::

    pytest_plugins = ["devstack.pytest_plugin"]

Importing this module starts nothing; the stack starts the first time a test asks
for ``stack`` and stops at the end of the session. Each session gets its own root,
``var/test-<pid>``, removed afterwards unless ``DEVSTACK_KEEP=1``. The fixture is
sync, so sync and async tests can both use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devstack.stack import Stack, default_var_dir, session_root


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The running stack; ``stack.endpoints`` / ``stack.env()`` say where things are."""
    keep = os.environ.get("DEVSTACK_KEEP", "") not in ("", "0")
    var_dir = default_var_dir()
    instance = Stack(session_root(var_dir), cache_dir=var_dir, durable=False, cleanup=not keep)
    instance.start_blocking()
    try:
        yield instance
    finally:
        instance.stop_blocking()
