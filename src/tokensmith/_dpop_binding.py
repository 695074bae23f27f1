"""A client's DPoP key and the tokens bound to it (RFC 9449 §5, §6): making, loading and storing the key (in the
store's key slot, apart from the token), recording its thumbprint on the tokens it obtains, and setting aside a
stored token whose key this client does not hold. A mixin of ``ClientCore``, which owns the state it reads."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from .exceptions import DPoPKeyMissing, LoginRequired, StoreError
from .token import Token

if TYPE_CHECKING:
    from ._protocol.discovery import ServerMetadata
    from ._protocol.resource_metadata import ResourceMetadata
    from .dpop import DPoPSession
    from .stores.base import TokenStore

logger = logging.getLogger("tokensmith.client")


class _Core(Protocol):
    """What of ``ClientCore`` these methods use."""

    _dpop: DPoPSession | None
    _key_problem: str | None
    _warned_key_problem: bool
    _key_unsaved: bool
    _metadata: ServerMetadata | None
    resource_metadata: ResourceMetadata | None
    store: TokenStore
    cache_key: str

    def _store_trouble(self, what: str, error: StoreError) -> None: ...
    def _save_key_if_unsaved(self) -> None: ...
    def _dpop_alg(self) -> str: ...
    def _has_key_for(self, token: Token) -> bool: ...


class DPoPBinding:
    """The DPoP part of ``ClientCore`` (see the module docstring)."""

    _key_problem: str | None

    def _bind(self: _Core, token: Token) -> Token:
        """A token obtained with DPoP proofs records the key's thumbprint (``jkt``): it is used with that key
        only, in this process or the next (RFC 9449 §5, §6)."""
        if self._dpop is None or self._dpop.key is None:
            return token
        self._key_problem = None
        return replace(token, jkt=self._dpop.key.thumbprint)

    def _ensure_dpop_key(self: _Core) -> None:
        """Blocking (store I/O): the key to sign with, before a renewal sends anything. A generated key is
        looked for in the store's key slot first (a DPoP-bound refresh token from an earlier process needs it),
        else made and stored there, apart from the token."""
        session = self._dpop
        if session is None or session.key is not None:
            return
        from .dpop import DPoPKey, load_store_key

        try:
            session.key = load_store_key(self.store, self.cache_key)
        except StoreError as error:
            self._store_trouble("read the stored DPoP key", error)
        if session.key is not None:
            return
        session.key = DPoPKey.generate(self._dpop_alg())
        self._key_unsaved = True
        try:
            self._save_key_if_unsaved()
        except StoreError as error:
            self._store_trouble("store the DPoP key", error)

    def _save_key_if_unsaved(self: _Core) -> None:
        """Blocking: store the key made here if the store has not got it yet. A token bound to it is stored only
        after it: a DPoP-bound refresh token in the store without its key would be lost to the next process."""
        session = self._dpop
        if not self._key_unsaved or session is None or session.key is None:
            return
        from .dpop import save_store_key

        save_store_key(self.store, self.cache_key, session.key)
        self._key_unsaved = False

    def _dpop_alg(self: _Core) -> str:
        """The algorithm of a key made here: ES256, unless the authorization server's metadata (RFC 9449 §5.1) or
        the resource's (RFC 9728 §2) list algorithms without it; then the first listed that both accept."""
        from .dpop import SUPPORTED_ALGS

        allowed = [alg for alg in SUPPORTED_ALGS]
        metadata = self._metadata
        server = metadata.raw.get("dpop_signing_alg_values_supported") if metadata is not None else None
        resource = self.resource_metadata.dpop_signing_alg_values_supported if self.resource_metadata else ()
        for listed in (server, resource):
            if isinstance(listed, list | tuple) and listed:
                allowed = [alg for alg in listed if alg in allowed]
        if "ES256" in allowed or not allowed:
            return "ES256"  # nothing in common: ES256 anyway, and let the server say what it thinks
        return str(allowed[0])

    def _has_key_for(self: _Core, token: Token) -> bool:
        """Blocking: does this client hold the key ``token`` is bound to (loading it from the store if need be)?"""
        session = self._dpop
        if session is None or token.jkt is None:
            return False
        if session.key is not None and session.key.thumbprint == token.jkt:
            return True
        if not session.generated:
            return False
        from .dpop import load_store_key

        try:
            stored = load_store_key(self.store, self.cache_key)
        except StoreError as error:
            self._store_trouble("read the stored DPoP key", error)
            return False
        if stored is not None and stored.thumbprint == token.jkt:
            session.key = stored  # another process made (and stored) the key this token is bound to
            return True
        return False

    def _usable_binding(self: _Core, token: Token | None) -> Token | None:
        """Blocking: ``token`` as loaded from the store, or None when it is bound to a DPoP key this client does
        not have (missing, another key, or a client without DPoP): such a token is never sent, not even its
        refresh token (a bound one would be refused anyway, RFC 9449 §5). A DPoP client likewise never takes a
        token obtained without a proof (no ``jkt``: written by hand, or by an older release; DPoP is part of the
        cache key): it would go out as a Bearer token, a silent downgrade (RFC 9449 §5, C7)."""
        unbound = token is not None and token.jkt is None and not token.is_dpop
        if token is None or (unbound and self._dpop is None) or self._has_key_for(token):
            self._key_problem = None
            return token
        if self._dpop is None:
            problem = "the stored token is DPoP-bound (RFC 9449) but this client does not use DPoP (pass dpop=True)"
        elif unbound:
            problem = "the stored token was obtained without DPoP (a Bearer token of a client without dpop=...)"
        elif token.jkt is None:
            problem = "the stored DPoP token records no key thumbprint (jkt), so its key cannot be checked"
        else:
            problem = "the stored token is bound to a DPoP key that is missing from the store (or was replaced)"
        self._key_problem = problem
        (logger.debug if self._warned_key_problem else logger.warning)("%s; it is not used", problem)
        self._warned_key_problem = True
        return None

    def _login_required(self: _Core, message: str) -> LoginRequired:
        if self._key_problem is not None:
            return DPoPKeyMissing(f"{self._key_problem}: log in again (client.login())")
        return LoginRequired(message)

    def _forget_dpop_key(self: _Core) -> None:
        """Blocking: remove the stored DPoP key (a logout); a generated key is made anew next time."""
        from .dpop import delete_store_key

        delete_store_key(self.store, self.cache_key)
        if self._dpop is not None and self._dpop.generated:
            self._dpop.key = None

    def dpop_headers(self: _Core, method: str, url: str, token: Token | None = None) -> dict[str, str]:
        """Headers for a request of your own with DPoP (RFC 9449 §7): ``DPoP: <fresh proof>`` for ``method`` and
        ``url`` (with the server's latest nonce for that origin), and, given a DPoP ``token``, the
        ``Authorization: DPoP <token>`` header with the proof's ``ath``. A Bearer ``token`` gets its Bearer
        header and no proof. No I/O (but a ``DPoPKey.from_signer`` key's signer is called: see
        ``dpop_proofs_may_block``): get a token first (``get_token()``), which loads or makes the key.
        Pass each response's ``DPoP-Nonce`` header to ``update_dpop_nonce``."""
        if token is not None and not token.is_dpop:
            return {"Authorization": token.authorization}
        session = self._dpop
        if session is None:
            from .exceptions import DPoPError

            raise DPoPError("this client does not use DPoP (pass dpop=True or dpop=DPoPKey(...))")
        if session.key is None:
            from .exceptions import DPoPError

            raise DPoPError("no DPoP key yet: call get_token() first (it loads or makes the key)")
        headers = {"DPoP": session.proof(method, url, token.access_token if token is not None else None)}
        if token is not None:
            headers["Authorization"] = token.authorization
        return headers

    @property
    def dpop_proofs_may_block(self: _Core) -> bool:
        """Whether ``dpop_headers`` calls a signer that may block (a ``DPoPKey.from_signer`` key: an HSM, a KMS):
        async code then calls it in a worker thread, as the httpx integration does. False for an in-memory key."""
        session = self._dpop
        return session is not None and session.key is not None and session.key.may_block

    def update_dpop_nonce(self: _Core, url: str, nonce: str | None) -> None:
        """Remember the ``DPoP-Nonce`` a server at ``url`` answered with (RFC 9449 §8.1, §9): the next proof for
        that origin carries it. None (no header) changes nothing."""
        if self._dpop is not None:
            from ._protocol.dpop import _nonce_value

            self._dpop.remember_nonce(url, _nonce_value(nonce))
