"""The data map: which systems hold what, for which purposes, where, and what erasure means there.

It is a data file (YAML) operators change without code; routing of commands follows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ERASE = "erase"
RETAIN = "retain"


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
    retention: str | None = None
    internal: bool = False
    revoke_before_erase: bool = False


@dataclass(frozen=True)
class PurposeEntry:
    id: str
    legal_basis: str
    description: str


@dataclass(frozen=True)
class DataMap:
    controller: dict[str, str]
    systems: dict[str, SystemEntry]
    purposes: dict[str, PurposeEntry] = field(default_factory=dict)

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


def parse_data_map(doc: dict[str, Any]) -> DataMap:
    try:
        systems = {}
        for system_id, entry in doc["systems"].items():
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
                retention=entry.get("retention"),
                internal=bool(entry.get("internal", False)),
                revoke_before_erase=bool(entry.get("revoke_before_erase", False)),
            )
        purposes = {
            pid: PurposeEntry(pid, p["legal_basis"], p.get("description", ""))
            for pid, p in (doc.get("purposes") or {}).items()
        }
        return DataMap(controller=dict(doc["controller"]), systems=systems, purposes=purposes)
    except KeyError as exc:
        raise DataMapError(f"data map is missing {exc}") from exc


def load_data_map(path: Path) -> DataMap:
    with Path(path).open(encoding="utf-8") as handle:
        return parse_data_map(yaml.safe_load(handle))
