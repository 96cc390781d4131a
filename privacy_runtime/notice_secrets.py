"""Secrets in a `notification-requested` (a one-time code, a download link) travel sealed.

Whoever can read that topic (an operator replaying dead letters, a too-wide ACL, a broker backup) would
otherwise hold live codes and download links for as long as the topic keeps its messages. The dsar
service seals them into one param, `sealed_secrets`, with a key derived from the master key and bound
to the notification id; the notifier, which holds the same master key, opens them before it renders.
A producer that sends them plain is still understood.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from privacy_runtime.crypto import DecryptionFailed, open_sealed, seal

SEALED_PARAM = "sealed_secrets"
#: Params that open something: never on the topic in the clear.
SECRET_PARAMS = frozenset({"code", "export_token", "download_url", "link"})


def _derive(master_key: bytes) -> bytes:
    return hmac.new(master_key, b"notification-secrets", hashlib.sha256).digest()


class NoticeSecrets:
    def __init__(self, master_key: bytes, previous_master_key: bytes | None = None):
        self._keys = [_derive(master_key)] + ([_derive(previous_master_key)] if previous_master_key else [])

    def seal(self, notification_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """`params` with its secrets replaced by one sealed param (unchanged when it has none)."""
        secrets = {name: value for name, value in params.items() if name in SECRET_PARAMS}
        if not secrets:
            return dict(params)
        plain = json.dumps(secrets, separators=(",", ":")).encode()
        sealed = base64.b64encode(seal(self._keys[0], plain, _aad(notification_id))).decode()
        return {**{k: v for k, v in params.items() if k not in SECRET_PARAMS}, SEALED_PARAM: sealed}

    def open(self, notification_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """`params` with its sealed secrets back in place. Raises DecryptionFailed when they do not
        open (another master key, or sealed for another notification)."""
        if SEALED_PARAM not in params:
            return dict(params)
        rest = {k: v for k, v in params.items() if k != SEALED_PARAM}
        try:
            blob = base64.b64decode(str(params[SEALED_PARAM]), validate=True)
        except ValueError as exc:
            raise DecryptionFailed(f"{SEALED_PARAM} is not base64") from exc
        for key in self._keys:  # the previous master key during a rotation
            try:
                secrets = json.loads(open_sealed(key, blob, _aad(notification_id)))
            except DecryptionFailed:
                continue
            if not isinstance(secrets, dict):
                raise DecryptionFailed(f"{SEALED_PARAM} does not hold params")
            return {**rest, **secrets}
        raise DecryptionFailed(f"{SEALED_PARAM} does not open with this master key for {notification_id}")


def _aad(notification_id: str) -> bytes:
    return b"notification-secrets:" + notification_id.encode()
