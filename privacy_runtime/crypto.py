"""PII encryption at rest: per-subject AES-256-GCM data keys wrapped by the master key.

Erasure ends with `shred_subject`, which deletes the subject's wrapped key: every ciphertext of
that subject, in any table or backup, becomes unreadable (crypto-shredding). Master key rotation
re-wraps data keys only; PII ciphertexts stay as they are.

The wrapped keys may live in a database of their own (`KEYSTORE_DATABASE_URL`, `use_keystore`): a
backup of the data then holds no key, and the key store's backups, kept short, bound how long an
erased subject can be restored (the shred horizon, docs/operations.md). Tombstones and the lookup key
stay with the data (they open nothing and are read together with it). With a key store apart, its
writes commit on their own: a key created for a transaction that rolls back stays (harmless: the
retry finds and uses it), and a shred stands even if the erasure's transaction rolls back (its retry
writes the tombstone; the data is unreadable meanwhile, which is what erasure asks).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class SubjectErased(Exception):
    """The subject's key was destroyed: nothing may be stored or read for them again."""


class DecryptionFailed(Exception):
    pass


def master_key_id(master_key: bytes) -> str:
    """A short, non-secret fingerprint that says which master key wrapped a data key."""
    return hashlib.sha256(b"privacy-master-key-id" + master_key).hexdigest()[:16]


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise DecryptionFailed("ciphertext does not match its key or context") from exc


_LOOKUP_AAD = b"wrap:lookup-key"


@functools.lru_cache(maxsize=16_384)
def _subject_digest(lookup_key: bytes, subject: str) -> str:
    # Remembered: every batch of every stream asks for the digests of its subjects (erased_among),
    # and active subjects come back again and again.
    return hmac.new(lookup_key, b"subject:" + subject.encode(), hashlib.sha256).hexdigest()


