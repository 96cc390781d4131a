"""Test-wide fixtures: the embedded stack (real Kafka, PostgreSQL, SMTP) started once per session,
and the whole system (three services) for the tests that need it."""

import os
import time
import uuid
from collections.abc import AsyncIterator, Generator

import pytest
from hypothesis import settings

from devstack.stack import Stack
from schemas.topics import DATA_TOPICS
from tests import timeline
from tests.helpers import (
    CONSUMING_SERVICES,
    ExternalSystems,
    ServiceProcess,
    commit_group_offsets,
    module_group,
    playing,
)

pytest_plugins = ["devstack.pytest_plugin", "tests.browser_kit"]

# Property tests check what is computed, never how fast: on a shared 2-core machine a pause in one
# example must not fail the suite (hypothesis' default is a 200 ms deadline per example).
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")

#: Marker -> start rank: `make test` runs files on three workers (pytest-xdist, --dist loadfile), which
#: take files in collection order; the long ones (a stack of their own, a browser, the fault runs)
#: go first so the short unit files fill the gaps at the end instead of a long file running alone.
#: That order holds only with --no-loadscope-reorder (Makefile): by default xdist sorts files by their
#: number of tests, which put the one-test files (the bench, the fault runs) last.
_START_RANK = {"faults": 0, "bench": 0, "browser": 1, "stack": 2}


def _start_rank(item: pytest.Item) -> int:
    if item.nodeid.startswith("tests/bench/"):
        return _START_RANK["bench"]
    return min((_START_RANK[m.name] for m in item.iter_markers() if m.name in _START_RANK), default=3)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order files by their longest kind (stable: tests keep their order inside a file)."""
    rank_of_file: dict[str, int] = {}
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        rank_of_file[path] = min(rank_of_file.get(path, 3), _start_rank(item))
    order_of_file = {path: index for index, path in enumerate(dict.fromkeys(i.nodeid.split("::", 1)[0] for i in items))}
    items.sort(key=lambda i: (rank_of_file[i.nodeid.split("::", 1)[0]], order_of_file[i.nodeid.split("::", 1)[0]]))


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, before any worker starts
        timeline.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Record each test's span for `python -m tests.timeline` (where `make test`'s time goes)."""
    began = time.time()
    try:
        return (yield)
    finally:
        timeline.record(os.environ.get("PYTEST_XDIST_WORKER", "main"), began, time.time(), item.nodeid)


@pytest.fixture(scope="module", autouse=True)
async def module_consumer_groups(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Each test module's services consume in groups of the module's own that start at the end of every
    topic: a module reads only what is published while it runs.

    A service's default group (`privacy-<service>`) is shared by every module on a worker's stack, so a
    service started later resumed where the last one stopped and first handled everything published in
    between: after a fault run (more than 10,000 events, a merger notice) a notifier fanned that notice
    out to its own test's recipients too (1,000 emails for 500), and dsar cases queued behind thousands
    of the run's requests did not complete in time."""
    suffix = uuid.uuid4().hex[:8]
    uses_session_stack = any("stack" in item.fixturenames for item in request.session.items
                             if item.module is request.module)
    if uses_session_stack:
        stack: Stack = request.getfixturevalue("stack")
        topics = list(DATA_TOPICS)  # every topic a service may consume (all but the dead-letter ones)
        for service in CONSUMING_SERVICES:
            await commit_group_offsets(stack.endpoints.kafka_bootstrap, module_group(service, suffix), topics,
                                       to_end=True)
    ServiceProcess.group_suffix = suffix
    try:
        yield
    finally:
        ServiceProcess.group_suffix = None


@pytest.fixture(scope="module")
async def system(stack: Stack) -> AsyncIterator[dict[str, ServiceProcess]]:
    """All three services running against the session's stack (for tests that need the whole system).

    Module-scoped: they stop when the module ends, so they never consume beside a later test's own
    service (same database schema, another consumer group)."""
    consent = ServiceProcess("consent", stack.env()).start()
    dsar = ServiceProcess("dsar", stack.env()).start()
    notifier = ServiceProcess("notifier", stack.env(), {"CONSENT_BASE_URL": consent.url,
                                                      "CONSENT_PUBLIC_URL": consent.url}).start()
    running = {"consent": consent, "dsar": dsar, "notifier": notifier}
    try:
        for service in running.values():
            await service.wait_ready(timeout=90)
        yield running
    finally:
        for service in running.values():
            service.stop()


@pytest.fixture
async def systems(stack: Stack) -> AsyncIterator[ExternalSystems]:
    """The external downstream systems, played by the stand-ins `make run` starts, answering every
    command sent from now on (so that an erasure or an export runs to its end)."""
    async with playing(ExternalSystems(stack.endpoints.kafka_bootstrap)) as systems:
        yield systems
