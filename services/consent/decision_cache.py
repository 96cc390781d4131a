"""What the decision API reads, per subject, kept in memory and dropped when PostgreSQL says it changed.

The cache holds inputs, not answers: a subject's profile and current consents (`SubjectView`), from
which `rules.decide` answers any purpose. It is filled by reads that missed and emptied by the
notifications of migration 0007 (through `privacy_runtime.notifications.Listener`), which name every
subject whose row in `subjects` or `consent_state` a committed transaction changed.

Staleness bound (docs/operations.md, "Decision cache"):
- It is used only while its LISTEN connection is up; it starts empty each time LISTEN is in place, and
  is emptied and bypassed (every decision read from SQL) as soon as that connection is lost or a check
  of it goes unanswered (`DECISION_CACHE_CHECK_SECONDS`).
- A read that started before an invalidation of its subject is never stored (`begin_read` / `store`):
  its snapshot may predate the change that the notification announced.
- A withdrawal's command leaves only through the outbox relay, after the withdrawal's commit. The
  relay of this process asks the listener to sync before it publishes: the sync's own notification
  comes back only after every notification queued before it, so this process has dropped the
  withdrawn subject before the command can reach any system. Another consent process drops it when
  PostgreSQL delivers the same notification to it: on commit, normally well under a millisecond, while
  the command still has the relay's transaction and a Kafka hop ahead of it; at worst (a listener that
  stops answering) `DECISION_CACHE_CHECK_SECONDS` plus the check's timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from privacy_runtime import metrics
from services.consent.rules import ConsentRecord, SubjectProfile

#: A notification that names no subjects, or too many for one payload: drop everything.
EVERYTHING = "*"


@dataclass(frozen=True, slots=True)
class SubjectView:
    """A subject's profile (None: unknown here) and current consent per purpose."""

    profile: SubjectProfile | None
    states: Mapping[str, ConsentRecord]


class DecisionCache:
    def __init__(self, max_subjects: int, *, max_pending: int = 10_000):
        self.max_subjects = max_subjects
        self.max_pending = max_pending
        self._views: dict[str, SubjectView] = {}
        self._live = False
        #: Bumped by every invalidation; a read remembers the value it started at.
        self._seq = 0
        #: Reads that started before this are never stored (the cache was emptied since).
        self._floor = 0
        #: The last invalidation of each subject since the floor moved.
        self._invalidated: dict[str, int] = {}

    @property
    def live(self) -> bool:
        return self._live

    def __len__(self) -> int:
        return len(self._views)

    def get(self, subject: str) -> SubjectView | None:
        """The cached view, or None: read it from the database (`begin_read` first, `store` after)."""
        return self._views.get(subject) if self._live else None

    def begin_read(self) -> int:
        return self._seq

    def store(self, subject: str, view: SubjectView, started: int) -> bool:
        """Keep a view read from the database, unless the subject changed since the read began."""
        if not self._live or self.max_subjects <= 0 or started < self._floor:
            return False
        if self._invalidated.get(subject, -1) > started:
            return False
        if len(self._views) >= self.max_subjects and subject not in self._views:
            del self._views[next(iter(self._views))]  # the oldest entry: insertion order
        self._views[subject] = view
        return True

    def invalidate(self, subjects: list[str]) -> None:
        self._seq += 1
        for subject in subjects:
            self._views.pop(subject, None)
            self._invalidated[subject] = self._seq
        if len(self._invalidated) > self.max_pending:
            self.clear()  # bounded memory: forgetting everything is always safe

    def clear(self) -> None:
        self._views.clear()
        self._invalidated.clear()
        self._seq += 1
        self._floor = self._seq

    def start(self) -> None:
        """LISTEN is in place: from now on every change is notified, so the cache may be used."""
        self.clear()
        self._live = True
        metrics.DECISION_CACHE_LIVE.set(1)

    def stop(self) -> None:
        """LISTEN is lost: notifications may be missed, so nothing cached may be answered from."""
        self._live = False
        metrics.DECISION_CACHE_LIVE.set(0)
        self.clear()

    def notified(self, payload: str) -> None:
        """A payload of migration 0007: a JSON array of subjects, or `*` for everything."""
        try:
            subjects = orjson.loads(payload) if payload != EVERYTHING else None
        except orjson.JSONDecodeError:
            subjects = None
        if isinstance(subjects, list) and all(isinstance(s, str) for s in subjects):
            self.invalidate(subjects)
        else:
            self.clear()
