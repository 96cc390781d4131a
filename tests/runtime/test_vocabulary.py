"""Every id of the contract a person may read has words in Swedish and English, in one place."""

from __future__ import annotations

from enum import StrEnum

import jinja2
import pytest

from privacy_runtime import vocabulary
from privacy_runtime.datamap import load_data_map
from privacy_runtime.settings import DEFAULT_DATA_MAP
from schemas.enums import (
    CaseRight,
    CaseStatus,
    ConsentChannel,
    ErasureGround,
    ObjectionProcessing,
    Purpose,
    RegistrationSource,
    RestrictionCircumstance,
    SystemId,
)

ENUMS: dict[str, type[StrEnum]] = {
    "purpose": Purpose,
    "system": SystemId,
    "right": CaseRight,
    "channel": ConsentChannel,
    "source": RegistrationSource,
    "ground": ErasureGround,
    "circumstance": RestrictionCircumstance,
    "processing": ObjectionProcessing,
    "status": CaseStatus,
}


@pytest.mark.parametrize("lang", vocabulary.LANGUAGES)
@pytest.mark.parametrize("kind", sorted(ENUMS))
def test_every_id_of_the_contract_has_words(kind: str, lang: str) -> None:
    listed = vocabulary.KINDS[kind][lang]
    assert {e.value for e in ENUMS[kind]} <= set(listed), f"{kind}/{lang}: ids without words"


@pytest.mark.parametrize("lang", vocabulary.LANGUAGES)
def test_every_data_category_and_field_of_the_data_map_has_words(lang: str) -> None:
    data_map = load_data_map(DEFAULT_DATA_MAP)
    for system in data_map.systems.values():
        for category in system.holds:
            assert category in vocabulary.CATEGORY[lang], f"{system.id}: {category!r} has no words in {lang}"
        for field in system.fields:
            assert field in vocabulary.FIELD[lang], f"{system.id}: field {field!r} has no words in {lang}"


def test_swedish_and_english_differ_and_swedish_is_the_default() -> None:
    assert vocabulary.word("category", "contact", "sv") == "kontaktuppgifter"
    assert vocabulary.word("category", "contact", "en") == "contact details"
    assert vocabulary.word("purpose", "marketing_email", None) == "marknadsföring via e-post"
    assert vocabulary.word("purpose", "marketing_email", "de") == "marknadsföring via e-post"


def test_an_unlisted_value_is_shown_as_written() -> None:
    assert vocabulary.word("category", "Loggar över inloggningar", "en") == "Loggar över inloggningar"
    assert vocabulary.word("purpose", "new_purpose", "sv") == "new purpose"
    assert vocabulary.words("category", ["ip", None], "sv") == ["IP-adresser", ""]


def test_jinja_helpers_follow_the_templates_language() -> None:
    env = vocabulary.install(jinja2.Environment(autoescape=True))
    template = env.from_string('{{ purpose_name("analytics") }}; {{ items|map("category_name")|join(", ") }}')
    assert template.render(locale="sv", items=["contact", "<x>"]) == "användningsanalys; kontaktuppgifter, &lt;x&gt;"
    assert template.render(lang="en", items=["contact"]) == "usage analytics; contact details"


def test_data_map_texts_in_swedish_where_the_map_gives_them() -> None:
    data_map = load_data_map(DEFAULT_DATA_MAP)
    billing = data_map.systems["billing"]
    assert vocabulary.localized(billing, "retained_basis", "sv").startswith("Bokföringslagen 7 kap. 2 §")
    assert vocabulary.localized(billing, "retained_basis", "en").startswith("Bokföringslagen 7:2")
    for system in data_map.systems.values():
        for attribute in ("location", "transfer_mechanism", "retention"):
            assert vocabulary.localized(system, attribute, "sv") != vocabulary.localized(system, attribute, "en"), (
                f"{system.id}.{attribute} has no Swedish text"
            )
    for purpose in data_map.purposes.values():
        assert vocabulary.localized(purpose, "legal_basis", "sv") != purpose.legal_basis


@pytest.mark.parametrize("lang", vocabulary.LANGUAGES)
def test_every_email_template_has_words(lang: str) -> None:
    from services.notifier.templates import TEMPLATE_NAMES

    assert set(TEMPLATE_NAMES) <= set(vocabulary.EMAIL[lang])
