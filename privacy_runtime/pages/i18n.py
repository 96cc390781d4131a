"""Languages of the people-facing pages: Swedish by default, English on request.

A page's language comes from, in order: a `lang` query parameter (the visible switch), the `lang`
cookie the switch leaves, the browser's Accept-Language, and Swedish (the controller's language).
Messages live in catalogues: one key, one text per language, checked complete when loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

LANGUAGES: tuple[str, ...] = ("sv", "en")
DEFAULT_LANGUAGE = "sv"
LANGUAGE_NAMES = {"sv": "Svenska", "en": "English"}


def parse_accept_language(header: str | None) -> list[str]:
    """Primary language tags of an Accept-Language header, best first (q=0 dropped, bad parts skipped)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "")[:1000].split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        if not tag or tag == "*":
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, tag.split("-")[0]))
    return [tag for _, _, tag in sorted(ranked)]


def choose_language(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return str(candidate)
    for tag in parse_accept_language(accept_language):
        if tag in LANGUAGES:
            return tag
    return DEFAULT_LANGUAGE


def both(sv: str, en: str) -> dict[str, str]:
    """One message in both languages (how every app's catalogue is written)."""
    return {"sv": sv, "en": en}


class IncompleteCatalogue(ValueError):
    pass


@dataclass(frozen=True)
class Catalogue:
    """Messages by key, each in every language. `str.format` placeholders fill in values."""

    messages: Mapping[str, Mapping[str, str]]

    def __post_init__(self) -> None:
        missing = [f"{key} ({lang})" for key, texts in self.messages.items() for lang in LANGUAGES
                   if not texts.get(lang)]
        if missing:
            raise IncompleteCatalogue("messages without a text: " + ", ".join(sorted(missing)))

    def merged(self, other: Mapping[str, Mapping[str, str]]) -> Catalogue:
        return Catalogue({**self.messages, **other})

    def text(self, lang: str, key: str, **values: object) -> str:
        texts = self.messages.get(key)
        if texts is None:
            raise KeyError(f"no message {key!r}")
        text = texts.get(lang) or texts[DEFAULT_LANGUAGE]
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in self.messages

    def table(self, lang: str) -> dict[str, str]:
        """Every message in one language, by key (what a translator reads; what tests compare)."""
        return {key: texts[lang] for key, texts in self.messages.items() if lang in texts}


#: What the shared layout and error pages say.
KIT_MESSAGES: dict[str, dict[str, str]] = {
    "kit.skip": {"sv": "Hoppa till innehållet", "en": "Skip to content"},
    "kit.language": {"sv": "Språk", "en": "Language"},
    "kit.controller": {
        "sv": "ISOPARTNER AB (en del av IPCOM-koncernen), Sverige, är personuppgiftsansvarig.",
        "en": "ISOPARTNER AB (part of the IPCOM group), Sweden, is the controller of your personal data.",
    },
    "kit.contact": {"sv": "Frågor om hur vi behandlar personuppgifter: {contact}",
                    "en": "Questions about how we process personal data: {contact}"},
    "kit.complaint": {"sv": "Du kan också klaga hos Integritetsskyddsmyndigheten (IMY), www.imy.se.",
                      "en": "You can also complain to the Swedish Authority for Privacy Protection (IMY), "
                            "www.imy.se."},
    "kit.error.title": {"sv": "Något gick inte att göra", "en": "Something could not be done"},
    "kit.error.back": {"sv": "Till startsidan", "en": "Back to the start page"},
    "kit.error.400": {"sv": "Formuläret innehöll något vi inte kunde läsa. Gå tillbaka och försök igen.",
                      "en": "The form held something we could not read. Go back and try again."},
    "kit.error.403": {"sv": "Sidan har gått ut eller skickades inte från vår webbplats. Ladda om sidan och "
                            "försök igen.",
                      "en": "The page has expired or was not sent from our site. Reload the page and try again."},
    "kit.error.404": {"sv": "Sidan finns inte, eller så har länken gått ut.",
                      "en": "The page does not exist, or the link has expired."},
    "kit.error.405": {"sv": "Sidan kan inte användas på det sättet.", "en": "The page cannot be used that way."},
    "kit.error.410": {"sv": "Länken har redan använts eller har gått ut.",
                      "en": "The link has already been used or has expired."},
    "kit.error.413": {"sv": "Formuläret var för stort. Korta texten och försök igen.",
                      "en": "The form was too large. Shorten the text and try again."},
    "kit.error.415": {"sv": "Formuläret skickades i ett format vi inte tar emot.",
                      "en": "The form was sent in a format we do not accept."},
    "kit.error.429": {"sv": "För många försök på kort tid. Vänta en stund och försök igen.",
                      "en": "Too many attempts in a short time. Wait a while and try again."},
    "kit.error.500": {"sv": "Något gick fel hos oss. Försök igen om en stund.",
                      "en": "Something went wrong on our side. Try again in a while."},
    "kit.error.503": {"sv": "Tjänsten är inte tillgänglig just nu. Försök igen om en stund.",
                      "en": "The service is not available right now. Try again in a while."},
}

KIT_CATALOGUE = Catalogue(KIT_MESSAGES)
