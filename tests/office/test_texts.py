"""The office's texts: the Swedish and English tables say the same things (the same keys, each filled),
and every text a template or view asks for exists, so no page fails or falls back to another language."""

from __future__ import annotations

import re
from pathlib import Path

from privacy_runtime.pages.i18n import LANGUAGES
from services.office import texts, views

OFFICE = Path(texts.__file__).parent
#: `t("key")`, `t('key', ...)`, `text(request, "key")` with a literal key.
USED = re.compile(r"""\bt\(\s*["']([a-z0-9_.]+)["']|\btext\(\s*request,\s*["']([a-z0-9_.]+)["']""")


def test_swedish_and_english_tables_have_exactly_the_same_keys() -> None:
    swedish = texts.CATALOGUE.table("sv")
    english = texts.CATALOGUE.table("en")
    assert set(swedish) == set(english)
    assert set(swedish) >= set(texts.MESSAGES)  # the office's own, with the kit's
    for key, both in texts.MESSAGES.items():
        assert set(both) == set(LANGUAGES), key
        assert both["sv"].strip() and both["en"].strip(), key
        # The same placeholders in both languages, so a value is never lost in one of them.
        assert set(re.findall(r"{(\w+)}", both["sv"])) == set(re.findall(r"{(\w+)}", both["en"])), key


def test_every_text_the_pages_ask_for_exists() -> None:
    sources = [*OFFICE.glob("templates/*.j2"), OFFICE / "views.py"]
    used = {a or b for path in sources for a, b in USED.findall(path.read_text())}
    assert len(used) > 150  # the pattern finds the pages' texts
    # A key built from an id (`t("rejection." ~ key)`) is checked with its ids below.
    missing = sorted(key for key in used if not key.endswith(".") and not texts.CATALOGUE.has(key))
    assert not missing, missing
    for _, label in views.NAV:
        assert texts.CATALOGUE.has(label)


def test_ids_read_as_words_in_both_languages() -> None:
    from services.office import present

    for key in present.REJECTION_KEYS:
        assert texts.CATALOGUE.has(f"rejection.{key}")
    for status in present.STATUSES:
        assert texts.word("sv", "status", status) != texts.word("en", "status", status)
    assert texts.word("sv", "status", "identity_pending") == "väntar på identitetskod"
    assert texts.word("en", "command", "lift_restriction") == "lift restriction"
    assert texts.word("sv", "status", "made_up_status") == "made up status"  # unknown: shown, not an error
    entries = present.timeline([
        {"at": "2026-12-01T10:00:01+00:00", "action": "case_rejected", "actor": "service:dsar",
         "detail": {"reason": "Art. 21(1)", "from": "in_progress", "to": "rejected", "system": "billing"}},
    ], "sv")
    assert entries[0].what == "Avslaget" and entries[0].actor == "tjänsten dsar"
    assert entries[0].detail == "skäl: Art. 21(1); system: Fakturering och bokföring; från: pågår; till: avslaget"
    assert present.week_label("2026-11-30", "sv") == "v. 49" and present.week_label("2026-11-30", "en") == "W49"


def test_every_review_code_of_dsar_has_words_in_both_languages() -> None:
    from services.dsar import reviews

    for code in reviews.CODES:
        assert texts.CATALOGUE.has(f"review.{code}"), code
        # The same parameters as dsar's English sentence: none is dropped, none is missing.
        needed = set(re.findall(r"{(\w+)}", reviews.ENGLISH[code]))
        for lang in LANGUAGES:
            assert set(re.findall(r"{(\w+)}", texts.CATALOGUE.table(lang)[f"review.{code}"])) == needed, (code, lang)
