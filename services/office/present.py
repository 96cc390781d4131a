"""What the pages show, computed from the services' answers: pure functions (unit-tested), no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from privacy_runtime import vocabulary
from services.office.texts import CATALOGUE, word

#: Grounds an operator picks a refusal from (the policy: a refusal names its legal reason); the free
#: text after it explains this case. The subject's email names the reason and IMY. This English text is
#: what is sent; the form shows each ground in the operator's language (`rejection.<key>` in `texts`).
REJECTION_GROUNDS: tuple[tuple[str, str], ...] = (
    ("legitimate_grounds", "Compelling legitimate grounds for the processing override the objection "
                           "(GDPR Art. 21(1))"),
    ("legal_claims", "The data is needed to establish, exercise or defend legal claims (GDPR Art. 17(3)(e), 21(1))"),
    ("legal_obligation", "The law requires us to keep the data: Bokföringslagen 7:2 (GDPR Art. 17(3)(b))"),
    ("unfounded", "The request is manifestly unfounded or excessive (GDPR Art. 12(5))"),
    ("identity", "We could not confirm the identity of the person asking (GDPR Art. 12(6))"),
    ("others_rights", "Answering would adversely affect the rights and freedoms of others (GDPR Art. 15(4))"),
    ("still_needed", "The data is still needed for the purpose it was collected for (GDPR Art. 17(1)(a))"),
)
STATUSES: tuple[str, ...] = ("received", "identity_pending", "in_progress", "awaiting_systems", "completed",
                             "rejected", "cancelled", "closed_unverified")
OPEN_STATUSES: tuple[str, ...] = ("received", "identity_pending", "in_progress", "awaiting_systems")
RIGHTS: tuple[str, ...] = ("access", "portability", "rectification", "restriction", "objection", "erasure")
REJECTION_KEYS: tuple[str, ...] = tuple(key for key, _ in REJECTION_GROUNDS)
PAGE_SIZE = 50

#: Detail keys worth a column in the timeline (others hold ids or are repeated elsewhere).
DETAIL_KEYS = ("reason", "template", "system", "action", "status", "months", "due_at", "from", "to", "method",
               "commands", "attempts", "systems")


def rejection_reason(ground: str, text: str) -> str | None:
    """The reason sent to the subject: the chosen ground, then the operator's words (either may be alone)."""
    grounds = dict(REJECTION_GROUNDS)
    chosen = grounds.get(ground, "")
    text = text.strip()
    if ground and not chosen:
        return None
    if chosen and text:
        return f"{chosen}. {text}"
    return chosen or text or None


@dataclass(frozen=True)
class Entry:
    at: datetime
    what: str
    actor: str
    detail: str
    by_operator: bool


def who(actor: str, lang: str = "en") -> str:
    """An audit entry's actor as a person reads it: the operator's name, or the service in words."""
    if actor.startswith("operator:"):
        return actor.removeprefix("operator:")
    if actor.startswith("service:"):
        return CATALOGUE.text(lang, "actor.service", name=actor.removeprefix("service:"))
    return actor


#: Detail values that are ids with words: the kind of word (`vocabulary` kinds, or the office's own).
DETAIL_WORDS: Mapping[str, tuple[str, str]] = {
    "system": ("vocabulary", "system"), "systems": ("vocabulary", "system"), "template": ("vocabulary", "email"),
    "status": ("office", "status"), "from": ("office", "status"), "to": ("office", "status"),
    "action": ("office", "command"),
}


def _value(key: str, value: Any, lang: str, words: Mapping[str, tuple[str, str]] = DETAIL_WORDS) -> str:
    def one(item: Any) -> str:
        source, kind = words.get(key, ("", ""))
        if source == "vocabulary":
            return vocabulary.word(kind, item, lang)
        if source == "office":
            return word(lang, kind, item)
        return str(item)

    if isinstance(value, list):
        return ", ".join(one(v) for v in value)
    return one(value)


def timeline(events: Sequence[Mapping[str, Any]], lang: str = "en") -> list[Entry]:
    """The case's audit entries as lines a person reads, in `lang`: when, what, who, and the detail that
    matters (ids in words)."""
    entries = []
    for event in events:
        detail = event.get("detail") or {}
        if detail.get("review_code"):  # a case handed to an operator: the reason in the operator's words
            detail = {**detail, "reason": review_text({"review_reason": detail.get("reason"), **detail}, lang)}
        shown = "; ".join(f"{word(lang, 'detail', k)}: {_value(k, detail[k], lang)}" for k in DETAIL_KEYS
                          if k in detail and detail[k] not in (None, "", []))
        entries.append(Entry(
            at=datetime.fromisoformat(event["at"]),
            what=word(lang, "action", event["action"]),
            actor=who(str(event.get("actor", "")), lang),
            detail=shown[:600],
            by_operator=str(event.get("actor", "")).startswith("operator"),
        ))
    return entries


#: Parameters of a review reason that are ids with words; `systems` and `fields` are lists (ids joined
#: with ", "); anything else (the `problem` of an unusable answer) is dsar's own text, shown as it is.
REVIEW_WORDS: Mapping[str, tuple[str, str]] = {**DETAIL_WORDS, "fields": ("vocabulary", "field")}
REVIEW_LISTS = frozenset({"systems", "fields"})


