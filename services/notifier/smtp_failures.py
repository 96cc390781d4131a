"""What an exception from the SMTP client (aiosmtplib) means for the email being sent: the one place
that knows the client's exception types, so that `rules` stays free of I/O and its library."""

from __future__ import annotations

import aiosmtplib

from services.notifier.rules import Failure, RelaySessionFailed

#: Replies that mean "not authenticated" whatever command they answer: the relay's fault, not the email's.
_AUTH_CODES = frozenset({530, 534, 535, 538})

#: Refusals of the session or the envelope sender. Every email shares them, so none of them is one
#: email's permanent failure: a wrong relay password would otherwise fail the whole queue in seconds.
_RELAY_REFUSALS = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPHeloError,
    aiosmtplib.SMTPAuthenticationError,
    aiosmtplib.SMTPSenderRefused,
)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


def classify(exc: BaseException) -> tuple[Failure, str]:
    """What an exception from the SMTP client means, with a short description (no PII).

    Only a refused recipient (RCPT) or a refusal after DATA is the email's own failure; anything that
    stops the session or the envelope sender is the relay's (CONNECTION: back off and reconnect).
    """
    if isinstance(exc, RelaySessionFailed):
        cause = exc.__cause__ or exc
        return Failure.CONNECTION, f"relay session: {_describe(cause)}"[:300]
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        if codes and all(c in _AUTH_CODES for c in codes):
            return Failure.CONNECTION, f"recipient refused, not authenticated: {', '.join(str(c) for c in codes)}"
        kind = Failure.PERMANENT if codes and all(c >= 500 for c in codes) else Failure.TEMPORARY
        return kind, f"recipient refused: {', '.join(str(c) for c in codes)}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if isinstance(exc, _RELAY_REFUSALS) or exc.code == 421 or exc.code in _AUTH_CODES:
            return Failure.CONNECTION, _describe(exc)  # 421: the relay closes the connection
        kind = Failure.PERMANENT if exc.code >= 500 else Failure.TEMPORARY
        return kind, _describe(exc)
    if isinstance(exc, aiosmtplib.SMTPNotSupported | ValueError | UnicodeError):
        return Failure.PERMANENT, _describe(exc)  # e.g. SMTPUTF8 needed by this one address
    if isinstance(exc, aiosmtplib.SMTPException | ConnectionError | TimeoutError | OSError):
        return Failure.CONNECTION, _describe(exc)
    return Failure.TEMPORARY, _describe(exc)
