"""What we hold per system, why, on which basis, for how long, where and under which safeguard: one
pure function from the data map, and its texts, shared by the access report (services/dsar/report.py)
and the privacy center's `/me` page, so both say exactly the same thing in the same words.

The matching markup is the macro `systems` in privacy_runtime/pages/templates/_summary.html.j2.
"""

from __future__ import annotations

from typing import Any

from privacy_runtime import vocabulary
from privacy_runtime.datamap import DataMap, SystemEntry

#: Labels of the summary, sv and en; merged into each catalogue that renders the macro.
SUMMARY_MESSAGES: dict[str, dict[str, str]] = {
    "summary.title": {"sv": "Vad vi har om dig, system för system", "en": "What we hold about you, system by system"},
    "summary.categories": {"sv": "Slags uppgifter", "en": "Kinds of data"},
    "summary.why": {"sv": "Varför, och med vilken rättslig grund", "en": "Why, and on which legal basis"},
    "summary.retention": {"sv": "Hur länge", "en": "For how long"},
    "summary.location": {"sv": "Var uppgifterna lagras", "en": "Where the data is stored"},
    "summary.transfer": {"sv": "Skydd vid överföring utanför EES", "en": "Safeguard for transfers outside the EEA"},
    "summary.recipient": {"sv": "Vem som tar emot uppgifterna", "en": "Who receives the data"},
    "summary.recipient.internal": {"sv": "Bara vi själva", "en": "Only we ourselves"},
    "summary.recipient.external": {"sv": "{name}, utanför vår egen drift", "en": "{name}, outside our own operations"},
}


def system_summary(entry: SystemEntry, data_map: DataMap, lang: str) -> dict[str, Any]:
    """One system's facts from the data map, ids left as ids (the template puts them in words)."""
    return {
        "id": entry.id,
        "categories": list(entry.holds),
        "purposes": [
            {"id": p, "legal_basis": vocabulary.localized(data_map.purposes.get(p), "legal_basis", lang)}
            for p in entry.purposes
        ],
        "retention": vocabulary.localized(entry, "retention", lang),
        "location": vocabulary.localized(entry, "location", lang),
        "transfer_mechanism": vocabulary.localized(entry, "transfer_mechanism", lang),
        "internal": entry.internal,
    }


def summary(data_map: DataMap, lang: str) -> list[dict[str, Any]]:
    """Every system of the data map, in its order."""
    return [system_summary(entry, data_map, lang) for entry in data_map.systems.values()]
