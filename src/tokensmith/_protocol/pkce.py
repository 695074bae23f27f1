"""PKCE (RFC 7636, C19, C20): a verifier from caller-supplied random octets, and its S256 challenge.

Pure: the driver passes the random bytes in (``secrets.token_bytes``), so tests can pin them. ``plain`` is never
produced: RFC 7636 §4.2 "If the client is capable of using S256, it MUST use S256", and RFC 9700 §2.1.1 says so
again for every client.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

from .._redact import redact

#: RFC 7636 §4.1 / §7.1: 32 octets (256 bits) base64url-encoded give a 43-character verifier.
VERIFIER_OCTETS = 32
#: The only method sent (C20).
S256 = "S256"
#: RFC 7636 §4.1: ``code-verifier = 43*128unreserved``.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7636 App. A)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def s256_challenge(verifier: str) -> str:
    """``BASE64URL-NOPAD(SHA256(ASCII(code_verifier)))`` (RFC 7636 §4.2). Refuses a verifier outside the
    §4.1 syntax (43–128 unreserved characters): the server would refuse it later, with less to go on."""
    if not _VERIFIER.fullmatch(verifier):
        raise ValueError("a PKCE code_verifier is 43-128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)")
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass(frozen=True)
class Pkce:
    """A verifier (secret: sent only to the token endpoint) and its S256 challenge (sent in the authorization
    request)."""

    verifier: str = field(repr=False)
    challenge: str
    method: str = S256

    @classmethod
    def from_verifier(cls, verifier: str) -> Pkce:
        return cls(verifier, s256_challenge(verifier))

    @classmethod
    def from_random(cls, octets: bytes) -> Pkce:
        """A fresh verifier from ``octets`` (at least 32 random bytes: RFC 7636 §7.1 wants 256 bits of entropy);
        32 octets give the 43-character verifier RFC 7636 §4.1 recommends. Use new bytes for every request."""
        if not isinstance(octets, bytes) or len(octets) < VERIFIER_OCTETS:
            raise ValueError(f"PKCE needs at least {VERIFIER_OCTETS} random octets (RFC 7636 §7.1)")
        if len(octets) > 96:  # base64url of 96 octets is 128 characters, the §4.1 maximum
            raise ValueError("at most 96 octets fit in a PKCE code_verifier (128 characters, RFC 7636 §4.1)")
        return cls.from_verifier(b64url(octets))

    def __repr__(self) -> str:
        return f"Pkce(verifier={redact(self.verifier)}, challenge={self.challenge!r}, method={self.method!r})"
