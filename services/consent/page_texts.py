"""What the unsubscribe page says, in Swedish and English (one key, one text per language)."""

from __future__ import annotations

UNSUBSCRIBE_MESSAGES: dict[str, dict[str, str]] = {
    "unsubscribe.title": {"sv": "Avregistrera dig", "en": "Unsubscribe"},
    "unsubscribe.ask": {
        "sv": "Vill du sluta få {purpose} från ISOPARTNER AB? Tryck på knappen så återkallar vi ditt samtycke. "
              "Inget händer förrän du har tryckt.",
        "en": "Do you want to stop {purpose} from ISOPARTNER AB? Press the button and we will withdraw your "
              "consent. Nothing happens until you press it.",
    },
    "unsubscribe.button": {"sv": "Ja, avregistrera mig", "en": "Yes, unsubscribe me"},
    "unsubscribe.done.title": {"sv": "Du har avregistrerats", "en": "You are unsubscribed"},
    "unsubscribe.done": {
        "sv": "Vi har noterat att du inte längre samtycker till {purpose} hos ISOPARTNER AB. Det kan ta en "
              "liten stund innan alla våra system har fått veta det.",
        "en": "We have recorded that you no longer consent to {purpose} by ISOPARTNER AB. It may take a "
              "little while before all our systems know.",
    },
    "unsubscribe.already": {
        "sv": "Du samtycker redan inte till {purpose} hos ISOPARTNER AB. Du behöver inte göra något mer.",
        "en": "You already do not consent to {purpose} by ISOPARTNER AB. There is nothing more to do.",
    },
    "unsubscribe.more": {
        "sv": "Vill du se eller ändra dina andra val, eller utöva dina rättigheter? Gå till integritetscentret.",
        "en": "Want to see or change your other choices, or exercise your rights? Go to the privacy center.",
    },
    "unsubscribe.more.link": {"sv": "Till integritetscentret", "en": "To the privacy center"},
    "unsubscribe.invalid.title": {"sv": "Länken är ogiltig", "en": "This link is not valid"},
    "unsubscribe.invalid": {
        "sv": "Länken kunde inte användas. Kontakta {contact} så hjälper vi dig.",
        "en": "The link could not be used. Contact {contact} and we will help.",
    },
}
