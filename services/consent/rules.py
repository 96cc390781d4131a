"""Consent rules as pure functions: jurisdiction, legal basis, decisions, ordering, propagation.

No I/O here. The store feeds these functions what it read and writes what they return.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from schemas.enums import CommandAction, ConsentChannel, ObjectionProcessing, Purpose, Right

CONTROLLER = "ISOPARTNER AB"

PURPOSES: tuple[Purpose, ...] = tuple(Purpose)

#: Opt-in everywhere.
CONSENT_ALWAYS = frozenset({Purpose.ANALYTICS, Purpose.PROFILING, Purpose.THIRD_PARTY_MARKETING})
#: Opt-in in the EEA, UK and Switzerland (and when the country is unknown); opt-out elsewhere.
CONSENT_IN_STRICT_JURISDICTIONS = frozenset({Purpose.MARKETING_EMAIL, Purpose.PARTNER_SHARING, Purpose.GROUP_SHARING})
CONSENT_PURPOSES = CONSENT_ALWAYS | CONSENT_IN_STRICT_JURISDICTIONS

CONTRACT_PURPOSES = frozenset({Purpose.SERVICE_DELIVERY, Purpose.PAYMENTS, Purpose.SUPPORT})
LEGAL_OBLIGATION_PURPOSES = frozenset({Purpose.BOOKKEEPING})
LEGITIMATE_INTEREST_PURPOSES = frozenset({Purpose.SECURITY, Purpose.SERVICE_IMPROVEMENT, Purpose.PERSONALIZATION})

MARKETING_PURPOSES = frozenset({Purpose.MARKETING_EMAIL, Purpose.THIRD_PARTY_MARKETING})
SHARING_PURPOSES = frozenset({Purpose.PARTNER_SHARING, Purpose.GROUP_SHARING, Purpose.THIRD_PARTY_MARKETING})
#: A Global Privacy Control signal is an opt-out of sale/sharing.
GPC_WITHDRAWS = (Purpose.PARTNER_SHARING, Purpose.THIRD_PARTY_MARKETING, Purpose.GROUP_SHARING)
#: A child is never asked for, and never given, consent-based processing.
DENIED_TO_MINORS = CONSENT_PURPOSES
ADULT_AGE = 18

EEA = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO".split()
)
#: EU territory with ISO codes of its own: the outermost regions (Art. 349 TFEU) and Åland. GDPR applies
#: there as in the rest of the EU.
EU_TERRITORIES_WITH_OWN_CODES = frozenset("RE GP MQ GF YT MF AX".split())
STRICT_JURISDICTIONS = EEA | EU_TERRITORIES_WITH_OWN_CODES | {"GB", "CH"}

#: The objection kind stored when an operator upheld an objection to legitimate-interest processing
#: (Art. 21(1)): from then on nothing rests on legitimate interest for the subject; consent still counts.
UPHELD_LEGITIMATE_INTEREST_OBJECTION = ObjectionProcessing.LEGITIMATE_INTEREST

# Legal bases, as named in GDPR Art. 6(1).
CONSENT = "consent"
CONTRACT = "contract"
LEGAL_OBLIGATION = "legal_obligation"
LEGITIMATE_INTEREST = "legitimate_interest"


def is_strict_jurisdiction(country: str | None) -> bool:
    """Unknown country counts as strict: a VPN can hide where someone is."""
    return country is None or country.upper() in STRICT_JURISDICTIONS


def requires_opt_in(purpose: str, country: str | None) -> bool:
    if purpose in CONSENT_ALWAYS:
        return True
    return purpose in CONSENT_IN_STRICT_JURISDICTIONS and is_strict_jurisdiction(country)


def legal_basis(purpose: str, country: str | None) -> str:
    if purpose in CONTRACT_PURPOSES:
        return CONTRACT
    if purpose in LEGAL_OBLIGATION_PURPOSES:
        return LEGAL_OBLIGATION
    if purpose in LEGITIMATE_INTEREST_PURPOSES:
        return LEGITIMATE_INTEREST
    return CONSENT if requires_opt_in(purpose, country) else LEGITIMATE_INTEREST


def age_on(birth_date: date, on: date) -> int:
    years = on.year - birth_date.year
    if (on.month, on.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def is_minor(birth_date: date | None, on: date) -> bool:
    return birth_date is not None and age_on(birth_date, on) < ADULT_AGE


@dataclass(frozen=True)
class ConsentRecord:
    """One ledger entry for one purpose: `effective_at` is the time its event states; `ordered_at` the
    time it orders by (`privacy_runtime.ordering`: the arrival when the stated time is too far ahead;
    None for entries recorded before ordering time was kept, which order by their stated time)."""

    event_id: str
    purpose: str
    granted: bool
    effective_at: datetime
    channel: str
    policy_version: str | None = None
    ordered_at: datetime | None = None

    @property
    def order_time(self) -> datetime:
        return self.ordered_at if self.ordered_at is not None else self.effective_at


def precedence(record: ConsentRecord) -> tuple[datetime, int, str]:
    """Total order of records of one purpose: ordering time (event time, capped at arrival), then a
    withdrawal beats a grant at the same instant (privacy-protective), then the event id so ties are
    broken deterministically."""
    return (record.order_time, 0 if record.granted else 1, record.event_id)


def supersedes(new: ConsentRecord, current: ConsentRecord | None) -> bool:
    return current is None or precedence(new) > precedence(current)


def current_state(records: Iterable[ConsentRecord]) -> dict[str, ConsentRecord]:
    """The state event-time order gives, whatever order the records arrived in."""
    state: dict[str, ConsentRecord] = {}
    for record in records:
        if supersedes(record, state.get(record.purpose)):
            state[record.purpose] = record
    return state


def withdrawal_time(now: datetime, current: ConsentRecord | None) -> datetime:
    """When a withdrawal the subject makes here and now takes effect: now, or just after the state it
    withdraws when that orders later (a producer's clock running ahead within the tolerance of
    `privacy_runtime.ordering`). The click came after that grant was recorded, so it must not lose to it."""
    if current is not None and current.granted and current.order_time >= now:
        return current.order_time + timedelta(milliseconds=1)
    return now


def expand_change(purpose: Purpose, granted: bool, channel: ConsentChannel) -> list[tuple[Purpose, bool]]:
    """The (purpose, granted) pairs a consent-changed event means.

    A GPC signal withdraws all sharing on top of the purpose it names (a withdrawal is always safe
    to honour). It cannot grant anything: the schema refuses a `gpc` event with `granted` true."""
    if channel == ConsentChannel.GPC and not granted:
        return [(purpose, False)] + [(p, False) for p in GPC_WITHDRAWS if p != purpose]
    return [(purpose, granted)]


@dataclass(frozen=True)
class Command:
    system: str
    action: CommandAction
    purpose: str


def resting_on_legitimate_interest(country: str | None, current: dict[str, ConsentRecord]) -> list[str]:
    """Purposes that need no opt-in in `country` and that the subject never consented to: used on
    legitimate interest. An upheld objection withdraws them, so that their systems are told to stop."""
    return sorted(
        purpose for purpose in CONSENT_IN_STRICT_JURISDICTIONS
        if not requires_opt_in(purpose, country) and not ((c := current.get(purpose)) is not None and c.granted)
    )


def objection_withdraws(right: Right, processing: ObjectionProcessing | None) -> tuple[Purpose, ...]:
    """The purposes an objection withdraws at once: one to marketing or profiling (Art. 21(2)-(3)) is
    absolute. Nothing for any other request, or an objection to legitimate interest (manual review in dsar)."""
    if right != Right.OBJECTION or processing is None or processing == ObjectionProcessing.LEGITIMATE_INTEREST:
        return ()
    if processing == ObjectionProcessing.PROFILING:
        return (Purpose.PROFILING,)
    return (Purpose.MARKETING_EMAIL, Purpose.THIRD_PARTY_MARKETING, Purpose.PROFILING)


def withdraw_action(purpose: str) -> CommandAction:
    return CommandAction.REVOKE_SHARING if purpose in SHARING_PURPOSES else CommandAction.SUPPRESS


def restore_action(purpose: str) -> CommandAction:
    return CommandAction.RESTORE_SHARING if purpose in SHARING_PURPOSES else CommandAction.UNSUPPRESS


def _tell(systems_by_purpose: dict[str, list[str]], action: CommandAction, purpose: str) -> list[Command]:
    return [Command(system, action, purpose) for system in systems_by_purpose.get(purpose, [])]


def propagation(
    previous: ConsentRecord | None,
    new: ConsentRecord,
    systems_by_purpose: dict[str, list[str]],
    profile: SubjectProfile | None = None,
) -> list[Command]:
    """Commands a change of current state sends downstream.

    Only purposes that rest on consent somewhere are passed on: for the others (contract, legal
    obligation, legitimate interest) `decide` does not look at the ledger, so neither do the systems.
    A withdrawal tells every system using the purpose (suppress, or revoke_sharing for sharing);
    a grant after a withdrawal undoes it, unless the subject's profile still denies the purpose
    (restriction, an objection, a minor): a system is never told it may use what `decide` refuses.
    An answer given at registration is passed on only where it denies what the subject's jurisdiction
    allows until withdrawn (a refusal in an opt-out country, a minor's answer): elsewhere the systems'
    default already matches it. That needs the subject's `profile`; without it nothing is sent.
    """
    if new.purpose not in CONSENT_PURPOSES:
        return []
    if previous is None and new.channel == ConsentChannel.REGISTRATION:
        if (profile is None or requires_opt_in(new.purpose, profile.country)
                or decide(new.purpose, profile, new).allowed):
            return []
        return _tell(systems_by_purpose, withdraw_action(new.purpose), new.purpose)
    if previous is not None and previous.granted == new.granted:
        return []
    if not new.granted:
        return _tell(systems_by_purpose, withdraw_action(new.purpose), new.purpose)
    if previous is None:
        return []
    if profile is not None and not decide(new.purpose, profile, new).allowed:
        return []
    return _tell(systems_by_purpose, restore_action(new.purpose), new.purpose)


def jurisdiction_change(
    before: SubjectProfile,
    after: SubjectProfile,
    current: dict[str, ConsentRecord],
    systems_by_purpose: dict[str, list[str]],
) -> list[Command]:
    """Commands a corrected country sends: a purpose the move denies (to Sweden, with no consent given)
    is withdrawn downstream, one it allows (to the US) is restored."""
    commands: list[Command] = []
    for purpose in sorted(CONSENT_IN_STRICT_JURISDICTIONS):
        was = decide(purpose, before, current.get(purpose)).allowed
        now = decide(purpose, after, current.get(purpose)).allowed
        if was != now:
            commands += _tell(systems_by_purpose, withdraw_action(purpose) if was else restore_action(purpose), purpose)
    return commands


@dataclass(frozen=True)
class Registration:
    """One user-registered as it came: where the data came from (Art. 14(2)(f), 15(1)(g))."""

    source: str | None
    country: str | None
    parent_account: str | None
    registered_at: datetime

    def as_dict(self) -> dict[str, object]:
        return {"source": self.source, "country": self.country, "parent_account": self.parent_account,
                "registered_at": self.registered_at.isoformat()}


@dataclass(frozen=True)
class SubjectProfile:
    subject: str
    country: str | None
    minor: bool = False
    restricted: bool = False
    objections: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    basis: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"allowed": self.allowed, "basis": self.basis, "reason": self.reason}


def decide(
    purpose: str,
    profile: SubjectProfile,
    consent: ConsentRecord | None,
    *,
    system: str | None = None,
    system_purposes: Iterable[str] | None = None,
) -> Decision:
    """May `purpose` be used for this subject (optionally: by this system)? First rule that denies wins."""
    basis = legal_basis(purpose, profile.country)
    if system is not None and system_purposes is not None and purpose not in set(system_purposes):
        return Decision(False, basis, f"system {system} may use personal data only for its own purposes "
                                      f"in the data map; {purpose} is not one of them")
    if profile.restricted:
        return Decision(False, basis, "processing is restricted (GDPR Art. 18): the data may only be stored")
    if ObjectionProcessing.MARKETING in profile.objections and purpose in MARKETING_PURPOSES | {Purpose.PROFILING}:
        return Decision(False, basis, "the subject objected to direct marketing (GDPR Art. 21(3)); this is absolute")
    if ObjectionProcessing.PROFILING in profile.objections and purpose == Purpose.PROFILING:
        return Decision(False, basis, "the subject objected to profiling (GDPR Art. 21)")
    if (UPHELD_LEGITIMATE_INTEREST_OBJECTION in profile.objections and basis == LEGITIMATE_INTEREST
            and not (consent is not None and consent.granted)):
        return Decision(False, basis, "the subject's objection to processing on legitimate interest was upheld "
                                      "(GDPR Art. 21(1))")
    if profile.minor and purpose in DENIED_TO_MINORS:
        return Decision(False, basis, "the subject was under 18 at registration; no consent-based processing")
    if purpose not in CONSENT_PURPOSES:
        return Decision(True, basis, f"necessary on the basis of {basis.replace('_', ' ')}")
    if consent is not None and not consent.granted:
        return Decision(False, basis, f"consent withdrawn via {consent.channel} at {consent.effective_at.isoformat()}")
    if consent is not None and consent.granted:
        return Decision(True, CONSENT, f"consent given via {consent.channel} at {consent.effective_at.isoformat()}")
    if requires_opt_in(purpose, profile.country):
        where = profile.country or "unknown country (treated as the EEA)"
        return Decision(False, CONSENT, f"{purpose} needs opt-in consent in {where}; none was given")
    return Decision(True, basis, f"allowed in {profile.country} until the subject objects or withdraws")


def consent_receipt(
    *,
    subject: str,
    record: ConsentRecord,
    country: str | None,
    policy_url: str,
    contact_email: str,
) -> dict[str, object]:
    """A receipt after the Kantara Consent Receipt specification (v1.1 field names)."""
    return {
        "version": "KI-CR-v1.1.0",
        "jurisdiction": country or "unknown (treated as EEA)",
        "consentTimestamp": int(record.effective_at.timestamp()),
        "collectionMethod": record.channel,
        "consentReceiptID": record.event_id,
        "publicKey": None,
        "language": "en",  # the language of the receipt's own words ("until withdrawn", ...)
        "piiPrincipalId": subject,
        "piiControllers": [{"piiController": CONTROLLER, "onBehalf": False, "contact": contact_email,
                            "address": "Sweden", "email": contact_email, "phone": None}],
        "policyUrl": policy_url,
        "policyVersion": record.policy_version,
        "services": [{
            "service": "ISOPARTNER services",
            "purposes": [{
                "purpose": record.purpose,
                "purposeCategory": [record.purpose],
                "consentType": "EXPLICIT",
                "granted": record.granted,
                "piiCategory": ["contact"],
                "primaryPurpose": False,
                "termination": "until withdrawn",
                "thirdPartyDisclosure": record.purpose in SHARING_PURPOSES,
            }],
        }],
        "sensitive": False,
        "spiCat": [],
    }
