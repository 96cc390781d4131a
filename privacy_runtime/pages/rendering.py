"""Jinja2 for the people-facing pages: autoescaped HTML, the shared layout, and per-language texts.

An app's own templates come first, then the kit's (`_base.html.j2`, `error.html.j2`), so a page
extends "_base.html.j2" and fills `title` and `content`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2

from privacy_runtime.pages.i18n import KIT_CATALOGUE, LANGUAGE_NAMES, LANGUAGES, Catalogue

KIT_TEMPLATES = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")
#: The one stylesheet, in the notifier's visual language.
STYLESHEET = STATIC_DIR / "pages.css"
STYLESHEET_URL = "/static/pages.css"


def environment(app_templates: Path | None = None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if app_templates is not None:
        loaders.append(jinja2.FileSystemLoader(str(app_templates)))
    loaders.append(jinja2.FileSystemLoader(str(KIT_TEMPLATES)))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def translator(catalogue: Catalogue, lang: str) -> Callable[..., str]:
    def t(key: str, **values: object) -> str:
        return catalogue.text(lang, key, **values)

    return t


def switch_url(path: str, query: Mapping[str, str] | None, code: str) -> str:
    """This page in another language: the same path and query (filters, search), `lang` replaced."""
    kept = [(name, value) for name, value in (query or {}).items() if name != "lang"]
    return f"{path}?{urlencode([*kept, ('lang', code)])}"


def page_context(
    catalogue: Catalogue,
    lang: str,
    *,
    path: str,
    query: Mapping[str, str] | None = None,
    csrf_token: str = "",
    contact_email: str = "privacy@isopartner.se",
    stylesheet_url: str = STYLESHEET_URL,
) -> dict[str, Any]:
    """What the layout needs: the texts, the language switch (links to this page, with its query, in
    each language), the CSRF token for forms, the stylesheet."""
    return {
        "lang": lang,
        "t": translator(catalogue, lang),
        "languages": [{"code": code, "name": LANGUAGE_NAMES[code], "url": switch_url(path, query, code),
                       "current": code == lang} for code in LANGUAGES],
        "csrf_token": csrf_token,
        "contact_email": contact_email,
        "stylesheet_url": stylesheet_url,
    }


def render_page(env: jinja2.Environment, template: str, context: dict[str, Any]) -> str:
    return env.get_template(template).render(**context)


def kit_catalogue(app_messages: dict[str, dict[str, str]] | None = None) -> Catalogue:
    return KIT_CATALOGUE.merged(app_messages or {})
