"""Signed links: bound to their use, unforgeable, and still valid across a master key rotation."""

from __future__ import annotations

import os

import pytest

from privacy_runtime.tokens import EXPORT, UNSUBSCRIBE, InvalidToken, TokenSigner


def test_a_link_signed_before_a_rotation_works_while_the_previous_key_is_configured() -> None:
    old_key, new_key = os.urandom(32), os.urandom(32)
    token = TokenSigner(old_key, UNSUBSCRIBE).sign({"s": "u-1", "p": "marketing_email"})
    rotated = TokenSigner(new_key, UNSUBSCRIBE, previous_master_key=old_key)
    assert rotated.verify(token) == {"s": "u-1", "p": "marketing_email"}
    assert TokenSigner(new_key, UNSUBSCRIBE).verify(rotated.sign({"s": "u-2"})) == {"s": "u-2"}, "signs with the new key"
    with pytest.raises(InvalidToken):
        TokenSigner(new_key, UNSUBSCRIBE).verify(token)  # once the previous key is gone, so is the old link


def test_a_token_is_bound_to_its_use_and_cannot_be_edited() -> None:
    key = os.urandom(32)
    token = TokenSigner(key, UNSUBSCRIBE).sign({"s": "u-1"})
    with pytest.raises(InvalidToken):
        TokenSigner(key, EXPORT).verify(token)
    # payload.timestamp.signature: change the first character of the payload and of the signature (a
    # first base64 character carries 6 bits of data; a last one may differ only in padding bits).
    payload, stamp, signature = token.split(".")
    for tampered in (f"{_other(payload)}.{stamp}.{signature}", f"{payload}.{stamp}.{_other(signature)}"):
        with pytest.raises(InvalidToken):
            TokenSigner(key, UNSUBSCRIBE).verify(tampered)
    with pytest.raises(InvalidToken):
        TokenSigner(os.urandom(32), UNSUBSCRIBE).verify(token)  # another deployment's key


def _other(part: str) -> str:
    return ("B" if part[0] == "A" else "A") + part[1:]
