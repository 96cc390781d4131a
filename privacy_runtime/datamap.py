"""The data map: which systems hold what, for which purposes, where, and what erasure means there.

It is a data file (YAML) operators change without code; routing of commands follows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from schemas.enums import Purpose, SystemId

SYSTEM_IDS = frozenset(SystemId)
PURPOSES = frozenset(Purpose)

ERASE = "erase"
RETAIN = "retain"

#: Days after a subject's last activity past which their data is no longer needed (GDPR Art. 5(1)(e)):
#: an account unused for 3 years is taken as abandoned. Used when the data map does not set
#: `inactive_subject_retention_days`.
DEFAULT_INACTIVE_SUBJECT_RETENTION_DAYS = 3 * 365
#: A smaller value is refused: a typo (3 for 1095) would otherwise erase nearly every subject.
MIN_INACTIVE_SUBJECT_RETENTION_DAYS = 30


@dataclass(frozen=True)
class SystemEntry:
    id: str
    holds: tuple[str, ...]
    purposes: tuple[str, ...]
    on_erase: str  # erase | retain
    location: str
    transfer_mechanism: str
    fields: tuple[str, ...] = ()
    retained_basis: str | None = None
    #: The same in Swedish, for the erasure email in Swedish (the default language of the emails).
    retained_basis_sv: str | None = None
    retention: str | None = None
    internal: bool = False
    revoke_before_erase: bool = False
    #: What a person reads, in Swedish, where the map gives it (privacy_runtime/vocabulary.localized).
    location_sv: str | None = None
    transfer_mechanism_sv: str | None = None
    retention_sv: str | None = None


@dataclass(frozen=True)
class PurposeEntry:
    id: str
    legal_basis: str
    description: str
    legal_basis_sv: str | None = None
    description_sv: str | None = None


@dataclass(frozen=True)
class DataMap:
    controller: dict[str, str]
    systems: dict[str, SystemEntry]
    purposes: dict[str, PurposeEntry] = field(default_factory=dict)
    #: One value for the whole subject, not per system: what it triggers is one `erasure-requested`
    #: (ground `retention_expired`), which the contract defines for a subject across every system.
    #: Shorter per-system periods (the free-text `retention`, e.g. logs 90 days) are each system's own
    #: rolling deletion; longer legal ones (billing) are kept by that system answering `retained`.
    inactive_subject_retention_days: int = DEFAULT_INACTIVE_SUBJECT_RETENTION_DAYS

    def system_ids(self) -> list[str]:
        return list(self.systems)

    def systems_for_purpose(self, purpose: str) -> list[SystemEntry]:
        return [s for s in self.systems.values() if purpose in s.purposes]

    def systems_holding_fields(self, names: set[str]) -> list[SystemEntry]:
        return [s for s in self.systems.values() if names & set(s.fields)]

    def get(self, system: str) -> SystemEntry | None:
        return self.systems.get(system)


class DataMapError(ValueError):
    pass


def _inactive_subject_retention_days(doc: dict[str, Any]) -> int:
    value = doc.get("inactive_subject_retention_days", DEFAULT_INACTIVE_SUBJECT_RETENTION_DAYS)
    # bool is an int in Python; `true` in YAML is a mistake, not 1 day.
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataMapError(f"inactive_subject_retention_days must be a whole number of days, not {value!r}")
    if value < MIN_INACTIVE_SUBJECT_RETENTION_DAYS:
        raise DataMapError(
            f"inactive_subject_retention_days is {value}; it must be at least "
            f"{MIN_INACTIVE_SUBJECT_RETENTION_DAYS} (subjects inactive that long are erased)"
        )
    return value


def _check_contract_ids(system_id: str, purposes: Any) -> None:
    """System ids and purposes are the contract's: a system outside it has no command topic, and a
    command to it would be refused, so the change it routes would be lost. Operators may move
    purposes between systems, not invent ids."""
    if system_id not in SYSTEM_IDS:
        raise DataMapError(f"system {system_id!r} is not a system id of the contract ({', '.join(sorted(SYSTEM_IDS))})")
    unknown = [p for p in purposes if p not in PURPOSES]
    if unknown:
        raise DataMapError(f"system {system_id}: unknown purpose {unknown[0]!r} (known: {', '.join(sorted(PURPOSES))})")


def parse_data_map(doc: dict[str, Any]) -> DataMap:
    if not isinstance(doc, dict):
        raise DataMapError("data map must be a mapping")
    try:
        systems = {}
        for system_id, entry in doc["systems"].items():
            _check_contract_ids(system_id, entry.get("purposes", ()))
            on_erase = entry.get("on_erase", ERASE)
            if on_erase not in (ERASE, RETAIN):
                raise DataMapError(f"system {system_id}: on_erase must be erase or retain")
            if on_erase == RETAIN and not entry.get("retained_basis"):
                raise DataMapError(f"system {system_id}: retain needs a retained_basis")
            systems[system_id] = SystemEntry(
                id=system_id,
                holds=tuple(entry.get("holds", ())),
                purposes=tuple(entry.get("purposes", ())),
                on_erase=on_erase,
                location=entry["location"],
                transfer_mechanism=entry["transfer_mechanism"],
                fields=tuple(entry.get("fields", ())),
                retained_basis=entry.get("retained_basis"),
                retained_basis_sv=entry.get("retained_basis_sv"),
                retention=entry.get("retention"),
                internal=bool(entry.get("internal", False)),
                revoke_before_erase=bool(entry.get("revoke_before_erase", False)),
                location_sv=entry.get("location_sv"),
                transfer_mechanism_sv=entry.get("transfer_mechanism_sv"),
                retention_sv=entry.get("retention_sv"),
            )
        purposes = {
            pid: PurposeEntry(pid, p["legal_basis"], p.get("description", ""), p.get("legal_basis_sv"),
                              p.get("description_sv"))
            for pid, p in (doc.get("purposes") or {}).items()
        }
        return DataMap(
            controller=dict(doc["controller"]),
            systems=systems,
            purposes=purposes,
            inactive_subject_retention_days=_inactive_subject_retention_days(doc),
        )
    except KeyError as exc:
        raise DataMapError(f"data map is missing {exc}") from exc


def load_data_map(path: Path) -> DataMap:
    with Path(path).open(encoding="utf-8") as handle:
        return parse_data_map(yaml.safe_load(handle))
