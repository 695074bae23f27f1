"""The store key of a token: stdlib-only and cheap to import, because the command line's cached-token path
(run by kubectl and git on every call) computes it before anything else is loaded."""

from __future__ import annotations

import json
from collections.abc import Iterable

try:  # the built-in SHA-256: importing hashlib loads OpenSSL, several milliseconds on every CLI call
    from _sha256 import sha256  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - other Python builds
    try:
        from _sha2 import sha256  # type: ignore[import-not-found, no-redef, unused-ignore]
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment, unused-ignore]


def cache_key(
    *,
    issuer: str | None,
    token_endpoint: str,
    client_id: str | None,
    grant: str,
    scope: str | None = None,
    audience: str | None = None,
    resource: Iterable[str] = (),
    extra: Iterable[tuple[str, str]] = (),
) -> str:
    """A stable key from everything that changes the token (kubelogin-style): issuer (C23: tokens of two
    authorization servers never mix), endpoint, client, grant, requested scope (order-insensitive),
    audience and resources. Hex SHA-256, safe as a file name."""
    material = {
        "issuer": issuer,
        "token_endpoint": token_endpoint,
        "client_id": client_id,
        "grant": grant,
        "scope": sorted(set((scope or "").split())),
        "audience": audience,
        "resource": sorted(set(resource)),
        "extra": sorted(extra),
    }
    return str(sha256(json.dumps(material, sort_keys=True).encode()).hexdigest())
