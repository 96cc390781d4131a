"""The per-system summary on /me is the access report's: one function, one macro, one set of texts."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from privacy_runtime import summary, vocabulary
from privacy_runtime.datamap import DataMap, load_data_map
from privacy_runtime.pages.rendering import environment, kit_catalogue, translator
from privacy_runtime.settings import DEFAULT_DATA_MAP
from services.dsar import report
from services.privacy_center.app import HERE
from services.privacy_center.texts import MESSAGES

DATA_MAP = load_data_map(DEFAULT_DATA_MAP)


def _center_facts(system: dict[str, Any], lang: str) -> str:
    """The summary of one system as the privacy center's templates render it."""
    env = vocabulary.install(environment(HERE / "templates"))
    page = env.from_string('{% import "_summary.html.j2" as summary with context %}{{ summary.facts(s) }}')
    return page.render(s=system, lang=lang, t=translator(kit_catalogue(MESSAGES), lang))


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_every_system_in_the_readers_language(lang: str) -> None:
    systems = summary.summary(DATA_MAP, lang)
    assert [s["id"] for s in systems] == list(DATA_MAP.systems)
    for s in systems:
        entry = DATA_MAP.systems[s["id"]]
        assert s["retention"] == vocabulary.localized(entry, "retention", lang)
        assert s["transfer_mechanism"] == vocabulary.localized(entry, "transfer_mechanism", lang)
        assert s["location"] == vocabulary.localized(entry, "location", lang)
    marketing = next(s for s in systems if s["id"] == "marketing_email")
    assert marketing["retention"].startswith("tills samtycket" if lang == "sv" else "until consent")


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_the_center_renders_exactly_what_the_report_says(lang: str) -> None:
    package = {"locale": lang, "systems": {system: {"status": "done", "data": {}} for system in DATA_MAP.systems}}
    index = report.render(package, DATA_MAP)
    for system in summary.summary(DATA_MAP, lang):
        facts = _center_facts(system, lang)
        assert facts in index, system["id"]
        assert vocabulary.localized(DATA_MAP.systems[system["id"]], "transfer_mechanism", lang) in facts
    heading = summary.SUMMARY_MESSAGES["summary.title"][lang]
    assert heading in index
    assert "Hur länge" in _center_facts(summary.summary(DATA_MAP, "sv")[0], "sv")
    assert "For how long" in _center_facts(summary.summary(DATA_MAP, "en")[0], "en")


def test_data_map_texts_are_escaped() -> None:
    hostile = "<script>alert(1)</script>"
    entry = dataclasses.replace(DATA_MAP.systems["analytics"], retention=hostile, retention_sv=hostile)
    data_map = DataMap(**{**{f.name: getattr(DATA_MAP, f.name) for f in dataclasses.fields(DATA_MAP)},
                          "systems": {"analytics": entry}})
    for lang in ("sv", "en"):
        facts = _center_facts(summary.summary(data_map, lang)[0], lang)
        assert hostile not in facts and "&lt;script&gt;alert(1)&lt;/script&gt;" in facts
