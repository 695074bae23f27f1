"""The stores' DPoP key slots (RFC 9449 key persistence): the private key lives apart from the token, in a 0600
file (``<key>.dpop``), its own keyring item, or a dict entry; deleting one never touches the other."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring

from tokensmith import DPoPKey, FileStore, KeyringStore, Token
from tokensmith.stores.base import KeyStore

KEY = "dpop-test-key"


@pytest.fixture
def plaintext_keyring(tmp_path: Path) -> Iterator[PlaintextKeyring]:
    saved = keyring.core._keyring_backend
    kr = PlaintextKeyring()
    kr.file_path = str(tmp_path / "keyring.cfg")
    keyring.set_keyring(kr)
    try:
        yield kr
    finally:
        keyring.core._keyring_backend = saved


def _jwk() -> str:
    """A private P-256 JWK, made without tokensmith."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    return str(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())))


def test_file_store_keeps_the_key_in_its_own_0600_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    jwk = _jwk()
    store.save(KEY, Token("at-1", token_type="DPoP", jkt=DPoPKey.from_jwk(jwk).thumbprint))
    store.save_key(KEY, jwk)
    key_file = tmp_path / f"{KEY}.dpop"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and json.loads(key_file.read_text()) == json.loads(jwk)
    assert json.loads(jwk)["d"].encode() not in (tmp_path / f"{KEY}.json").read_bytes()
    assert isinstance(store, KeyStore) and FileStore(tmp_path).load_key(KEY) == jwk
    assert store.delete(KEY) and store.load_key(KEY) == jwk  # the token goes, the key stays
    assert store.delete_key(KEY) and not key_file.exists() and store.load_key(KEY) is None
    assert not store.delete_key(KEY)


def test_file_store_tightens_a_loose_key_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.save_key(KEY, _jwk())
    os.chmod(tmp_path / f"{KEY}.dpop", 0o644)
    assert store.load_key(KEY) is not None
    assert stat.S_IMODE((tmp_path / f"{KEY}.dpop").stat().st_mode) == 0o600


def test_keyring_store_keeps_the_key_as_a_separate_item(plaintext_keyring: PlaintextKeyring, tmp_path: Path) -> None:
    fallback = FileStore(tmp_path / "fallback")
    store = KeyringStore("tokensmith-test", fallback=fallback)
    jwk = _jwk()
    store.save(KEY, Token("at-1", token_type="DPoP", jkt="t"))
    store.save_key(KEY, jwk)
    assert plaintext_keyring.get_password("tokensmith-test", f"{KEY}.dpop") == jwk
    token_item = plaintext_keyring.get_password("tokensmith-test", KEY)
    assert token_item is not None and json.loads(jwk)["d"] not in token_item
    assert fallback.load_key(KEY) is None and store.load_key(KEY) == jwk
    assert store.delete_key(KEY) and store.load_key(KEY) is None
    assert plaintext_keyring.get_password("tokensmith-test", KEY) is not None  # the token item is untouched


def test_keyring_store_without_a_keyring_keeps_the_key_in_the_fallback_file(tmp_path: Path) -> None:
    """No usable keyring (SSH, containers): the key goes where the token goes, the fallback's 0600 ``.dpop`` file."""
    from keyring.backends import fail

    saved = keyring.core._keyring_backend
    keyring.set_keyring(fail.Keyring())  # type: ignore[no-untyped-call]
    try:
        fallback = FileStore(tmp_path / "fallback")
        with pytest.warns(UserWarning, match="keyring unavailable"):
            store = KeyringStore("tokensmith-test", fallback=fallback)
            jwk = _jwk()
            store.save_key(KEY, jwk)
        assert fallback.load_key(KEY) == jwk and store.load_key(KEY) == jwk
        assert stat.S_IMODE((tmp_path / "fallback" / f"{KEY}.dpop").stat().st_mode) == 0o600
        assert store.delete_key(KEY) and store.load_key(KEY) is None
    finally:
        keyring.core._keyring_backend = saved
