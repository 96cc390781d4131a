"""Cases changed over HTTP: identity verification by code, and operator actions.

Each request is one transaction that locks the case as the stream processor does (see `effects`), tried
again when it deadlocks with another request on the same case."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from privacy_runtime.commands import resend_now
from services.dsar import cases, store
from services.dsar.cases import Case, Decision
from services.dsar.effects import CaseEffects, UnknownCase, audit_case, utcnow
from services.dsar.verification import Verdict, judge

T = TypeVar("T")

#: Errors that make an HTTP-driven transaction worth one more try (two requests on one case).
RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


@dataclass(frozen=True)
class VerifyResult:
    status: int
    body: dict[str, Any]


class Operations(CaseEffects):
    """What the verification page and the operator API do to a case."""

    async def verify_code(self, request_id: str, code: str) -> VerifyResult:
        return await self._retrying(lambda: self._verify_code(request_id, code))

    async def _verify_code(self, request_id: str, code: str) -> VerifyResult:
        contact = self.settings.privacy_contact_email
        max_attempts = self.settings.verification_max_attempts
        async with self.runtime.transaction() as tx:
            # The subject's lock also makes the per-subject count of wrong codes below exact.
            case = await self._lock_case(tx.conn, request_id)
            if case is None:
                return VerifyResult(404, {"error": "unknown request"})
            if case.status == cases.CLOSED_UNVERIFIED:
                return VerifyResult(
                    410,
                    {
                        "error": "the request was closed because identity was not verified "
                        "in time; please make a new request"
                    },
                )
            if case.status != cases.IDENTITY_PENDING:
                return VerifyResult(409, {"error": f"the request is {case.status}; there is nothing to verify"})
            verification = await store.lock_verification(tx.conn, request_id)
            window = self.settings.verification_failure_window_seconds
            if await store.recent_failed_verifications(tx.conn, case.subject, window) >= \
                    self.settings.verification_max_failures_per_subject:
                return VerifyResult(429, {"error": "too many wrong codes for this person's requests recently; "
                                                   f"try again later or contact {contact}"})
            now = utcnow()
            matches = verification is not None and self.hasher.matches(request_id, code, verification.code_hash)
            verdict = judge(verification, matches, now)
            if verdict is Verdict.MISSING:
                return VerifyResult(409, {"error": "no verification code is outstanding for this request"})
            assert verification is not None
            if verdict is Verdict.LOCKED:
                return VerifyResult(429, {"error": f"too many wrong codes: verification is locked; contact {contact}"})
            if verdict is Verdict.EXPIRED:
                if verification.codes_issued < self.settings.verification_max_codes:
                    await self._send_code(tx, case)
                    return VerifyResult(410, {"error": "the code has expired; a new code has been sent by email"})
                return VerifyResult(
                    410, {"error": f"the code has expired and no more codes can be sent; contact {contact}"}
                )
            if verdict is Verdict.VERIFIED:
                await store.mark_verified(tx.conn, request_id)
                updated = await self.apply(tx, cases.verify(case, self.data_map, now))
                return VerifyResult(200, {"request_id": request_id, "status": updated.status, "verified": True})
            attempts = await store.count_failed_attempt(
                tx.conn, request_id, lock=verification.attempts + 1 >= max_attempts
            )
            await store.record_failed_verification(tx.conn, case.subject)
            await audit_case(tx, case, "verification_failed", {"attempts": attempts})
        if attempts >= max_attempts:
            return VerifyResult(429, {"error": f"too many wrong codes: verification is locked; contact {contact}"})
        left = max_attempts - attempts
        return VerifyResult(
            403,
            {"error": f"wrong code; {left} attempt{'s' if left != 1 else ''} left", "attempts_left": left},
        )

    async def operate(self, request_id: str, action: str, decide: Callable[[Case, datetime], Decision],
                      actor: str = "operator") -> Case:
        """Run one operator decision on a case; raises UnknownCase or CaseError. `actor` names the
        operator in the audit trail (`operator:<name>` when the office says who)."""
        return await self._operate(request_id, action, lambda case, now, _others: decide(case, now), actor=actor)

    async def lift_restriction(self, request_id: str, actor: str = "operator") -> Case:
        """Lift a completed restriction, knowing the subject's other cases (another may still hold)."""
        return await self._operate(request_id, "lift", lambda case, _now, others: cases.lift_restriction(
            case, self.data_map, others), with_others=True, actor=actor)

    async def resend(self, request_id: str, system: str, actor: str = "operator") -> tuple[Case, int]:
        """Re-send a case's unanswered commands to one system now (same command ids); audited."""
        async with self.runtime.transaction() as tx:
            case = await store.get_case(tx.conn, request_id)
            if case is None:
                raise UnknownCase(request_id)
            count = await resend_now(tx.conn, system, request_id)
            if count == 0:
                raise cases.CaseError(f"no command of this request waits for an answer from {system}")
            await audit_case(tx, case, "operator_resend", {"system": system, "commands": count}, actor=actor)
        return case, count

    async def _operate(self, request_id: str, action: str,
                       decide: Callable[[Case, datetime, list[Case]], Decision], *, with_others: bool = False,
                       actor: str = "operator") -> Case:
        async def attempt() -> Case:
            async with self.runtime.transaction() as tx:
                case = await self._lock_case(tx.conn, request_id)
                if case is None:
                    raise UnknownCase(request_id)
                # Under the subject's lock: no other case of the subject changes until this commits.
                others = await store.cases_of(tx.conn, case.subject) if with_others else []
                decision = decide(case, utcnow(), others)
                await audit_case(tx, case, f"operator_{action}", {"status": case.status}, actor=actor)
                return await self.apply(tx, decision)

        return await self._retrying(attempt)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        for tries in range(3):
            try:
                return await attempt()
            except RETRYABLE:
                if tries == 2:
                    raise
                await asyncio.sleep(0.05 * (tries + 1))
        raise AssertionError("unreachable")
