"""Rendering one notice for many recipients: the templates run once per notice, not once per email.

A fan-out sends the same template with the same params to every recipient; only the greeting's name,
the "manage your privacy" link and (marketing) the unsubscribe link differ. Rendering with Jinja was
most of the sender's CPU per email, so a notice is rendered once with unguessable placeholders for
those three values, and each email fills them in: as they are in the text part and the subject, and
HTML-escaped (as Jinja's autoescape would) in the HTML part. Whether a value is set picks a template
branch (`{% if manage_url %}`), so that is part of the cache key. The result is exactly what
`templates.render` gives (tests/notifier/test_render_cache.py compares them for every template).
"""

from __future__ import annotations

import json
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from markupsafe import escape

from services.notifier import templates

#: Notices kept rendered (a fan-out needs one per locale; personal notices rarely repeat).
CACHED_NOTICES = 32


@dataclass(frozen=True)
class _Shape:
    """A notice rendered with placeholders, and which placeholder stands for which value."""

    rendered: templates.RenderedEmail
    placeholders: tuple[tuple[str, str], ...]  # (placeholder, context field)


class NoticeRenderer:
    """`templates.render` with the rendering of a notice shared by its recipients (see the module)."""

    def __init__(self, size: int = CACHED_NOTICES) -> None:
        self.size = size
        self._shapes: OrderedDict[tuple[Any, ...], _Shape | None] = OrderedDict()
        # Random per process: a name or link cannot contain a placeholder by chance or on purpose.
        self._marks = {field: f"X{secrets.token_hex(12)}{field[:1].upper()}" for field in _FIELDS}

    def render(
        self, template: str, locale: str | None, params: Mapping[str, Any], context: templates.Context
    ) -> templates.RenderedEmail:
        values = {field: getattr(context, field) for field in _FIELDS}
        key = (
            template,
            templates.locale_of(locale),
            json.dumps(params, sort_keys=True, default=str),
            context.contact_email,
            context.public_base_url,
            context.privacy_center_url,
            *(bool(value) for value in values.values()),
        )
        if key in self._shapes:
            self._shapes.move_to_end(key)
            shape = self._shapes[key]
        else:
            shape = self._shape(template, locale, params, context, values)
            self._shapes[key] = shape
            if len(self._shapes) > self.size:
                self._shapes.popitem(last=False)
        if shape is None:  # a placeholder would not come through as is: render this one in full
            return templates.render(template, locale, params, context)
        rendered = shape.rendered
        text, html, subject = rendered.text, rendered.html, rendered.subject
        for mark, field in shape.placeholders:
            value = str(values[field])
            text = text.replace(mark, value)
            subject = subject.replace(mark, value)
            html = html.replace(mark, str(escape(value)))
        return replace(rendered, subject=subject, text=text, html=html)

    def _shape(
        self, template: str, locale: str | None, params: Mapping[str, Any], context: templates.Context,
        values: dict[str, str | None],
    ) -> _Shape | None:
        placeholders = tuple((self._marks[field], field) for field, value in values.items() if value)
        marked = replace(context, **{field: mark for mark, field in placeholders})
        rendered = templates.render(template, locale, params, marked)  # raises what render raises
        for mark, _ in placeholders:
            # Each placeholder must come through whole, untransformed (a filter such as `upper` would
            # leave a changed one that no fill replaces); the subject is whitespace-normalised, so a
            # value in it could come out differently. Rendered in full for every email then.
            if mark in rendered.subject or any(
                part.lower().count(mark.lower()) != part.count(mark) for part in (rendered.text, rendered.html)
            ):
                return None
        return _Shape(rendered, placeholders)


#: The per-recipient values of templates.Context.
_FIELDS = ("recipient_name", "manage_url", "unsubscribe_url")
