"""Reading HTML forms safely: size limits, one encoding, bounded fields, clear 4xx errors."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

#: A form body above this is refused (413) before it is read to the end.
MAX_FORM_BYTES = 16 * 1024
MAX_FIELDS = 64
MAX_FIELD_CHARS = 4000


class FormError(Exception):
    """Bad form input: the status says which 4xx (400, 413, 415)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Form:
    """The fields of one submitted form; every value is a string (a field sent twice keeps the first,
    `getall` returns each)."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()):
        self._pairs = list(pairs)

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def getall(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]

    def names(self) -> set[str]:
        return {key for key, _ in self._pairs}

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self._pairs)


def parse_form(body: bytes, content_type: str | None) -> Form:
    if not body:
        return Form()  # an empty form needs no content type (and then fails its CSRF check)
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise FormError(415, "forms are sent as application/x-www-form-urlencoded")
    if len(body) > MAX_FORM_BYTES:
        raise FormError(413, f"form over {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, encoding="utf-8",
                          errors="strict", max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(400, f"the form could not be read: {type(exc).__name__}") from None
    for key, value in pairs:
        if len(key) > 100 or len(value) > MAX_FIELD_CHARS:
            raise FormError(413, f"a form field is over {MAX_FIELD_CHARS} characters")
        if any(ord(c) < 32 and c not in "\r\n\t" for c in key + value) or _has_surrogate(key + value):
            raise FormError(400, "a form field holds control characters")
    return Form(pairs)


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)
