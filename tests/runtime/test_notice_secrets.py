"""Codes and download links inside notification-requested travel sealed, readable by the notifier only."""

from __future__ import annotations

import json
import os

import pytest

from privacy_runtime.crypto import DecryptionFailed
from privacy_runtime.notice_secrets import SEALED_PARAM, NoticeSecrets

OLD, NEW = os.urandom(32), os.urandom(32)
PARAMS = {"request_id": "R-1", "code": "482913", "expires_minutes": 1440}


def test_secrets_are_sealed_and_open_again_with_the_same_master_key() -> None:
    sealed = NoticeSecrets(NEW).seal("dsar:R-1:code:1", PARAMS)
    assert set(sealed) == {"request_id", "expires_minutes", SEALED_PARAM}
    assert "482913" not in json.dumps(sealed)
    assert NoticeSecrets(NEW).open("dsar:R-1:code:1", sealed) == PARAMS


def test_a_sealed_secret_is_bound_to_its_notification_and_its_master_key() -> None:
    sealed = NoticeSecrets(NEW).seal("dsar:R-1:code:1", PARAMS)
    with pytest.raises(DecryptionFailed):
        NoticeSecrets(NEW).open("dsar:R-2:code:1", sealed)  # moved to another notification
    with pytest.raises(DecryptionFailed):
        NoticeSecrets(OLD).open("dsar:R-1:code:1", sealed)
    with pytest.raises(DecryptionFailed):
        NoticeSecrets(NEW).open("dsar:R-1:code:1", {**sealed, SEALED_PARAM: "not base64!"})


def test_during_a_rotation_secrets_sealed_with_the_previous_key_still_open() -> None:
    sealed = NoticeSecrets(OLD).seal("n1", PARAMS)
    assert NoticeSecrets(NEW, OLD).open("n1", sealed) == PARAMS


def test_params_without_secrets_and_plain_params_from_other_producers_pass_unchanged() -> None:
    plain = {"request_id": "R-1", "right": "access"}
    assert NoticeSecrets(NEW).seal("n1", plain) == plain
    assert NoticeSecrets(NEW).open("n1", PARAMS) == PARAMS
