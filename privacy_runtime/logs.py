"""JSON logs that never carry plaintext PII.

Handlers log ids (subject, request_id) only; as a second line of defence every record is scrubbed
of anything that looks like an email address or a phone number before it is written.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
from datetime import UTC, datetime
from typing import Any

#: Any characters but spaces and the delimiters that surround an address in text (quotes, brackets,
#: commas, ...), so internationalised addresses (RFC 6531: "åsa@exempel.se", "用户@例子.广告", Devanagari
#: with its combining vowel signs) are caught as well as ASCII ones; the top-level label has no digits
#: (or is punycode), so versions and timestamps ("pkg@1.2.3") are left alone. A match starts only where
#: a run of such characters starts: without that, a long run with no "@" costs quadratic time.
_ATOM = r"[^\s@<>()\[\]\\,;:\"'`]"
_LABEL = r"[^\s@<>()\[\]\\,;:\"'`.]"
_TOP = r"[^\s@<>()\[\]\\,;:\"'`.\d_-]"
_EMAIL = re.compile(rf"(?<!{_ATOM}){_ATOM}+@(?:{_LABEL}+\.)+(?:xn--[A-Za-z0-9-]+|{_TOP}{{2,}})")
_PHONE = re.compile(r"\+?\d[\d \-]{7,}\d")


def scrub(text: str) -> str:
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        for key in ("service", "topic", "subject", "event_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        return json.dumps(entry, ensure_ascii=False)


#: Libraries that are chatty at INFO about rebalances; their warnings are kept.
NOISY_LOGGERS = ("aiokafka", "faust", "mode")


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """The same set-up as `configure_logging`, as a `logging.config.dictConfig` dict: the faust worker
    replaces the root logger's handlers when it starts (its `logging_config` setting), and without
    this its coloured plain-text handler would take over from the scrubbing JSON one."""
    quiet = logging.getLevelName(max(logging.WARNING, logging.getLevelName(level.upper())))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["json"]},
        "loggers": {name: {"level": quiet} for name in NOISY_LOGGERS},
    }


def configure_logging(level: str = "INFO") -> None:
    """Until the faust worker starts (and after, through its `logging_config` setting): the same set-up."""
    logging.config.dictConfig(logging_config(level))
