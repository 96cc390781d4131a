"""Export packages over HTTP: describe one for its page, hand it out for its button."""

from __future__ import annotations

from hashlib import sha256

from privacy_runtime.crypto import open_sealed
from services.dsar import store
from services.dsar.effects import CaseEffects, utcnow


class Downloads(CaseEffects):
    """The emailed link's two steps: a GET uses up nothing (link scanners), a POST counts one download."""

    async def describe_export(self, token: str) -> tuple[str, store.ExportInfo | None]:
        """What the download page shows (GET/HEAD): read only, so a link scanner uses up nothing.
        ('ok', info), or ('unknown' | 'expired' | 'used_up' | 'gone', None)."""
        token_hash = sha256(token.encode()).hexdigest()
        async with self.runtime.pool.acquire() as conn:
            info = await store.peek_export(conn, token_hash)
        if info is None:
            return "unknown", None
        if info.expires_at <= utcnow():
            return "expired", None
        if info.downloads_left <= 0:
            return "used_up", None
        if info.size == 0:
            return "gone", None
        return "ok", info

    async def download(self, token: str) -> tuple[str, store.ExportRow | None, bytes | None]:
        token_hash = sha256(token.encode()).hexdigest()
        async with self.runtime.transaction() as tx:
            outcome, row = await store.take_download(tx.conn, token_hash, utcnow())
            if row is None:
                return outcome, None, None
            data_key = await tx.keys.data_key(row.subject, create=False)
            if data_key is None:
                return "erased", None, None
            content = open_sealed(data_key, row.sealed, f"export:{token_hash}".encode())
            await tx.audit.record(
                "export_downloaded",
                subject=row.subject,
                ref=row.request_id,
                detail={"downloads_left": row.downloads_left},
            )
        return "ok", row, content
