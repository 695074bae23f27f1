"""What ``tokensmith token`` prints, and the git credential-helper protocol. Standard library only: the cached-token
path writes these before anything heavier is imported.

- ``raw``: the access token and a newline (``TOKEN=$(tokensmith token)``);
- ``header``: ``Authorization: Bearer <token>`` (for ``curl -H @-``);
- ``json``: ``{"access_token", "token_type", "expires_at", "expires_in"}``;
- ``env``: ``export TOKENSMITH_ACCESS_TOKEN='...'`` lines for ``eval``;
- ``exec-credential``: a Kubernetes ``ExecCredential`` (``client.authentication.k8s.io/v1``, or the
  ``apiVersion`` kubectl sent in ``KUBERNETES_EXEC_INFO``), expiring a margin before the token does.
"""

from __future__ import annotations

import json
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

FORMATS = ("raw", "json", "header", "env", "exec-credential")
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
DEFAULT_EXEC_API_VERSION = EXEC_API_VERSIONS[0]
# RFC 6750 §2.1 b64token characters: what can follow "Bearer " (and sit in a shell quote) harmlessly.
_B64TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")


class ExecInfoError(ValueError):
    """``KUBERNETES_EXEC_INFO`` is present but unusable."""


def is_b64token(value: object) -> bool:
    if not isinstance(value, str) or not value or not set(value) <= _B64TOKEN_CHARS:
        return False
    body = value.rstrip("=")
    return bool(body) and "=" not in body


def exec_info(environ: Mapping[str, str] = os.environ) -> tuple[str, bool | None]:
    """``(apiVersion, interactive)`` from ``KUBERNETES_EXEC_INFO`` (kubectl sets it for exec plugins);
    ``(v1, None)`` when it is absent. ``interactive`` is ``spec.interactive`` (False: no login may start)."""
    raw = environ.get("KUBERNETES_EXEC_INFO")
    if not raw:
        return DEFAULT_EXEC_API_VERSION, None
    try:
        info = json.loads(raw)
    except ValueError:
        raise ExecInfoError("KUBERNETES_EXEC_INFO is not JSON") from None
    if not isinstance(info, dict):
        raise ExecInfoError("KUBERNETES_EXEC_INFO is not a JSON object")
    version = info.get("apiVersion") or DEFAULT_EXEC_API_VERSION
    if version not in EXEC_API_VERSIONS:
        raise ExecInfoError(
            f"KUBERNETES_EXEC_INFO asks for apiVersion {str(version)[:80]!r}; tokensmith speaks "
            f"{' and '.join(EXEC_API_VERSIONS)} (set apiVersion in the kubeconfig exec stanza)"
        )
    spec = info.get("spec")
    interactive = spec.get("interactive") if isinstance(spec, dict) else None
    return version, interactive if isinstance(interactive, bool) else None


#: 9999-12-31T23:59:59Z, the last instant RFC 3339 (four-digit years) can write.
LAST_RFC3339 = 253_402_300_799.0


def rfc3339(timestamp: float) -> str:
    """UTC, RFC 3339. A server may grant absurd lifetimes (``expires_in`` is capped at 2**62 s, far past what
    ``time.gmtime`` converts or a four-digit year holds): those become the last writable instant."""
    if not timestamp < LAST_RFC3339:  # also NaN
        timestamp = LAST_RFC3339
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(0.0, timestamp)))


def render(
    fmt: str,
    access_token: str,
    token_type: str,
    expires_at: float | None,
    *,
    renew_at: float | None,
    now: float,
    api_version: str = DEFAULT_EXEC_API_VERSION,
) -> str:
    """The text ``tokensmith token --format fmt`` prints (with its trailing newline)."""
    if not is_b64token(access_token):
        raise ValueError("the stored access token is not an RFC 6750 b64token; log in again")
    if fmt == "raw":
        return access_token + "\n"
    if fmt == "header":
        return f"Authorization: Bearer {access_token}\n"
    expires_in = None if expires_at is None else max(0, int(expires_at - now))
    if fmt == "json":
        document = {
            "access_token": access_token,
            "token_type": token_type,
            "expires_at": expires_at,
            "expires_in": expires_in,
        }
        return json.dumps(document) + "\n"
    if fmt == "env":
        lines = [f"export TOKENSMITH_ACCESS_TOKEN='{access_token}'"]
        if expires_at is not None:
            lines.append(f"export TOKENSMITH_TOKEN_EXPIRES_AT='{int(expires_at)}'")
        return "\n".join(lines) + "\n"
    if fmt == "exec-credential":
        status: dict[str, str] = {"token": access_token}
        if renew_at is not None:
            # client-go runs the plugin again once this passes: at our own renewal point, before the real expiry.
            status["expirationTimestamp"] = rfc3339(renew_at)
        return json.dumps({"apiVersion": api_version, "kind": "ExecCredential", "status": status}) + "\n"
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


# --- git's credential-helper protocol (git-credential(1)) --------------------------------------------------


def parse_git_request(text: str) -> dict[str, list[str]]:
    """git's ``key=value`` lines, up to a blank line; repeated keys (``capability[]``, ``wwwauth[]``) kept."""
    request: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition("=")
        if sep:
            request.setdefault(key, []).append(value)
    return request


def git_answer(request: Mapping[str, list[str]], access_token: str, expires_at: float | None, username: str) -> str:
    """The reply to ``get``. With ``capability[]=authtype`` offered (git >= 2.46), a Bearer credential that git
    sends as is and never stores (``ephemeral``); otherwise a username/password pair, the password being the token
    (what Azure DevOps, GitHub and most git servers accept)."""
    if not is_b64token(access_token):
        raise ValueError("the stored access token is not an RFC 6750 b64token; log in again")
    for field in (username,):
        if "\n" in field or "\0" in field:
            raise ValueError("the git username must be one line")
    lines = []
    if "authtype" in request.get("capability[]", []):
        lines += ["capability[]=authtype", "authtype=Bearer", f"credential={access_token}", "ephemeral=true"]
    else:
        lines += [f"username={username}", f"password={access_token}"]
    if expires_at is not None:
        lines.append(f"password_expiry_utc={int(expires_at)}")
    return "\n".join(lines) + "\n"