class KeyRing:
    """Unwraps and caches per-subject data keys for one service schema.

    Table `subject_keys` and `erased_subjects` come from the runtime migrations.
    """

    def __init__(
        self,
        master_key: bytes,
        previous_master_key: bytes | None = None,
        cache_size: int = 20000,
        cache_seconds: float = 60.0,
    ):
        self._master = master_key
        self._master_id = master_key_id(master_key)
        self._masters = {self._master_id: master_key}
        if previous_master_key is not None:
            self._masters[master_key_id(previous_master_key)] = previous_master_key
        self._lookup: bytes | None = None
        #: subject -> (data key, monotonic time it expires). Bounded in age because another process
        #: (a replica) may shred the key: after `cache_seconds` this one no longer decrypts either.
        self._cache: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        #: The key store's pool when it is another database; None: the keys are in the caller's database.
        self._keystore: asyncpg.Pool | None = None

    def use_keystore(self, pool: asyncpg.Pool) -> None:
        """Keep the wrapped subject keys in this pool's database (`subject_keys` in the same schema)."""
        self._keystore = pool

    @contextlib.asynccontextmanager
    async def _keys(self, conn: asyncpg.Connection, *, transaction: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """Where `subject_keys` is: the caller's connection (and transaction), or a key store connection
        (in a transaction of its own when `transaction`, for row locks)."""
        if self._keystore is None:
            yield conn
            return
        async with self._keystore.acquire() as keys:
            if transaction:
                async with keys.transaction():
                    yield keys
            else:
                yield keys

    @property
    def current_master_id(self) -> str:
        return self._master_id

    async def load_lookup_key(self, conn: asyncpg.Connection) -> None:
        """Load (on first start: create) the schema's lookup key. Call outside any transaction that may
        roll back, once at start-up, before `subject_digest` / `keyed_hash`."""
        wrapped = await conn.fetchrow("SELECT wrapped_key, master_key_id FROM lookup_key WHERE id = 1")
        if wrapped is None:
            await conn.execute(
                "INSERT INTO lookup_key (id, wrapped_key, master_key_id) VALUES (1, $1, $2) ON CONFLICT DO NOTHING",
                seal(self._master, os.urandom(32), _LOOKUP_AAD), self._master_id,
            )
            wrapped = await conn.fetchrow("SELECT wrapped_key, master_key_id FROM lookup_key WHERE id = 1")
        master = self._masters.get(wrapped["master_key_id"])
        if master is None:
            raise DecryptionFailed(f"lookup key wrapped by unknown master key {wrapped['master_key_id']}")
        self._lookup = open_sealed(master, wrapped["wrapped_key"], _LOOKUP_AAD)

    def _lookup_key(self) -> bytes:
        if self._lookup is None:
            raise RuntimeError("lookup key not loaded: call KeyRing.load_lookup_key at start-up")
        return self._lookup

    def subject_digest(self, subject: str) -> str:
        """Keyed hash of a subject id, for tombstones that must not name the person."""
        return _subject_digest(self._lookup_key(), subject)

    def keyed_hash(self, purpose: str, value: str) -> str:
        """Keyed hash for lookups that must survive erasure (e.g. a marketing suppression entry)."""
        normalised = value.strip().lower().encode()
        return hmac.new(self._lookup_key(), purpose.encode() + b":" + normalised, hashlib.sha256).hexdigest()

    def _wrap(self, subject: str, data_key: bytes) -> bytes:
        return seal(self._master, data_key, b"wrap:" + subject.encode())

    def _unwrap(self, subject: str, wrapped: bytes, master_id: str) -> bytes:
        master = self._masters.get(master_id)
        if master is None:
            raise DecryptionFailed(f"data key wrapped by unknown master key {master_id}")
        return open_sealed(master, wrapped, b"wrap:" + subject.encode())

    def _remember(self, subject: str, key: bytes) -> None:
        self._cache[subject] = (key, time.monotonic() + self._cache_seconds)
        self._cache.move_to_end(subject)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _cached(self, subject: str, *, stale_ok: bool = False) -> bytes | None:
        held = self._cache.get(subject)
        if held is None:
            return None
        if held[1] <= time.monotonic() and not stale_ok:
            del self._cache[subject]
            return None
        return held[0]

    def forget(self, subject: str) -> None:
        self._cache.pop(subject, None)

    # A key created inside a transaction is "pending" until that transaction commits: if it rolls
    # back, the wrapped key never reached the table, and caching it would let data be sealed with a
    # key nobody can unwrap after a restart. So keys created here go into the caller's `pending`
    # (the transaction's `TransactionKeys`), which caches them only once it committed; without one,
    # a created key is not cached at all (the next use reads it back).

    def remember_committed(self, pending: Mapping[str, bytes]) -> None:
        """Cache the keys a transaction created, now that it committed."""
        for subject, key in pending.items():
            self._remember(subject, key)

    async def data_key(self, conn: asyncpg.Connection, subject: str, *, create: bool = True,
                       pending: dict[str, bytes] | None = None) -> bytes | None:
        cached = self._cached(subject) or (pending or {}).get(subject)
        if cached is not None:
            return cached
        async with self._keys(conn) as keys:
            row = await keys.fetchrow(
                "SELECT wrapped_key, master_key_id FROM subject_keys WHERE subject = $1", subject
            )
        if row is not None:
            key = self._unwrap(subject, row["wrapped_key"], row["master_key_id"])
            self._remember(subject, key)
            return key
        if not create:
            return None
        if await self.is_erased(conn, subject):
            raise SubjectErased(subject)
        key = AESGCM.generate_key(bit_length=256)
        async with self._keys(conn) as keys:
            inserted = await keys.fetchval(
                "INSERT INTO subject_keys (subject, wrapped_key, master_key_id) VALUES ($1, $2, $3) "
                "ON CONFLICT (subject) DO NOTHING RETURNING subject",
                subject,
                self._wrap(subject, key),
                self._master_id,
            )
        if inserted is None:  # a concurrent writer created it first
            return await self.data_key(conn, subject, create=False, pending=pending)
        if pending is not None:
            pending[subject] = key
        return key

    async def ensure_keys(self, conn: asyncpg.Connection, subjects: set[str], pending: dict[str, bytes]) -> set[str]:
        """Load or create the data keys of many subjects in two round trips (hot ingest path); the
        created ones go into `pending` (for `encrypt_cached` until the commit).

        Returns the subjects that were erased and so have no key.
        """
        missing = [s for s in subjects if self._cached(s) is None and s not in pending]
        if not missing:
            return set()
        async with self._keys(conn) as keys:
            rows = await keys.fetch(
                "SELECT subject, wrapped_key, master_key_id FROM subject_keys WHERE subject = ANY($1::text[])",
                missing,
            )
        for row in rows:
            self._remember(row["subject"], self._unwrap(row["subject"], row["wrapped_key"], row["master_key_id"]))
        absent = [s for s in missing if self._cached(s) is None and s not in pending]
        if not absent:
            return set()
        digests = {self.subject_digest(s): s for s in absent}
        erased_rows = await conn.fetch(
            "SELECT subject_digest FROM erased_subjects WHERE subject_digest = ANY($1::text[])", list(digests)
        )
        erased = {digests[r["subject_digest"]] for r in erased_rows}
        new_keys = {s: AESGCM.generate_key(bit_length=256) for s in absent if s not in erased}
        if new_keys:
            async with self._keys(conn) as keys:
                await keys.executemany(
                    "INSERT INTO subject_keys (subject, wrapped_key, master_key_id) VALUES ($1, $2, $3) "
                    "ON CONFLICT (subject) DO NOTHING",
                    [(s, self._wrap(s, k), self._master_id) for s, k in new_keys.items()],
                )
                # Another writer may have won a race: read back what is stored.
                stored = await keys.fetch(
                    "SELECT subject, wrapped_key, master_key_id FROM subject_keys WHERE subject = ANY($1::text[])",
                    list(new_keys),
                )
            for row in stored:
                pending[row["subject"]] = self._unwrap(row["subject"], row["wrapped_key"], row["master_key_id"])
        return erased

    def encrypt_cached(self, subject: str, field: str, value: str | None,
                       pending: Mapping[str, bytes] | None = None) -> bytes | None:
        """Encrypt with a key already loaded by `ensure_keys` (no I/O)."""
        if value is None:
            return None
        # A key that aged out since `ensure_keys` still seals: at worst the data is sealed with a key
        # shredded meanwhile, which no one can open, the same as erased.
        key = self._cached(subject, stale_ok=True) or (pending or {}).get(subject)
        if key is None:
            raise KeyError(f"no data key loaded for subject {subject}; call ensure_keys first")
        return seal(key, value.encode(), f"{subject}:{field}".encode())

    async def erased_among(self, conn: asyncpg.Connection, subjects: Iterable[str]) -> dict[str, str]:
        """The erased ones of `subjects`, each with its tombstone digest (one round trip)."""
        digests = {self.subject_digest(s): s for s in set(subjects)}
        if not digests:
            return {}
        rows = await conn.fetch(
            "SELECT subject_digest FROM erased_subjects WHERE subject_digest = ANY($1::text[])", list(digests)
        )
        return {digests[r["subject_digest"]]: r["subject_digest"] for r in rows}

    async def is_erased(self, conn: asyncpg.Connection, subject: str) -> bool:
        found = await conn.fetchval(
            "SELECT 1 FROM erased_subjects WHERE subject_digest = $1", self.subject_digest(subject)
        )
        return found is not None

    async def encrypt(self, conn: asyncpg.Connection, subject: str, field: str, value: str | None,
                      pending: dict[str, bytes] | None = None) -> bytes | None:
        if value is None:
            return None
        key = await self.data_key(conn, subject, pending=pending)
        assert key is not None
        return seal(key, value.encode(), f"{subject}:{field}".encode())

    async def decrypt(self, conn: asyncpg.Connection, subject: str, field: str, sealed: bytes | None,
                      pending: dict[str, bytes] | None = None) -> str | None:
        """Plaintext, or None when there is no value or the subject's key was shredded."""
        if sealed is None:
            return None
        key = await self.data_key(conn, subject, create=False, pending=pending)
        if key is None:
            return None
        return open_sealed(key, sealed, f"{subject}:{field}".encode()).decode()

    async def subjects_with_keys(self, conn: asyncpg.Connection, after: str, limit: int) -> list[str]:
        """The subjects holding a data key here, in id order after `after` (a page of at most `limit`)."""
        async with self._keys(conn) as keys:
            rows = await keys.fetch(
                "SELECT subject FROM subject_keys WHERE subject > $1 ORDER BY subject LIMIT $2", after, limit
            )
        return [str(r["subject"]) for r in rows]

    async def shred_subject(self, conn: asyncpg.Connection, subject: str) -> bool:
        """Destroy the subject's data key and leave a tombstone. True when a key existed."""
        self.forget(subject)
        async with self._keys(conn) as keys:
            deleted = await keys.fetchval("DELETE FROM subject_keys WHERE subject = $1 RETURNING subject", subject)
        await conn.execute(
            "INSERT INTO erased_subjects (subject_digest) VALUES ($1) ON CONFLICT DO NOTHING",
            self.subject_digest(subject),
        )
        return deleted is not None

    async def keys_under_other_masters(self, conn: asyncpg.Connection) -> int:
        """Data keys (and the lookup key) still wrapped by another master key than the current one,
        counting rows other transactions hold (`rewrap_all` skips those)."""
        async with self._keys(conn) as keys:
            data_keys = int(await keys.fetchval(
                "SELECT count(*) FROM subject_keys WHERE master_key_id <> $1", self._master_id))
        lookup = int(await conn.fetchval("SELECT count(*) FROM lookup_key WHERE master_key_id <> $1", self._master_id))
        return data_keys + lookup

    async def rewrap_all(self, conn: asyncpg.Connection, batch: int = 1000) -> int:
        """Re-wrap every data key (and the lookup key) under the current master key; safe to run while
        serving. Returns the number of data keys re-wrapped."""
        lookup = await conn.fetchrow(
            "SELECT wrapped_key, master_key_id FROM lookup_key WHERE id = 1 AND master_key_id <> $1 FOR UPDATE",
            self._master_id,
        )
        if lookup is not None:
            master = self._masters.get(lookup["master_key_id"])
            if master is None:
                raise DecryptionFailed(f"lookup key wrapped by unknown master key {lookup['master_key_id']}")
            key = open_sealed(master, lookup["wrapped_key"], _LOOKUP_AAD)
            await conn.execute(
                "UPDATE lookup_key SET wrapped_key = $1, master_key_id = $2 WHERE id = 1",
                seal(self._master, key, _LOOKUP_AAD), self._master_id,
            )
        total = 0
        async with self._keys(conn, transaction=True) as keys:
            while True:
                rows = await keys.fetch(
                    "SELECT subject, wrapped_key, master_key_id FROM subject_keys "
                    "WHERE master_key_id <> $1 LIMIT $2 FOR UPDATE SKIP LOCKED",
                    self._master_id,
                    batch,
                )
                if not rows:
                    return total
                for row in rows:
                    key = self._unwrap(row["subject"], row["wrapped_key"], row["master_key_id"])
                    await keys.execute(
                        "UPDATE subject_keys SET wrapped_key = $2, master_key_id = $3 WHERE subject = $1",
                        row["subject"],
                        self._wrap(row["subject"], key),
                        self._master_id,
                    )
                total += len(rows)
