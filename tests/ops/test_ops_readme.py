"""The README's commands work in the order they are given."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_stack_environment_is_loaded_before_the_first_privacyctl_command() -> None:
    # `make run` puts Kafka on a free port, named only in var/stack.env: privacyctl fails without it.
    text = README.read_text()
    loaded = text.find(". var/stack.env")
    first_use = text.find("privacyctl publish")
    assert loaded != -1 and first_use != -1
    assert loaded < first_use
