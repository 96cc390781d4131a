"""Test-wide fixtures: the embedded stack (real Kafka, PostgreSQL, SMTP) started once per session."""

pytest_plugins = ["devstack.pytest_plugin"]
