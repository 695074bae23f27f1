"""``Token``: what a client keeps after a successful token response (RFC 6749 §5.1, C6, C7, C9)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._protocol.renewal import DEFAULT_POLICY, RenewalPolicy, RenewalState, deadlines, renewal_state
from ._protocol.token import B64TOKEN, TokenResponse
from ._redact import redact


@dataclass(frozen=True)
class Token:
    """An access token with what is needed to use and renew it. Secrets are hidden from ``repr``."""

    access_token: str = field(repr=False)
    token_type: str = "Bearer"
    #: Absolute expiry, wall clock (``time.time()``), computed once from ``expires_in`` at receipt.
    expires_at: float | None = None
    #: Wall-clock receipt time.
    issued_at: float | None = None
    refresh_token: str | None = field(default=None, repr=False)
    #: The scope actually granted (C4), when the server said.
    scope: str | None = None
    id_token: str | None = field(default=None, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: From here on the token is renewed in the background while it is still served (wall clock; None without
    #: an expiry). Fixed at receipt (see ``tokensmith.RenewalPolicy``); when not given, the policy's default
    #: without jitter.
    refresh_at: float | None = None
    #: Past this, callers wait for a renewal rather than be handed a token about to expire (wall clock).
    must_refresh_at: float | None = None
    #: RFC 8693 §2.2.1: the type of the token a token exchange issued (e.g.
    #: ``urn:ietf:params:oauth:token-type:access_token``); None for other grants.
    issued_token_type: str | None = None
    #: The RFC 7638 thumbprint of the DPoP key the token was obtained with (RFC 9449 §6: the ``cnf.jkt`` a
    #: DPoP-bound token carries); None without DPoP. A token with one is only ever used with that very key.
    jkt: str | None = None
    #: ``is_dpop``, decided once: the auth handlers read it on every request.
    _dpop: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        if not B64TOKEN.fullmatch(self.access_token):
            raise ValueError("access_token is not an RFC 6750 b64token")
        object.__setattr__(self, "_dpop", self.token_type.lower() == "dpop")
        if self.expires_at is not None:
            if self.refresh_at is None or self.must_refresh_at is None:
                due = deadlines(self.expires_at, self.issued_at)
                must = due.must_refresh_at if self.must_refresh_at is None else self.must_refresh_at
                refresh = due.refresh_at if self.refresh_at is None else self.refresh_at
            else:
                must, refresh = self.must_refresh_at, self.refresh_at
            # Never later than the expiry, whatever a stored file says: a token is not fresh once it expired.
            must = min(must, self.expires_at)
            object.__setattr__(self, "must_refresh_at", must)
            object.__setattr__(self, "refresh_at", min(refresh, must))

    @classmethod
    def from_response(
        cls,
        response: TokenResponse,
        *,
        previous_refresh_token: str | None = None,
        policy: RenewalPolicy = DEFAULT_POLICY,
        draw: float = 0.0,
    ) -> Token:
        """Build from a token response. Keeps ``previous_refresh_token`` when the server sent no new one
        (RFC 6749 §6: "If none is returned, keep the old one", C9). The renewal deadlines are computed here,
        once, by ``policy`` (with the server's ``refresh_in`` when it sent one); ``draw`` in ``[0, 1)`` picks
        the jitter of ``refresh_at``."""
        refresh_at = must_refresh_at = None
        if response.expires_at is not None:
            issued_at = response.received_at or None
            due = deadlines(response.expires_at, issued_at, refresh_in=response.refresh_in, policy=policy, draw=draw)
            refresh_at, must_refresh_at = due.refresh_at, due.must_refresh_at
        return cls(
            access_token=response.access_token,
            token_type=response.token_type,
            expires_at=response.expires_at,
            issued_at=response.received_at or None,
            refresh_token=response.refresh_token or previous_refresh_token,
            scope=response.scope,
            id_token=response.id_token,
            raw={k: v for k, v in response.raw.items() if k not in ("access_token", "refresh_token", "id_token")},
            refresh_at=refresh_at,
            must_refresh_at=must_refresh_at,
            issued_token_type=response.issued_token_type,
        )

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value: ``Bearer <token>`` (RFC 6750 §2.1), or ``DPoP <token>`` for a
        DPoP-bound token (RFC 9449 §7.1), which must also be sent with a proof (``DPoP`` header). A token exchange's
        ``N_A`` token (not an access token, RFC 8693 §2.2.1) has none: ``UnexpectedTokenType`` (C7)."""
        if self._dpop:
            return f"DPoP {self.access_token}"
        if self.token_type.upper() == "N_A":
            from .exceptions import UnexpectedTokenType

            raise UnexpectedTokenType(
                f"token_type N_A: the token exchange issued {self.issued_token_type or 'a token'}, not an access token "
                "(RFC 8693 §2.2.1); it never goes in an Authorization header (use token.access_token yourself)"
            )
        return f"Bearer {self.access_token}"

    @property
    def is_dpop(self) -> bool:
        """A DPoP-bound access token (``token_type`` ``DPoP``, case-insensitive)."""
        return self._dpop

    @property
    def lifetime(self) -> float | None:
        if self.expires_at is None or self.issued_at is None:
            return None
        return max(0.0, self.expires_at - self.issued_at)

    def is_fresh(self, now: float) -> bool:
        """Usable without renewal at ``now`` (wall clock): before ``refresh_at``."""
        refresh_at = self.refresh_at
        return refresh_at is None or now < refresh_at

    def state(self, now: float) -> RenewalState:
        """Fresh, refresh-soon, must-refresh or expired at ``now`` (wall clock)."""
        return renewal_state(now, self.refresh_at, self.must_refresh_at, self.expires_at)

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def with_refresh_token(self, refresh_token: str | None) -> Token:
        return replace(self, refresh_token=refresh_token)

    def to_dict(self) -> dict[str, Any]:
        """For stores: plain JSON types only. ``issued_token_type`` only when set, so documents of other grants
        stay byte-for-byte what earlier versions wrote (and read)."""
        document: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "issued_at": self.issued_at,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
            "id_token": self.id_token,
            "refresh_at": self.refresh_at,
            "must_refresh_at": self.must_refresh_at,
        }
        if self.issued_token_type is not None:
            document["issued_token_type"] = self.issued_token_type
        if self.jkt is not None:  # likewise: only DPoP tokens carry it
            document["jkt"] = self.jkt
        return document

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Token:
        """Inverse of ``to_dict``. Raises ``ValueError``/``TypeError``/``KeyError`` on anything malformed."""

        def opt_str(name: str) -> str | None:
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string")
            return value

        def opt_float(name: str) -> float | None:
            value = data.get(name)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number")
            return float(value)

        access_token = data["access_token"]
        if not isinstance(access_token, str):
            raise TypeError("access_token must be a string")
        return cls(
            access_token=access_token,
            token_type=opt_str("token_type") or "Bearer",
            expires_at=opt_float("expires_at"),
            issued_at=opt_float("issued_at"),
            refresh_token=opt_str("refresh_token"),
            scope=opt_str("scope"),
            id_token=opt_str("id_token"),
            refresh_at=opt_float("refresh_at"),
            must_refresh_at=opt_float("must_refresh_at"),
            issued_token_type=opt_str("issued_token_type"),
            jkt=opt_str("jkt"),
        )

    def __repr__(self) -> str:
        return (
            f"Token(access_token={redact(self.access_token)}, token_type={self.token_type!r}, "
            f"expires_at={self.expires_at!r}, refresh_token={redact(self.refresh_token)}, scope={self.scope!r}"
            + (f", jkt={self.jkt!r})" if self.jkt is not None else ")")
        )
