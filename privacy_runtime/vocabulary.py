"""What a person reads for an id of the contract, in Swedish and English: one place for every email,
page and report.

Purposes, systems, data categories, rights and the rest are ids in events and in the data map; a
person never reads them raw ("contact, account" in a Swedish email). `word(kind, id, lang)` gives the
words; an id not listed (a data category a publisher wrote in words of its own) is shown as given,
with underscores as spaces. `jinja_helpers()` gives the same as Jinja globals and filters that take the
language from the template's `locale` (or `lang`) variable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import jinja2

LANGUAGES: tuple[str, ...] = ("sv", "en")
DEFAULT_LANGUAGE = "sv"

Words = Mapping[str, Mapping[str, str]]  # lang -> id -> words

PURPOSE: Words = {
    "sv": {
        "service_delivery": "leverans av konto och tjänster",
        "payments": "betalningar",
        "support": "kundtjänst",
        "security": "skydd av tjänsterna",
        "bookkeeping": "bokföring",
        "service_improvement": "förbättring av tjänsterna",
        "personalization": "anpassat innehåll",
        "analytics": "användningsanalys",
        "marketing_email": "marknadsföring via e-post",
        "third_party_marketing": "marknadsföring från tredje part",
        "partner_sharing": "delning med partner",
        "group_sharing": "delning inom IPCOM-koncernen",
        "profiling": "profilering",
    },
    "en": {
        "service_delivery": "providing the account and services",
        "payments": "taking payments",
        "support": "customer support",
        "security": "protecting the services",
        "bookkeeping": "bookkeeping",
        "service_improvement": "improving the services",
        "personalization": "tailoring content",
        "analytics": "usage analytics",
        "marketing_email": "marketing by email",
        "third_party_marketing": "marketing by third parties",
        "partner_sharing": "sharing with partners",
        "group_sharing": "sharing within the IPCOM group",
        "profiling": "profiling",
    },
}

SYSTEM: Words = {
    "sv": {
        "accounts": "Kundkonton",
        "billing": "Fakturering och bokföring",
        "marketing_email": "Marknadsföring via e-post",
        "analytics": "Analys",
        "logs": "Säkerhetsloggar",
        "support": "Kundtjänst",
        "partners": "Partner",
        "ipcom_group": "IPCOM-koncernen",
        "consent": "Samtyckesregister",
        "dsar": "Ärenden om dina rättigheter",
        "notifier": "Våra e-postutskick",
    },
    "en": {
        "accounts": "Customer accounts",
        "billing": "Billing and bookkeeping",
        "marketing_email": "Email marketing",
        "analytics": "Analytics",
        "logs": "Security logs",
        "support": "Customer support",
        "partners": "Partners",
        "ipcom_group": "The IPCOM group",
        "consent": "Consent records",
        "dsar": "Records of your rights requests",
        "notifier": "Our email notices",
    },
}

#: Data categories: what the data map's systems hold (`holds`), and what notices name.
CATEGORY: Words = {
    "sv": {
        "identity": "identitetsuppgifter",
        "contact": "kontaktuppgifter",
        "account": "kontouppgifter",
        "payment": "betalningsuppgifter",
        "invoices": "fakturor",
        "engagement": "hur du tar del av våra utskick",
        "usage": "hur du använder tjänsterna",
        "device": "uppgifter om din enhet",
        "ip": "IP-adresser",
        "tickets": "kundtjänstärenden",
        "consent records": "dina samtycken",
        "request records": "dina begäranden om dina rättigheter",
    },
    "en": {
        "identity": "identity details",
        "contact": "contact details",
        "account": "account details",
        "payment": "payment details",
        "invoices": "invoices",
        "engagement": "how you engage with our emails",
        "usage": "how you use the services",
        "device": "device information",
        "ip": "IP addresses",
        "tickets": "support tickets",
        "consent records": "your consents",
        "request records": "your rights requests",
    },
}

RIGHT: Words = {
    "sv": {
        "access": "tillgång till dina personuppgifter (registerutdrag)",
        "portability": "dataportabilitet",
        "rectification": "rättelse",
        "restriction": "begränsning av behandling",
        "objection": "invändning mot behandling",
        "erasure": "radering",
    },
    "en": {
        "access": "access to your personal data",
        "portability": "data portability",
        "rectification": "rectification",
        "restriction": "restriction of processing",
        "objection": "objection to processing",
        "erasure": "erasure",
    },
}

FIELD: Words = {
    "sv": {"email": "e-postadress", "name": "namn", "company": "företag", "phone": "telefonnummer",
           "locale": "språk", "country": "land"},
    "en": {"email": "email address", "name": "name", "company": "company", "phone": "phone number",
           "locale": "language", "country": "country"},
}

PROCESSING: Words = {
    "sv": {"marketing": "direktmarknadsföring", "profiling": "profilering",
           "legitimate_interest": "ändamål som grundar sig på vårt berättigade intresse"},
    "en": {"marketing": "direct marketing", "profiling": "profiling",
           "legitimate_interest": "purposes based on our legitimate interests"},
}

#: Where a consent change came from (`consent-changed` channel).
CHANNEL: Words = {
    "sv": {
        "email_footer": "länken i ett e-postmeddelande",
        "preference_center": "integritetscentret",
        "support": "kundtjänst",
        "registration": "registreringen",
        "cookie_banner": "cookiebannern",
        "gpc": "webbläsarens signal Global Privacy Control",
        "api": "en av våra tjänster",
    },
    "en": {
        "email_footer": "the link in an email",
        "preference_center": "the privacy center",
        "support": "customer support",
        "registration": "registration",
        "cookie_banner": "the cookie banner",
        "gpc": "your browser's Global Privacy Control signal",
        "api": "one of our services",
    },
}

#: Where a registration came from (`user-registered` source).
SOURCE: Words = {
    "sv": {"web": "webbplatsen", "seminar": "en seminarieanmälan", "partner": "en partner",
           "survey": "en enkät", "social_login": "inloggning med ett socialt konto", "support": "kundtjänst",
           "import": "en import av kunduppgifter"},
    "en": {"web": "our website", "seminar": "a seminar sign-up", "partner": "a partner",
           "survey": "a survey", "social_login": "a social login", "support": "customer support",
           "import": "an import of customer records"},
}

GROUND: Words = {
    "sv": {
        "no_longer_necessary": "uppgifterna behövs inte längre",
        "consent_withdrawn": "jag har återkallat mitt samtycke",
        "objection_legitimate_interest": "jag invänder mot behandling som grundar sig på berättigat intresse",
        "marketing_objection": "jag invänder mot direktmarknadsföring",
        "unlawful_processing": "uppgifterna har behandlats olagligt",
        "child_data": "uppgifterna samlades in när jag var barn",
        "retention_expired": "lagringstiden har gått ut",
    },
    "en": {
        "no_longer_necessary": "the data is no longer needed",
        "consent_withdrawn": "I have withdrawn my consent",
        "objection_legitimate_interest": "I object to processing based on legitimate interest",
        "marketing_objection": "I object to direct marketing",
        "unlawful_processing": "the data has been processed unlawfully",
        "child_data": "the data was collected when I was a child",
        "retention_expired": "the retention period has ended",
    },
}

CIRCUMSTANCE: Words = {
    "sv": {
        "accuracy_contested": "jag bestrider att uppgifterna är korrekta",
        "unlawful_processing": "behandlingen är olaglig men jag vill inte att uppgifterna raderas",
        "legal_claims": "jag behöver uppgifterna för ett rättsligt anspråk",
        "objection_pending": "jag har invänt och väntar på besked",
    },
    "en": {
        "accuracy_contested": "I contest that the data is accurate",
        "unlawful_processing": "the processing is unlawful but I do not want the data erased",
        "legal_claims": "I need the data for a legal claim",
        "objection_pending": "I have objected and am waiting for an answer",
    },
}

STATUS: Words = {
    "sv": {
        "received": "mottagen",
        "identity_pending": "väntar på att du bekräftar att det är du",
        "in_progress": "pågår",
        "awaiting_systems": "väntar på svar från våra system",
        "completed": "klar",
        "rejected": "avslagen",
        "cancelled": "avbruten",
        "closed_unverified": "avslutad: inte bekräftad i tid",
    },
    "en": {
        "received": "received",
        "identity_pending": "waiting for you to confirm it is you",
        "in_progress": "in progress",
        "awaiting_systems": "waiting for our systems to answer",
        "completed": "completed",
        "rejected": "rejected",
        "cancelled": "cancelled",
        "closed_unverified": "closed: not confirmed in time",
    },
}

#: Our emails, by template (`notification-requested` template), as a list of sent emails names them.
EMAIL: Words = {
    "sv": {
        "verification_code": "verifieringskod",
        "privacy_center_link": "inloggningslänk till integritetscentret",
        "request_received": "bekräftelse på begäran",
        "deadline_extended": "förlängd svarstid",
        "export_ready": "kopia av dina personuppgifter klar",
        "erasure_completed": "bekräftelse på radering",
        "request_rejected": "besked om begäran",
        "request_overdue": "försenat svar på begäran",
        "request_completed": "begäran genomförd",
        "merger_notice": "information om fusion eller förvärv",
        "policy_changed": "ändrad integritetspolicy",
        "legal_disclosure": "information om utlämnande",
    },
    "en": {
        "verification_code": "verification code",
        "privacy_center_link": "sign-in link to the privacy center",
        "request_received": "request received",
        "deadline_extended": "deadline extended",
        "export_ready": "copy of your personal data ready",
        "erasure_completed": "erasure confirmed",
        "request_rejected": "answer to your request",
        "request_overdue": "request overdue",
        "request_completed": "request completed",
        "merger_notice": "notice of a merger or acquisition",
        "policy_changed": "privacy policy changed",
        "legal_disclosure": "notice of a disclosure",
    },
}

KINDS: Mapping[str, Words] = {
    "purpose": PURPOSE,
    "system": SYSTEM,
    "category": CATEGORY,
    "right": RIGHT,
    "field": FIELD,
    "processing": PROCESSING,
    "channel": CHANNEL,
    "source": SOURCE,
    "ground": GROUND,
    "circumstance": CIRCUMSTANCE,
    "status": STATUS,
    "email": EMAIL,
}


def language(value: object) -> str:
    """`sv` or `en`; anything else is the default, Swedish."""
    return value if isinstance(value, str) and value in LANGUAGES else DEFAULT_LANGUAGE


def word(kind: str, value: object, lang: str | None) -> str:
    """The words for one id; an id not listed is shown as given (underscores as spaces)."""
    text = "" if value is None else str(value)
    known = KINDS[kind][language(lang)].get(text)
    return known if known is not None else text.replace("_", " ")


def words(kind: str, values: Iterable[object], lang: str | None) -> list[str]:
    return [word(kind, value, lang) for value in values]


def localized(entry: object, attribute: str, lang: str | None) -> str:
    """A data-map text in the reader's language: `<attribute>_sv` for Swedish where the map gives it,
    else the text as written (English)."""
    if language(lang) == "sv":
        swedish = getattr(entry, f"{attribute}_sv", None)
        if swedish:
            return str(swedish)
    return str(getattr(entry, attribute, "") or "")


def _context_language(context: jinja2.runtime.Context) -> str:
    return language(context.get("locale") or context.get("lang"))


def jinja_helpers() -> dict[str, Callable[..., str]]:
    """`purpose_name(id)`, `system_name(id)`, `category_name(id)`, ... for any Jinja environment,
    usable as globals (`{{ purpose_name(p) }}`) and filters (`{{ items|map("category_name")|join(", ") }}`)."""

    def helper(kind: str) -> Callable[..., str]:
        @jinja2.pass_context
        def name(context: jinja2.runtime.Context, value: object) -> str:
            return word(kind, value, _context_language(context))

        return name

    return {f"{kind}_name": helper(kind) for kind in KINDS}


def install(env: jinja2.Environment) -> jinja2.Environment:
    """Add the helpers to an environment as globals and filters."""
    helpers = jinja_helpers()
    env.globals.update(helpers)
    env.filters.update(helpers)
    return env
