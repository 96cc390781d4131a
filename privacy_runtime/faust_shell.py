"""The worker shell: faust-streaming runs a stream service in production, and only here.

No faust agent, timer, topic or table is used (the runtime reads its topics with its own consumer,
`consumer.py`); faust provides the command line (`python -m services.<name> worker -l warning`), the
web server on `<NAME>_WEB_PORT` and the process lifecycle (signals, orderly shutdown). This module
maps those onto the plain runtime: Kafka is waited for before faust's own clients start, the runtime
starts beside faust's start-up (so /readyz does not wait on faust's group), consuming stops first on
SIGTERM and the runtime stops last.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
import mode
from faust.web import View

from privacy_runtime.kafka import sasl_mechanism, sasl_password, ssl_context
from privacy_runtime.logs import configure_logging, logging_config
from privacy_runtime.service import ServiceRuntime
from privacy_runtime.settings import ConnectionSettings
from privacy_runtime.web import ApiView, Routes

#: faust's CLI knows `warn` and `crit` only; accept the logging module's names too.
_LOG_LEVEL_ALIASES = {"warning": "warn", "critical": "crit"}


def normalise_log_level(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ("-l", "--loglevel") and i + 1 < len(out):
            out[i + 1] = _LOG_LEVEL_ALIASES.get(out[i + 1].lower(), out[i + 1])
        elif arg.startswith("--loglevel="):
            level = arg.split("=", 1)[1]
            out[i] = f"--loglevel={_LOG_LEVEL_ALIASES.get(level.lower(), level)}"
    return out


def run_worker(runtime: ServiceRuntime) -> None:
    """Entry point of every stream service: `python -m services.<name> worker -l warning`."""
    configure_logging(runtime.settings.log_level)
    sys.argv = normalise_log_level(sys.argv)
    worker_app(runtime).main()


def faust_broker_credentials(settings: ConnectionSettings) -> Any:
    """The contract's Kafka security settings in faust's terms (None for PLAINTEXT).

    faust-streaming 0.15.3 (`credentials_to_aiokafka_auth`) passes `SASLCredentials` to its consumer,
    producer and topic admin as `security_protocol=SASL_SSL` when it has an ssl_context and
    `SASL_PLAINTEXT` when `ssl_context=None`, with `sasl_plain_username/password`; PLAIN and both SCRAM
    mechanisms go through the same fields.
    """
    context = ssl_context(settings)
    mechanism = sasl_mechanism(settings)
    if mechanism:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=sasl_password(settings) or "",
            mechanism=mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def faust_broker_urls(settings: ConnectionSettings) -> list[str]:
    return [f"kafka://{server}" for server in settings.bootstrap_servers()]


def worker_app(runtime: ServiceRuntime) -> faust.App:
    """The faust app that runs `runtime`: its web server serves the runtime's routes."""
    settings = runtime.settings
    datadir = Path(settings.state_dir) / runtime.name
    datadir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    # The consumer group `privacy-<name>` belongs to the runtime's BatchConsumer; faust's own (unused)
    # group gets another id so the two never join one group with different protocols.
    app = _App(
        f"privacy-{runtime.name}-worker",
        broker=faust_broker_urls(settings),
        broker_credentials=faust_broker_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_port=runtime.web_port,
        # faust's own /router and /table pages describe the cluster and its tables to anyone who
        # asks; these services route nothing through faust and keep no faust tables.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_bind=settings.web_bind,
        web_host=settings.web_bind,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_every=1000,
        # A member killed without leaving is noticed after this long; the default (60 s) would
        # stall a restarted worker's first rebalance for a minute.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_commit_interval=0.5,
        stream_buffer_maxsize=4096,
        datadir=str(datadir),
        web_in_thread=False,
        logging_config=logging_config(settings.log_level),
    )

    async def wait_for_kafka() -> None:  # the app's own sleep: a SIGTERM meanwhile ends the wait at once
        await runtime.wait_for_kafka(sleep=app.sleep, should_stop=lambda: app.should_stop)

    app.before_start = wait_for_kafka
    app.after_start = runtime.start
    app.before_stop = runtime.stop_consuming
    # Also from the app's last shutdown step: a SIGTERM while faust is still starting (its own group
    # can take seconds to settle) stops the app before `_Lifecycle` was ever started, so
    # `_Lifecycle.on_stop` never runs; without this, the loop's teardown would cancel every task
    # mid-flight (an email between the relay's 250 and its `sent` commit, say).
    app.after_stop = runtime.stop
    app.service(_Lifecycle(runtime, loop=None))  # type: ignore[arg-type]  # an instance works too
    serve(app, runtime.routes)
    return app


def serve(app: faust.App, routes: Routes) -> None:
    """Serve the runtime's routes from faust's web server, each under its path and name."""
    for route in routes:
        app.page(route.path, name=route.name)(_faust_view(route.view, route.methods()))


def _faust_view(view: type[ApiView], methods: list[str]) -> type[View]:
    """faust's web server calls a `View`; the runtime's view (plain aiohttp) answers.

    faust routes to a View the methods it overrides (and HEAD): the adapter overrides the same ones."""
    answer = view()

    async def routed(self: View, request: Any, **kwargs: Any) -> Any:  # pragma: no cover - never called
        raise AssertionError("dispatched by the runtime's view")

    async def dispatch(self: View, request: Any) -> Any:
        return await answer.dispatch(request)

    attributes: dict[str, Any] = {m.lower(): routed for m in methods if m != "HEAD"}
    attributes["dispatch"] = dispatch
    return type(view.__name__, (View,), attributes)


class _App(faust.App):
    """A faust app that runs `before_start` before any of its Kafka clients start.

    mode starts a service's own `on_start` before its children, and faust's producer (the first
    child to touch Kafka) ends the worker when it cannot bootstrap: waiting here turns a broker that
    is not up yet into a wait with backoff instead of a crash.
    """

    before_start: Callable[[], Awaitable[None]] | None = None
    after_start: Callable[[], Awaitable[None]] | None = None
    before_stop: Callable[[], Awaitable[None]] | None = None
    after_stop: Callable[[], Awaitable[None]] | None = None

    async def on_stop(self) -> None:
        if self.before_stop is not None:
            await self.before_stop()
        await super().on_stop()

    async def on_shutdown(self) -> None:
        # After the app's children (web, `_Lifecycle` if it started) have stopped.
        await super().on_shutdown()
        if self.after_stop is not None:
            await self.after_stop()

    async def on_start(self) -> None:
        await super().on_start()
        if self.before_start is not None:
            await self.before_start()
        if self.after_start is not None:
            # The runtime (database, producer, consumer) starts beside faust's own start-up rather
            # than after it, so /readyz does not wait on faust's group.
            self.add_future(self.after_start())


class _Lifecycle(mode.Service):
    """Starts and stops the runtime with the faust worker."""

    def __init__(self, runtime: ServiceRuntime, **kwargs: Any):
        super().__init__(**kwargs)
        self.runtime = runtime

    async def on_start(self) -> None:
        await self.runtime.start()

    async def on_stop(self) -> None:
        await self.runtime.stop()