def _review_param(key: str, value: Any, lang: str) -> str:
    if key in REVIEW_LISTS:
        ids = [part for part in str(value or "").split(", ") if part]
        return _value(key, ids, lang, REVIEW_WORDS) if ids else CATALOGUE.text(lang, "none")
    return _value(key, value, lang, REVIEW_WORDS)


def review_text(case: Mapping[str, Any], lang: str = "en") -> str | None:
    """Why the case waits for an operator, in `lang`: the office's words for dsar's `review_code` with
    its parameters' ids in words; dsar's English sentence (`review_reason`) for a code the office has no
    words for, a parameter missing, or a case flagged before reasons had codes."""
    reason = case.get("review_reason")
    code = case.get("review_code")
    key = f"review.{code}"
    if not code or not CATALOGUE.has(key):
        return reason
    params = case.get("review_params") or {}
    # `_` has the text formatted even without parameters, so a missing one falls back, never shows "{fields}".
    try:
        return CATALOGUE.text(lang, key, _=None, **{k: _review_param(k, v, lang) for k, v in params.items()})
    except (KeyError, IndexError, ValueError, TypeError):  # a parameter the words need is missing or odd
        return reason


def case_actions(case: Mapping[str, Any], now: datetime) -> set[str]:
    """Which action forms the case page offers (the service decides; this hides what cannot apply)."""
    status = case["status"]
    actions: set[str] = set()
    issued = any(step.get("command_id") for step in case.get("steps", ()))
    if status == "identity_pending" or case.get("manual_review"):
        actions.add("approve")
    if status in ("received", "identity_pending", "in_progress") and not issued:
        actions.add("reject")
    if status in OPEN_STATUSES and not case.get("extended") and now < datetime.fromisoformat(case["original_due_at"]):
        actions.add("extend")
    if case["right"] == "restriction" and status == "completed":
        actions.add("lift")
    if any(step.get("command_id") and step.get("outcome") is None for step in case.get("steps", ())):
        actions.add("resend")
    return actions


def waiting_systems(case: Mapping[str, Any]) -> list[str]:
    """Systems with a command of this case not yet answered (re-send targets)."""
    return sorted({s["system"] for s in case.get("steps", ()) if s.get("command_id") and s.get("outcome") is None})


@dataclass(frozen=True)
class Filters:
    status: str = ""
    right: str = ""
    overdue: str = ""
    review: str = ""
    q: str = ""
    page: int = 1

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        status = query.get("status", "")
        right = query.get("right", "")
        try:
            page = max(1, min(int(query.get("page", "1") or 1), 100_000))
        except ValueError:
            page = 1
        return cls(
            status=status if status in STATUSES else "",
            right=right if right in RIGHTS else "",
            overdue="true" if query.get("overdue") in ("true", "1", "on") else "",
            review="true" if query.get("review") in ("true", "1", "on") else "",
            q=(query.get("q") or "").strip()[:128],
            page=page,
        )

    def service_query(self) -> dict[str, Any]:
        return {"status": self.status, "right": self.right, "overdue": self.overdue, "review": self.review,
                "q": self.q, "limit": PAGE_SIZE, "offset": (self.page - 1) * PAGE_SIZE, "total": "1"}

    def link(self, **changes: Any) -> str:
        values = {"status": self.status, "right": self.right, "overdue": self.overdue, "review": self.review,
                  "q": self.q, "page": self.page, **changes}
        query = {k: v for k, v in values.items() if v not in ("", None) and not (k == "page" and v == 1)}
        return "/cases" + (f"?{urlencode(query)}" if query else "")


def pages(total: int, page: int, size: int = PAGE_SIZE) -> tuple[int, bool, bool]:
    """(last page, has previous, has next)."""
    last = max(1, -(-total // size))
    return last, page > 1, page < last


def merge_debt(answers: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, dict[str, Any]]:
    """Per system, the commands both issuing services (consent, dsar) wait for: summed, oldest kept."""
    merged: dict[str, dict[str, Any]] = {}
    for answer in answers:
        for row in answer.get("systems", ()):
            item = merged.setdefault(row["system"], {"outstanding": 0, "overdue": 0, "oldest": None,
                                                     "services": []})
            item["outstanding"] += int(row["outstanding"])
            item["overdue"] += int(row["overdue"])
            oldest = datetime.fromisoformat(row["oldest"])
            if item["oldest"] is None or oldest < item["oldest"]:
                item["oldest"] = oldest
            item["services"].append(answer.get("service", "?"))
    for item in merged.values():
        item["oldest_age"] = age(item["oldest"], now) if item["oldest"] else ""
    return merged


def age(then: datetime, now: datetime) -> str:
    seconds = max(0, int((now - then.astimezone(UTC)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def short_date(value: str | None) -> str:
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def week_label(week: str, lang: str = "en") -> str:
    """`2026-11-30` (a Monday) -> `W49` (`v. 49` in Swedish)."""
    return CATALOGUE.text(lang, "week.short", week=f"{datetime.fromisoformat(week).isocalendar().week:02d}")
