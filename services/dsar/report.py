"""The readable report of an access package (`index.html`): pure function from the package to HTML.

A person opens the zip and reads, in their language: who we are, what each system holds about them,
why and on which legal basis, for how long, who receives it, where it is stored and under which
transfer mechanism, where the data came from and the history of their consents. Everything is taken
from the package itself (the JSON beside it) and from the data map; ids are put in words
(privacy_runtime/vocabulary.py). Every value is escaped: the subject's own data may contain markup.
The page is one file with the pages' stylesheet inlined, so it reads the same offline.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from privacy_runtime import summary, vocabulary
from privacy_runtime.datamap import DataMap
from privacy_runtime.pages.i18n import Catalogue
from privacy_runtime.pages.rendering import STYLESHEET, environment, translator
from services.dsar.package_texts import REPORT_MESSAGES

TEMPLATES = Path(__file__).with_name("templates")
CATALOGUE = Catalogue({**REPORT_MESSAGES, **summary.SUMMARY_MESSAGES})
#: Values shown per system before the rest is left to the JSON and CSV files beside the report.
MAX_ROWS_PER_SYSTEM = 2000


@cache
def _environment() -> jinja2.Environment:
    env = vocabulary.install(environment(TEMPLATES))
    env.filters["when"] = when
    return env


def when(value: object) -> str:
    """An ISO time as a date and time a person reads (UTC, as recorded); anything else as given."""
    if not isinstance(value, str):
        return "" if value is None else str(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment.tzinfo else moment.strftime("%Y-%m-%d %H:%M")


#: Values that are ids of the contract, by the key they are stored under: shown in words.
VALUE_KINDS = {"purpose": "purpose", "channel": "channel", "source": "source", "system": "system",
               "right": "right", "ground": "ground", "circumstance": "circumstance", "processing": "processing",
               "template": "email"}
#: Left to the JSON beside the report: machine records a person reads better elsewhere in it (the
#: consent receipts repeat the consent history, shown in words below).
SKIPPED_KEYS = frozenset({"consent_receipts"})


def rows(value: Any, lang: str, prefix: str = "", key: str = "") -> Iterator[tuple[str, str]]:
    """Every leaf value of a fragment as (where, value), known field names and ids in words."""
    if isinstance(value, Mapping):
        for name, child in value.items():
            if name in SKIPPED_KEYS:
                continue
            words = vocabulary.FIELD[lang].get(str(name), str(name).replace("_", " "))
            yield from rows(child, lang, f"{prefix} › {words}" if prefix else words, str(name))
    elif isinstance(value, list):
        for index, child in enumerate(value, start=1):
            yield from rows(child, lang, f"{prefix} {index}" if prefix else str(index), key)
    elif value is not None and value != "":
        if isinstance(value, bool):
            text = str(value).lower()
        elif key in VALUE_KINDS and isinstance(value, str):
            text = vocabulary.word(VALUE_KINDS[key], value, lang)
        else:
            text = str(value)
        yield prefix, text


def _system_sections(package: Mapping[str, Any], data_map: DataMap, lang: str) -> list[dict[str, Any]]:
    sections = []
    for system_id, section in package.get("systems", {}).items():
        entry = data_map.get(system_id)
        data = section.get("data") if isinstance(section, Mapping) else None
        shown = list(rows(data or {}, lang))
        facts = summary.system_summary(entry, data_map, lang) if entry else {
            "id": system_id, "categories": [], "purposes": [], "retention": "", "location": "",
            "transfer_mechanism": "", "internal": False}
        sections.append({
            **facts,
            "held": section.get("status") == "done" if isinstance(section, Mapping) else False,
            "rows": shown[:MAX_ROWS_PER_SYSTEM],
            "more_rows": max(0, len(shown) - MAX_ROWS_PER_SYSTEM),
        })
    return sections


def _consent_history(consent: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    history = (consent or {}).get("consent_history")
    if not isinstance(history, list):
        return []
    entries = [h for h in history if isinstance(h, Mapping)]
    return sorted(entries, key=lambda h: str(h.get("effective_at") or ""), reverse=True)


def render(package: Mapping[str, Any], data_map: DataMap) -> str:
    """index.html for the package, in its `locale` (Swedish unless the subject's is English)."""
    lang = vocabulary.language(package.get("locale"))
    systems = package.get("systems", {})
    consent = systems.get("consent", {}).get("data") if isinstance(systems.get("consent"), Mapping) else None
    information = package.get("information", {})
    purposes = [
        {
            "id": item.get("purpose"),
            "description": vocabulary.localized(data_map.purposes.get(str(item.get("purpose"))), "description", lang)
            or item.get("description", ""),
            "legal_basis": vocabulary.localized(data_map.purposes.get(str(item.get("purpose"))), "legal_basis", lang)
            or item.get("legal_basis", ""),
            "systems": item.get("systems", []),
        }
        for item in information.get("purposes", [])
    ]
    recipients = [
        {
            "id": s.id,
            "location": vocabulary.localized(s, "location", lang),
            "transfer_mechanism": vocabulary.localized(s, "transfer_mechanism", lang),
            "categories": list(s.holds),
            "purposes": list(s.purposes),
        }
        for s in data_map.systems.values()
        if not s.internal
    ]
    context = {
        "lang": lang,
        "locale": lang,
        "t": translator(CATALOGUE, lang),
        "stylesheet": STYLESHEET.read_text(encoding="utf-8"),
        "controller": dict(data_map.controller),
        "package": package,
        "systems": _system_sections(package, data_map, lang),
        "purposes": purposes,
        "recipients": recipients,
        "registrations": information.get("your_registrations", []),
        "history": _consent_history(consent),
    }
    return _environment().get_template("report.html.j2").render(**context)
