"""A master key rotation moves everything wrapped by the old key, not only the keyring's subject keys,
and what emails already carry (verification codes) keeps working while the previous key is set."""

from __future__ import annotations

import os
import uuid

import pytest

from devstack.stack import Stack
from privacy_runtime.crypto import master_key_id
from services.dsar.verification import CodeHasher
from services.notifier import store
from services.notifier.final_notices import Contact, FinalNoticeKeys, FinalNoticeRotation
from tests.notifier.support import Runtime, scratch_runtime

OLD, NEW = os.urandom(32), os.urandom(32)


def test_a_code_sent_before_the_rotation_still_verifies_while_the_previous_key_is_set() -> None:
    request_id = str(uuid.uuid4())
    stored = CodeHasher(OLD).hash(request_id, "482913")
    assert CodeHasher(NEW, OLD).matches(request_id, "482913", stored)
    assert not CodeHasher(NEW, OLD).matches(request_id, "000000", stored)
    assert not CodeHasher(NEW).matches(request_id, "482913", stored), "without the previous key it cannot"
    assert CodeHasher(NEW, OLD).hash(request_id, "1") == CodeHasher(NEW).hash(request_id, "1"), \
        "new codes are hashed with the current key"


def test_a_final_notice_key_rewrapped_opens_with_the_new_master_key_alone() -> None:
    sealed = FinalNoticeKeys(OLD).seal_contact("u1", Contact("u1@example.org", "Anna", "sv"))
    rotated = FinalNoticeKeys(NEW, OLD)
    wrapped = rotated.rewrap("u1", sealed.wrapped_key, sealed.master_key_id)
    key = FinalNoticeKeys(NEW).unwrap("u1", wrapped, master_key_id(NEW))
    assert FinalNoticeKeys.open_contact("u1", key, sealed.contact_sealed).email == "u1@example.org"


@pytest.mark.stack
async def test_final_notices_are_rewrapped_in_the_database(stack: Stack) -> None:
    async with scratch_runtime(stack.env()["DATABASE_URL"]) as runtime:
        old = FinalNoticeKeys(OLD)
        async with runtime.transaction() as tx:
            for subject in ("u1", "u2"):
                sealed = old.seal_contact(subject, Contact(f"{subject}@example.org", None, "en"))
                await store.save_final_notice(tx.conn, subject=subject, request_id=uuid.uuid4(),
                                              wrapped_key=sealed.wrapped_key, master_key_id=sealed.master_key_id,
                                              contact_sealed=sealed.contact_sealed, keep_seconds=3600)
            # One damaged row (not openable with the previous key) does not hold the others up.
            sealed = old.seal_contact("u3", Contact("u3@example.org", None, "en"))
            await store.save_final_notice(tx.conn, subject="u3", request_id=uuid.uuid4(),
                                          wrapped_key=b"\x00" * 60, master_key_id=sealed.master_key_id,
                                          contact_sealed=sealed.contact_sealed, keep_seconds=3600)
        rotation = FinalNoticeRotation(FinalNoticeKeys(NEW, OLD))
        async with runtime.pool.acquire() as conn:
            assert await rotation.left(conn) == 3
        async with runtime.transaction() as tx:
            assert await rotation.rewrap(tx.conn) == 2
        async with runtime.pool.acquire() as conn:
            assert await rotation.left(conn) == 0, "the damaged one is marked and not waited for"
            rows = await store.final_notices(conn, ["u1", "u2"])
            damaged = await store.final_notices(conn, ["u3"])
        assert damaged["u3"]["master_key_id"] == "unopenable"
        # A key this process does not have at all (an older rotation's) is not waited for.
        assert await _left_without_the_previous_key(runtime) == 0
        fresh = FinalNoticeKeys(NEW)  # the previous key can go now
        for subject, row in rows.items():
            key = fresh.unwrap(subject, row["wrapped_key"], row["master_key_id"])
            assert fresh.open_contact(subject, key, row["contact_sealed"]).email == f"{subject}@example.org"


async def _left_without_the_previous_key(runtime: Runtime) -> int:
    async with runtime.pool.acquire() as conn:
        return await FinalNoticeRotation(FinalNoticeKeys(NEW)).left(conn)
