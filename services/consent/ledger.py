"""Consent use cases: record registrations and changes, and spread what they mean downstream.

Each function runs inside the transaction the stream processor opened for a batch; it reads through
`store`, decides through `rules` and `transition` (pure), and writes state, commands and outbound events together.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime

from privacy_runtime import metrics
from privacy_runtime.commands import CommandSpec, CommandTracker
from privacy_runtime.datamap import DataMap
from privacy_runtime.processor import Inbound, claim
from privacy_runtime.unit_of_work import Runtime, UnitOfWork
from schemas.enums import ConsentChannel, ErasureGround, RequestedVia
from schemas.events import ErasureRequested
from schemas.topics import CONSENT_CHANGED, ERASURE_REQUESTED
from services.consent import rules, store, transition
from services.consent.transition import Entry

#: Stable namespace so the erasure opened for a child has the same request_id on every replay.
CHILD_ERASURE_NAMESPACE = uuid.UUID("8f7e5a8c-2f0d-4d0b-9a55-6f1c1b1e0c01")


def systems_by_purpose(data_map: DataMap) -> dict[str, list[str]]:
    mapping: dict[str, list[str]] = defaultdict(list)
    for system in data_map.systems.values():
        if system.internal:
            continue
        for purpose in system.purposes:
            mapping[purpose].append(system.id)
    return dict(mapping)


class Ledger:
    def __init__(self, runtime: Runtime, tracker: CommandTracker):
        self.runtime = runtime
        self.tracker = tracker
        self.routing = systems_by_purpose(runtime.data_map)

    async def _not_erased(self, tx: UnitOfWork, batch: list[Inbound]) -> list[Inbound]:
        """Drop events about subjects already erased here: a late event must not bring them back."""
        erased = await tx.keys.erased_among(item.event.subject for item in batch)
        if not erased:
            return batch
        await self._ignore_erased(tx, [item for item in batch if item.event.subject in erased], erased)
        return [item for item in batch if item.event.subject not in erased]

    async def _ignore_erased(
        self, tx: UnitOfWork, ignored: list[Inbound], erased: dict[str, str], *, claim_topic: str | None = None
    ) -> int:
        """Keep what is left of events about erased subjects (`erased`: subject -> tombstone digest);
        returns how many were new.

        A late withdrawal is still kept, as a keyed-hash opt-out proof like those erasure leaves.
        A stream that deduplicates through the ledger (`claim_topic`) has no claim on an ignored event
        yet, and it appends nothing to the ledger: it is claimed here, so a re-delivery is not audited twice."""
        if claim_topic is not None:
            ids = await claim(tx.conn, claim_topic, (item.event.id for item in ignored))
            ignored = [item for item in ignored if item.event.id in ids]
        proofs: list[store.OptOutProof] = []
        for item in ignored:
            digest = erased[item.event.subject]
            data = item.data
            if getattr(data, "granted", True) is False:
                for purpose, granted in rules.expand_change(data.purpose, False, data.channel):
                    if not granted:
                        proofs.append(store.OptOutProof(digest, purpose, data.channel, data.policy_version,
                                                        item.event.time))
            await tx.audit.record("event_ignored_subject_erased", subject=item.event.subject, ref=item.event.id,
                detail={"topic": item.raw.topic},
            )
        await store.add_opt_out_proofs(tx.conn, proofs)
        return len(ignored)

    async def record_registrations(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        conn = tx.conn
        batch = await self._not_erased(tx, batch)
        today = datetime.now(UTC).date()
        registrations: list[store.RegistrationRow] = []
        entries: list[Entry] = []
        children: list[Inbound] = []
        for item in batch:
            data = item.data
            subject = item.event.subject
            minor = rules.is_minor(data.birth_date, item.event.time.date() if item.event.time else today)
            registrations.append(store.RegistrationRow(
                event_id=item.event.id, subject=subject, country=data.country, minor=minor, source=data.source,
                parent_account=data.parent_account, registered_at=item.event.time, ordered_at=item.ordered_at,
            ))
            for consent in data.consents or []:
                entries.append(Entry(subject, rules.ConsentRecord(
                    event_id=f"{item.event.id}:{consent.purpose}", purpose=consent.purpose,
                    granted=consent.granted, effective_at=item.event.time, channel=ConsentChannel.REGISTRATION,
                    policy_version=None, ordered_at=item.ordered_at,
                )))
            if minor:
                children.append(item)
        moved = await store.upsert_registrations(conn, registrations)
        await store.append_registrations(conn, registrations)
        await self._apply(tx, entries)
        for subject, country_before in sorted(moved.items()):  # a newer registration from another country
            await self._tell_jurisdiction_change(tx, subject, country_before)
        for item in children:
            await self._request_child_erasure(tx, item)

    async def record_changes(self, tx: UnitOfWork, batch: list[Inbound]) -> int:
        """The busiest stream deduplicates through the ledger: an entry id is the event id and purpose,
        so a re-delivered event appends nothing and changes nothing (no processed_events claim per
        event). The erased check rides on the append (`store.append_ledger`). Returns how many events
        were new."""
        digest_of = {subject: tx.keys.subject_digest(subject) for subject in {item.event.subject for item in batch}}
        entries: list[Entry] = []
        for item in batch:
            data = item.data
            for purpose, granted in rules.expand_change(data.purpose, data.granted, data.channel):
                entries.append(Entry(item.event.subject, rules.ConsentRecord(
                    event_id=f"{item.event.id}:{purpose}", purpose=purpose, granted=granted,
                    effective_at=item.event.time, channel=data.channel, policy_version=data.policy_version,
                    ordered_at=item.ordered_at,
                )))
        done = await self._apply(tx, entries, digests=[digest_of[entry.subject] for entry in entries])
        ignored = 0
        if done.erased:
            erased = {subject: digest for subject, digest in digest_of.items() if digest in done.erased}
            ignored = await self._ignore_erased(
                tx, [item for item in batch if item.event.subject in erased], erased, claim_topic=CONSENT_CHANGED)
        return ignored + len({entry_id.rpartition(":")[0] for entry_id in done.entry_ids})

    async def _apply(
        self, tx: UnitOfWork, entries: list[Entry], digests: list[str | None] | None = None
    ) -> store.Appended:
        """Append to the ledger, move current state forward in ordering time, send what changed
        (decided by `transition`: this only loads, asks and stores).

        `digests`: per entry, its subject's tombstone digest, to skip the entries of erased subjects
        (`store.append_ledger`). Only entries new to the ledger count: `entry_ids` of the result."""
        conn = tx.conn
        if not entries:
            return store.Appended(set(), {}, set())
        done = await store.append_ledger(conn, entries, digests)  # creates profiles for subjects not seen yet
        entries = transition.new_entries(entries, done.entry_ids)
        for (purpose, granted), count in transition.counts(entries).items():
            metrics.CONSENT_CHANGES.labels(purpose=purpose, granted=str(granted).lower()).inc(count)
        step = transition.advance(entries, done.states)
        await store.save_states(conn, step.saved)
        profiles = await store.denying_profiles(conn, step.regranted) if step.regranted else {}
        if step.signed_up:
            profiles.update(await store.profiles(conn, step.signed_up))
        await self.tracker.issue_many(tx, [
            CommandSpec(c.subject, c.system, c.action, c.purpose) for c in step.commands(self.routing, profiles)
        ])
        return done

    async def record_objections(self, tx: UnitOfWork, batch: list[Inbound]) -> None:
        """An objection to marketing or profiling (Art. 21(2)-(3)) is absolute: withdraw at once."""
        conn = tx.conn
        batch = await self._not_erased(tx, batch)
        entries: list[Entry] = []
        for item in batch:
            data = item.data
            processing = data.details.processing if data.details else None
            purposes = rules.objection_withdraws(data.right, processing)
            if not purposes or processing is None:
                continue  # legitimate-interest objections go to manual review in dsar
            subject = item.event.subject
            await store.ensure_subjects(conn, [subject])
            await store.add_objection(conn, subject, processing)
            for purpose in purposes:
                entries.append(Entry(subject, rules.ConsentRecord(
                    event_id=f"{item.event.id}:{purpose}", purpose=purpose, granted=False,
                    effective_at=item.event.time, channel=ConsentChannel.API, policy_version=None,
                    ordered_at=item.ordered_at,
                )))
        await self._apply(tx, entries)

    async def uphold_objection(self, tx: UnitOfWork, subject: str, request_id: str) -> bool:
        """An operator upheld the subject's objection to legitimate-interest processing (Art. 21(1));
        dsar says so with `suppress` commands. Decisions deny what rests on legitimate interest from now
        on, and the purposes used here on legitimate interest (no opt-in needed, none given) are
        withdrawn, so their systems are told to stop. False for a subject unknown here."""
        conn = tx.conn
        profile = await store.profile(conn, subject)
        if profile is None:
            return False
        await store.add_objection(conn, subject, rules.UPHELD_LEGITIMATE_INTEREST_OBJECTION)
        current = {record.purpose: record for record in await store.states_of(conn, subject)}
        now = datetime.now(UTC)
        await self._apply(tx, [
            Entry(subject, rules.ConsentRecord(  # one entry per request and purpose: a repeat appends nothing
                event_id=f"{request_id}:objection:{purpose}", purpose=purpose, granted=False,
                effective_at=now, channel=ConsentChannel.API, policy_version=None, ordered_at=now,
            ))
            for purpose in rules.resting_on_legitimate_interest(profile.country, current)
        ])
        return True

    async def correct_country(self, tx: UnitOfWork, subject: str, country: str | None) -> bool:
        """A rectified country moves the subject's jurisdiction, and with it what is allowed without
        consent: systems are told what that changes. False for a subject unknown here."""
        conn = tx.conn
        before = await store.profile(conn, subject)
        if before is None:
            return False
        await store.rectify(conn, subject, country)
        await self._tell_jurisdiction_change(tx, subject, before.country)
        return True

    async def _tell_jurisdiction_change(
        self, tx: UnitOfWork, subject: str, country_before: str | None
    ) -> None:
        conn = tx.conn
        after = await store.profile(conn, subject)
        if after is None:
            return
        current = {record.purpose: record for record in await store.states_of(conn, subject)}
        await self.tracker.issue_many(tx, [
            CommandSpec(subject, command.system, command.action, command.purpose)
            for command in rules.jurisdiction_change(
                replace(after, country=country_before), after, current, self.routing)
        ])

    async def _request_child_erasure(self, tx: UnitOfWork, item: Inbound) -> None:
        request_id = uuid.uuid5(CHILD_ERASURE_NAMESPACE, f"{item.event.subject}:{item.event.id}")
        await tx.outbox.add(ERASURE_REQUESTED,
            ErasureRequested(request_id=request_id, ground=ErasureGround.CHILD_DATA, identity_verified=True,
                             requested_via=RequestedVia.INTERNAL),
            subject=item.event.subject, event_id=str(uuid.uuid5(CHILD_ERASURE_NAMESPACE, str(request_id))),
            seal=False,
        )
        await tx.audit.record("child_erasure_requested", subject=item.event.subject, ref=str(request_id),
            detail={"reason": "under 18 at registration"},
        )
