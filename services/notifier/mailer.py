"""One SMTP connection of the sender: opened on first use, reused, reopened after a failure."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiosmtplib

from services.notifier import rules
from services.notifier.settings import NotifierSettings

#: An SMTP connection idle longer than this is checked with NOOP before use.
IDLE_CHECK_SECONDS = 15.0


class Mailer:
    """One SMTP connection, opened on first use, reused for every message, reopened after a failure.

    Setting up the session (`ready`: connect, STARTTLS, EHLO, AUTH, or a NOOP on an idle connection)
    and a message's transaction on it (`transmit`: MAIL FROM, RCPT, DATA) are separate, so the sender
    can do the first, which may take as long as a slow relay likes, before it takes its row locks."""

    def __init__(self, settings: NotifierSettings):
        self.settings = settings
        self._client: aiosmtplib.SMTP | None = None
        self._last_used = 0.0

    async def ready(self) -> None:
        """Have a session open and usable; raises RelaySessionFailed if it cannot be set up."""
        await self._connection()

    async def _connection(self) -> aiosmtplib.SMTP:
        client = self._client
        if client is not None and client.is_connected and time.monotonic() - self._last_used > IDLE_CHECK_SECONDS:
            try:
                await client.noop()
            except BaseException as exc:
                await self.reset()
                if not isinstance(exc, Exception):
                    raise
                client = None
            else:
                self._last_used = time.monotonic()
        if client is None or not client.is_connected:
            s = self.settings
            client = aiosmtplib.SMTP(
                hostname=s.smtp_host,
                port=s.smtp_port,
                timeout=s.smtp_timeout_seconds,
                use_tls=s.smtp_use_tls,
                start_tls=None if s.smtp_use_tls else s.smtp_starttls,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            )
            try:
                await client.connect()  # connects, and STARTTLS and AUTH (with their EHLO) if configured
                await _greet(client)  # else EHLO now, not in the first sendmail under the row locks
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    client.close()
                if not isinstance(exc, Exception):
                    raise
                # Whatever the reply (a 535 for a wrong password is a 5xx), it is the relay's, not an email's.
                raise rules.RelaySessionFailed(type(exc).__name__) from exc
            self._client = client
            self._last_used = time.monotonic()
        return client

    async def send(self, message: bytes, sender: str, recipient: str) -> None:
        """Set the session up if need be, then send (for callers that hold no locks)."""
        await self.ready()
        await self.transmit(message, sender, recipient)

    async def transmit(self, message: bytes, sender: str, recipient: str) -> None:
        """Send one message on the session `ready` opened. Never connects: a session lost since is
        SMTPServerDisconnected (the relay's failure), and the next `ready` opens a new one."""
        client = self._client
        if client is None or not client.is_connected:
            await self.reset()
            raise aiosmtplib.SMTPServerDisconnected("the SMTP session was lost before the send")
        options = ["SMTPUTF8"] if rules.needs_smtputf8(sender, recipient) else None
        try:
            await client.sendmail(sender, [recipient], message, mail_options=options)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError, OSError):
            await self.reset()
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if rules.classify(exc)[0] is rules.Failure.CONNECTION:  # 421, or the session itself refused
                await self.reset()
            raise
        except asyncio.CancelledError:  # cut mid-conversation: the connection's state is unknown
            await self.reset()
            raise
        finally:
            self._last_used = time.monotonic()

    async def reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), 2.0)


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO (HELO if refused) unless the session has already done it, as `sendmail` would."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo()
