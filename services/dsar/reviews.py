"""Why a case waits for an operator: a stable code with its parameters, and the English sentence.

A case in review carries both: `review_code` and `review_params` let a reader (the office) say it in
the operator's own language, and `review_reason` keeps the English sentence other readers have always
had. Both come from one `Review`, so they never tell different stories.

Parameters are strings. A list (systems, fields) is its ids joined with ", " (ids never hold a comma),
empty when there is none; `problem` is free English text from the workflow."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: A retention erasure the services opened: the operator confirms the subject is really inactive.
RETENTION_EXPIRED = "retention_expired"
#: A rectification whose fields no system in the data map holds. Params: `fields`.
FIELDS_NOT_HELD = "fields_not_held"
#: An objection to legitimate-interest processing: the grounds are weighed by a person.
OBJECTION_TO_WEIGH = "objection_to_weigh"
#: The sealed correction values could no longer be read, so nothing was sent. Params: `systems`.
CORRECTION_UNREADABLE = "correction_values_unreadable"
#: Systems answered `failed` to lifting a completed restriction. Params: `systems`.
LIFT_FAILED = "lift_failed"
#: A system's answer arrived but cannot be used. Params: `system`, `action`, `problem`.
ANSWER_UNUSABLE = "answer_unusable"
#: A system answered `failed`. Params: `system`, `action`.
SYSTEM_FAILED = "system_failed"

#: The English sentence per code (what `review_reason` says; its wording is part of the API).
ENGLISH: Mapping[str, str] = {
    RETENTION_EXPIRED: (
        "retention expired: no registration, consent change or request seen for longer than the data map's "
        "retention, but logins and purchases are not seen; check the subject is really inactive, then "
        "approve to erase or reject to keep"),
    FIELDS_NOT_HELD: "no system in the data map holds the fields {fields}",
    OBJECTION_TO_WEIGH: (
        "objection to legitimate-interest processing: weigh the grounds (Art. 21(1)) and approve or reject"),
    CORRECTION_UNREADABLE: (
        "no correction values to send to {systems} (they can no longer be read); retry or handle by hand"),
    LIFT_FAILED: "{systems} could not lift the restriction; approve to retry or handle by hand",
    ANSWER_UNUSABLE: "{system}'s answer to {action} cannot be used: {problem}; approve to ask again or handle by hand",
    SYSTEM_FAILED: "{system} could not {action}; retry or handle by hand",
}
CODES: frozenset[str] = frozenset(ENGLISH)

#: How an empty list reads in the English sentence.
NONE = "(none)"


def joined(ids: Iterable[str]) -> str:
    """A list parameter: the ids in order, joined with ", "."""
    return ", ".join(ids)


@dataclass(frozen=True)
class Review:
    code: str
    params: Mapping[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """The code and parameters as a case, its audit entries and its JSON carry them."""
        return {"review_code": self.code, "review_params": dict(self.params)}

    @property
    def text(self) -> str:
        """The English sentence (an unknown code, e.g. from a newer version, reads as the code itself)."""
        template = ENGLISH.get(self.code)
        if template is None:
            return self.code
        return template.format(**{name: value or NONE for name, value in self.params.items()})


def retention_expired() -> Review:
    return Review(RETENTION_EXPIRED)


def fields_not_held(fields: Iterable[str]) -> Review:
    return Review(FIELDS_NOT_HELD, {"fields": joined(fields)})


def objection_to_weigh() -> Review:
    return Review(OBJECTION_TO_WEIGH)


def correction_unreadable(systems: Iterable[str]) -> Review:
    return Review(CORRECTION_UNREADABLE, {"systems": joined(sorted(set(systems)))})


def lift_failed(systems: Iterable[str]) -> Review:
    return Review(LIFT_FAILED, {"systems": joined(sorted(set(systems)))})


def system_failed(system: str, action: str, problem: str | None = None) -> Review:
    """A `failed` answer: with the `problem` that makes an answer unusable, or without one."""
    if problem:
        return Review(ANSWER_UNUSABLE, {"system": system, "action": action, "problem": problem})
    return Review(SYSTEM_FAILED, {"system": system, "action": action})
