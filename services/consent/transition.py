"""The ledger's pure step: new entries and the stored state in, the new state and the commands out.

No I/O here. `services/consent/ledger.py` appends the entries, loads what `advance` needs (the stored
state of the purposes they touch), saves `Step.saved`, loads the profiles the step asks for
(`Step.regranted`, `Step.signed_up`) and issues `Step.commands`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from schemas.enums import ConsentChannel
from services.consent.rules import (
    CONSENT_IN_STRICT_JURISDICTIONS,
    ConsentRecord,
    SubjectProfile,
    propagation,
    supersedes,
)

#: (subject, purpose): what one current state is kept for.
Key = tuple[str, str]


class Entry(NamedTuple):
    """One ledger entry to append: a subject's record for one purpose."""

    subject: str
    record: ConsentRecord


class SubjectCommand(NamedTuple):
    """A command for one subject's purpose to one downstream system."""

    subject: str
    system: str
    action: str
    purpose: str


@dataclass(frozen=True)
class Change:
    """A purpose whose current state the step moved: from `previous` (None: never stated) to `record`."""

    subject: str
    previous: ConsentRecord | None
    record: ConsentRecord

    @property
    def regrants(self) -> bool:
        """A grant that undoes a withdrawal: passed on only where the profile allows the purpose."""
        return self.record.granted and self.previous is not None and not self.previous.granted

    @property
    def signs_up(self) -> bool:
        """A first answer given at sign-up: passed on only where it differs from the jurisdiction's
        default, so it needs the subject's country."""
        return (self.previous is None and self.record.channel == ConsentChannel.REGISTRATION
                and self.record.purpose in CONSENT_IN_STRICT_JURISDICTIONS)


@dataclass(frozen=True)
class Step:
    changes: tuple[Change, ...]

    @property
    def saved(self) -> list[str]:
        """The entry ids that become the current state of their purpose."""
        return [change.record.event_id for change in self.changes]

    @property
    def state(self) -> dict[Key, ConsentRecord]:
        """The new current state of the purposes the step moved."""
        return {(change.subject, change.record.purpose): change.record for change in self.changes}

    @property
    def regranted(self) -> list[str]:
        """Subjects whose profile may deny a re-grant (restricted, a minor, an objection)."""
        return sorted({change.subject for change in self.changes if change.regrants})

    @property
    def signed_up(self) -> list[str]:
        """Subjects whose sign-up answers need their profile (the country)."""
        return sorted({change.subject for change in self.changes if change.signs_up})

    def commands(
        self, systems_by_purpose: dict[str, list[str]], profiles: Mapping[str, SubjectProfile]
    ) -> list[SubjectCommand]:
        """What the systems must be told. `profiles`: those of `regranted` that can deny a purpose (the
        others may be left out) and every one of `signed_up`."""
        return [
            SubjectCommand(change.subject, command.system, command.action, command.purpose)
            for change in self.changes
            for command in propagation(
                change.previous, change.record, systems_by_purpose, profiles.get(change.subject))
        ]


def new_entries(entries: Iterable[Entry], appended: Collection[str]) -> list[Entry]:
    """The entries the ledger did not hold yet (`appended`: their ids), each once: a re-delivered event
    is already in the ledger and changes nothing."""
    unique: dict[str, Entry] = {}
    for entry in entries:
        if entry.record.event_id in appended:
            unique.setdefault(entry.record.event_id, entry)
    return list(unique.values())


def keys(entries: Iterable[Entry]) -> list[Key]:
    """The (subject, purpose) states `advance` needs to know, sorted."""
    return sorted({(entry.subject, entry.record.purpose) for entry in entries})


def advance(entries: Sequence[Entry], stored: Mapping[Key, ConsentRecord]) -> Step:
    """Move current state forward in ordering time: each purpose keeps the entry of highest precedence
    among what was stored and what came. Only purposes whose state moved are in the step, each once."""
    winners: dict[Key, ConsentRecord] = {}
    for subject, record in entries:
        key = (subject, record.purpose)
        if supersedes(record, winners.get(key, stored.get(key))):
            winners[key] = record
    return Step(tuple(
        Change(subject, stored.get((subject, purpose)), record)
        for (subject, purpose), record in winners.items()
    ))


def counts(entries: Iterable[Entry]) -> Counter[tuple[str, bool]]:
    """How many entries of each (purpose, granted): the changes metric."""
    return Counter((entry.record.purpose, entry.record.granted) for entry in entries)
