"""The ``tokensmith`` entry point, and its cached-token fast path.

kubectl exec plugins, git credential helpers and flytekit's external-command authenticator run the token
command on *every* invocation, so a cached token must come back about as fast as Python starts. This module
answers ``tokensmith token`` and ``tokensmith git-credential get`` from a valid token in the file store with the
standard library only (no requests, click, keyring or dataclasses), computing the same store key and freshness
rule as the library (``tokensmith._keys``; ``tokensmith._lifetime``: a token is served until its
``must_refresh_at``). Anything else - no valid token, another
store, an option it does not know, ``--help`` - goes to the full command line (``tokensmith.cli.main``), which
does the same thing the slow way.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

#: Options of ``token`` / ``git-credential`` the fast path understands: name -> (settings key, takes a value).
_OPTIONS = {
    "--profile": ("profile", True),
    "--issuer": ("issuer", True),
    "--token-endpoint": ("token_endpoint", True),
    "--device-authorization-endpoint": ("device_authorization_endpoint", True),
    "--authorization-endpoint": ("authorization_endpoint", True),
    "--redirect-uri": ("redirect_uri", True),
    "--revocation-endpoint": ("revocation_endpoint", True),
    "--client-id": ("client_id", True),
    "--client-secret-env": ("client_secret_env", True),
    "--client-secret-file": ("client_secret_file", True),
    "--client-secret-stdin": ("client_secret_stdin", False),
    "--auth-method": ("auth_method", True),
    "--basic-encoding": ("basic_encoding", True),
    "--private-key-file": ("private_key_file", True),
    "--private-key-password-env": ("private_key_password_env", True),
    "--key-id": ("key_id", True),
    "--assertion-alg": ("assertion_alg", True),
    "--assertion-audience": ("assertion_audience", True),
    "--scope": ("scope", True),
    "--audience": ("audience", True),
    "--resource": ("resource", True),
    "--flow": ("flow", True),
    "--store": ("store", True),
    "--store-dir": ("store_dir", True),
    "--ca-bundle": ("ca_bundle", True),
    "--insecure-skip-tls-verify": ("insecure_skip_tls_verify", False),
    "--timeout": ("timeout", True),
    "--username": ("git_username", True),
    "--min-valid": ("min_valid", True),
    "--format": ("format", True),
    "--no-interactive": ("no_interactive", False),
    "--interactive": ("interactive", False),
}
_REPEATED = {"scope", "resource"}

#: What git wrote on stdin, when the fast path read it and then handed over to the full command line.
git_request_text: str | None = None


class _Unhandled(Exception):
    """Not for the fast path: let the full command line do it."""


def _parse(args: Sequence[str]) -> tuple[dict[str, object], list[str]]:
    options: dict[str, object] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=")
        if not arg.startswith("--"):
            positional.append(arg)
            i += 1
            continue
        if name not in _OPTIONS:
            raise _Unhandled(arg)
        key, takes_value = _OPTIONS[name]
        if takes_value:
            if eq:
                value = inline
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise _Unhandled(arg)
            if key in _REPEATED:
                options[key] = (*options.get(key, ()), value)  # type: ignore[misc]
            else:
                options[key] = value
        elif eq:
            raise _Unhandled(arg)
        else:
            options[key] = True
        i += 1
    return options, positional


def _cached(options: dict[str, object]) -> tuple[str, str, float | None, float | None] | None:
    """``(access_token, token_type, expires_at, renew_at)`` of a stored token good for this call, or None."""
    from .config import resolve

    settings = resolve({k: v for k, v in options.items() if k not in ("min_valid", "format", "no_interactive")})
    if settings.store != "file" or not settings.client_id or not (settings.issuer or settings.token_endpoint):
        return None
    if settings.client_secret_env and not os.environ.get(settings.client_secret_env):
        return None  # named but unset: the full command line refuses it (it must not silently become public)
    # Settings that contradict each other are refused by the full command line, so never answered here; the key file
    # itself is not read (a cached token needs no client authentication, and parsing a key is not cheap).
    settings.check_client_auth()
    min_valid = float(str(options.get("min_valid", 0)))
    if not min_valid >= 0:
        return None  # the full command line refuses it
    from .._keys import cache_key
    from .._lifetime import serve_until, usable
    from ..stores._format import token_fields
    from ..stores._fs import default_directory, read_private_file

    key = cache_key(
        issuer=settings.issuer,
        token_endpoint="" if settings.issuer else settings.token_endpoint or "",
        client_id=settings.client_id,
        grant=settings.grant,
        scope=" ".join(settings.scope) or None,
        audience=settings.audience,
        resource=settings.resource,
    )
    directory = os.path.abspath(os.path.expanduser(settings.store_dir)) if settings.store_dir else default_directory()
    data = read_private_file(os.path.join(directory, key + ".json"), 64 * 1024)
    if data is None:
        return None
    fields = token_fields(data)
    access_token, token_type = fields.get("access_token"), fields.get("token_type") or "Bearer"
    expires_at, issued_at, must = fields.get("expires_at"), fields.get("issued_at"), fields.get("must_refresh_at")
    if not isinstance(access_token, str) or not isinstance(token_type, str) or token_type.lower() != "bearer":
        return None
    if not all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in (expires_at, issued_at, must)
    ):
        return None
    if not usable(expires_at, issued_at, time.time(), min_valid, must):
        return None
    return access_token, token_type, expires_at, serve_until(expires_at, issued_at, must)


def _token(options: dict[str, object]) -> int | None:
    from .formats import exec_info, render

    fmt = str(options.get("format", "raw"))
    api_version = exec_info()[0] if fmt == "exec-credential" else "client.authentication.k8s.io/v1"
    found = _cached(options)
    if found is None:
        return None
    access_token, token_type, expires_at, renew_at = found
    text = render(
        fmt, access_token, token_type, expires_at, renew_at=renew_at, now=time.time(), api_version=api_version
    )
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


def _git_get(options: dict[str, object]) -> int | None:
    global git_request_text
    from .formats import git_answer, parse_git_request

    git_request_text = sys.stdin.read()
    found = _cached(options)
    if found is None:
        return None
    from .config import resolve

    username = resolve({k: v for k, v in options.items() if k == "git_username" or k == "profile"}).git_username
    access_token, _type, expires_at, _renew = found
    sys.stdout.write(git_answer(parse_git_request(git_request_text), access_token, expires_at, username))
    sys.stdout.flush()
    return 0


def _try_fast(argv: list[str]) -> int | None:
    if not argv or argv[0] not in ("token", "git-credential"):
        return None
    try:
        options, positional = _parse(argv[1:])
        if options.get("interactive") or (options.get("git_username") and argv[0] == "token"):
            return None
        if argv[0] == "token" and not positional:
            return _token(options)
        if argv[0] == "git-credential" and positional == ["get"]:
            return _git_get(options)
    except (_Unhandled, ValueError, TypeError, KeyError):
        return None  # the full command line will say what is wrong, or do it the slow way
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``tokensmith`` and ``python -m tokensmith``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        answered = _try_fast(args)
    except Exception:
        # Whatever the fast path cannot do - print to a stdout that is closed, full or a pipe whose reader has gone,
        # read a token file a newer tokensmith wrote - the full command line does the slow way, and reports in one
        # line what is wrong (never a traceback from here).
        answered = None
    if answered is not None:
        return answered
    from .main import main as full

    return full(args)


if __name__ == "__main__":
    sys.exit(main())
