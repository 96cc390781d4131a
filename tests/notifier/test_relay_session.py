"""The Mailer against an in-process SMTP server (aiosmtpd): which refusals fail one email and which
are the relay's (no database, no Kafka)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from pydantic import SecretStr

from services.notifier import rules, smtp_failures
from services.notifier.mailer import Mailer
from services.notifier.settings import NotifierSettings
from tests.helpers import TEST_MASTER_KEY, free_port

MESSAGE = b"Subject: test\r\n\r\nhello\r\n"


class Scripted:
    """Answers MAIL, RCPT and DATA as told (None: accept)."""

    def __init__(self, mail: str | None = None, rcpt: str | None = None, data: str | None = None):
        self.mail, self.rcpt, self.data = mail, rcpt, data
        self.accepted = 0

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self.mail:
            return self.mail
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self.rcpt:
            return self.rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data:
            return self.data
        self.accepted += 1
        return "250 accepted"


def only(password: str) -> Callable[..., AuthResult]:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)

    return authenticate


@asynccontextmanager
async def relay(handler: Scripted, **smtp: Any) -> AsyncIterator[int]:
    port = free_port()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="relay.test", **smtp), "127.0.0.1", port)
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


def mailer(port: int, **options: Any) -> Mailer:
    options.setdefault("smtp_starttls", False)
    settings = NotifierSettings(privacy_master_key=TEST_MASTER_KEY, smtp_host="127.0.0.1", smtp_port=port, **options)
    return Mailer(settings)


async def outcome(handler: Scripted, smtp: dict[str, Any] | None = None, **options: Any) -> rules.Failure | None:
    async with relay(handler, **(smtp or {})) as port:
        m = mailer(port, **options)
        try:
            await m.send(MESSAGE, "privacy@isopartner.se", "a@example.com")
        except Exception as exc:
            return smtp_failures.classify(exc)[0]
        finally:
            await m.close()
    return None


AUTH = {"authenticator": only("right"), "auth_require_tls": False}


async def test_a_wrong_relay_password_holds_the_queue_back_instead_of_failing_every_email() -> None:
    assert await outcome(Scripted(), AUTH, smtp_username="notifier", smtp_password=SecretStr("wrong")) is (
        rules.Failure.CONNECTION
    )
    assert await outcome(Scripted(), AUTH, smtp_username="notifier", smtp_password=SecretStr("right")) is None


@pytest.mark.parametrize(
    "reply",
    ["530 5.7.0 Must issue a STARTTLS command first", "550 5.7.1 sender refused", "451 4.3.0 busy"],
)
async def test_a_refused_envelope_sender_is_the_relays_failure(reply: str) -> None:
    assert await outcome(Scripted(mail=reply)) is rules.Failure.CONNECTION


async def test_a_relay_that_cannot_be_reached_is_the_relays_failure() -> None:
    m = mailer(free_port())
    with pytest.raises(rules.RelaySessionFailed) as caught:
        await m.send(MESSAGE, "privacy@isopartner.se", "a@example.com")
    assert rules.classify(caught.value)[0] is rules.Failure.CONNECTION


async def test_only_a_refused_recipient_or_message_fails_one_email() -> None:
    assert await outcome(Scripted(rcpt="550 5.1.1 no such user")) is rules.Failure.PERMANENT
    assert await outcome(Scripted(rcpt="451 4.2.0 later")) is rules.Failure.TEMPORARY
    assert await outcome(Scripted(data="554 5.6.0 rejected as spam")) is rules.Failure.PERMANENT
    assert await outcome(Scripted(data="452 4.3.1 no space")) is rules.Failure.TEMPORARY


async def test_a_message_is_never_sent_on_a_session_it_would_have_to_open_itself() -> None:
    """`transmit` runs under the sender's row locks: without a session `ready` opened it does not
    connect (nobody even listens here, so a connect would fail as RelaySessionFailed), and a session
    lost since is the relay's failure too."""
    m = mailer(free_port())
    with pytest.raises(aiosmtplib.SMTPServerDisconnected) as caught:
        await m.transmit(MESSAGE, "privacy@isopartner.se", "a@example.com")
    assert rules.classify(caught.value)[0] is rules.Failure.CONNECTION
    handler = Scripted()
    async with relay(handler) as port:
        m = mailer(port)
        try:
            await m.ready()
            await m.transmit(MESSAGE, "privacy@isopartner.se", "a@example.com")
            assert m._client is not None
            m._client.close()  # the session drops between `ready` and the next message
            with pytest.raises(aiosmtplib.SMTPServerDisconnected):
                await m.transmit(MESSAGE, "privacy@isopartner.se", "b@example.com")
            assert m._client is None and handler.accepted == 1
            await m.send(MESSAGE, "privacy@isopartner.se", "b@example.com")  # `ready` opens a new one
            assert handler.accepted == 2
        finally:
            await m.close()


async def test_starttls_is_required_unless_turned_off_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A relay that does not offer STARTTLS (or whose offer was stripped on the way) gets no email in
    clear by default: only SMTP_STARTTLS=false, as the local sink sets it, sends without TLS."""
    monkeypatch.delenv("SMTP_STARTTLS", raising=False)
    assert NotifierSettings(privacy_master_key=TEST_MASTER_KEY).smtp_starttls is True  # type: ignore[call-arg]
    handler = Scripted()
    async with relay(handler) as port:  # aiosmtpd without a TLS context offers no STARTTLS
        m = Mailer(NotifierSettings(privacy_master_key=TEST_MASTER_KEY, smtp_host="127.0.0.1",  # type: ignore[call-arg]
                                    smtp_port=port))
        try:
            with pytest.raises(rules.RelaySessionFailed) as caught:
                await m.send(MESSAGE, "privacy@isopartner.se", "a@example.com")
        finally:
            await m.close()
        assert rules.classify(caught.value)[0] is rules.Failure.CONNECTION
        assert handler.accepted == 0
        monkeypatch.setenv("SMTP_STARTTLS", "false")
        plain = Mailer(NotifierSettings(privacy_master_key=TEST_MASTER_KEY, smtp_host="127.0.0.1",  # type: ignore[call-arg]
                                        smtp_port=port))
        try:
            await plain.send(MESSAGE, "privacy@isopartner.se", "a@example.com")
        finally:
            await plain.close()
        assert handler.accepted == 1
