"""The ``tokensmith`` command line: log in once, then a fresh token for every kubectl, git, curl and flytekit call.

Data goes to stdout, everything for the person (prompts, QR codes, progress, errors) to stderr. Secrets never come
from argv (visible in ``ps``): a client secret is read from an environment variable, a file or stdin. Settings
come from flags, then ``TOKENSMITH_*`` environment variables, then a named profile (see ``cli.config``). The
cached-token path of ``token`` and ``git-credential get`` is answered before this module is even imported
(``cli.fast``); everything else, and every renewal, happens here.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

try:
    import click
except ImportError:  # pragma: no cover - exercised only without the extra
    click = None  # type: ignore[assignment]

from ..exceptions import (
    AccessDenied,
    AuthenticationError,
    ConfigurationError,
    DeviceFlowCancelled,
    DeviceFlowTimeout,
    DiscoveryError,
    ExpiredToken,
    InsecureEndpointError,
    InvalidClient,
    InvalidEndpointError,
    InvalidResponse,
    LoginRequired,
    NonJSONResponse,
    OAuthError,
    TokensmithError,
    TransportError,
)
from .config import (
    AUTH_METHOD_ALIASES,
    AUTH_METHODS,
    BASIC_ENCODINGS,
    DEFAULT_SECRET_ENV,
    FLOWS,
    SETTINGS,
    STORES,
    ConfigError,
    Settings,
    read_small_file,
    resolve,
)
from .formats import FORMATS, ExecInfoError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_LOGIN_REQUIRED = 4
EXIT_REJECTED = 5
EXIT_NETWORK = 6
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """Exit codes:
  0    ok
  1    error (a login that was denied, expired or timed out; anything not listed below)
  2    usage: a bad flag, setting (an unusable URL, a stray control character) or configuration file
  4    login required: no usable token and no login allowed (--no-interactive, or no terminal)
  5    rejected by the identity provider (an OAuth error: invalid_client, invalid_grant, ...)
  6    network or TLS failure, or a server/proxy that did not answer in OAuth (gateway pages, 5xx)
  130  interrupted (Ctrl-C); nothing is left half-written
"""


class _StdoutUnavailable(Exception):
    """stdout cannot take the token: closed before we started, or a pipe whose reader has gone."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _check_stdout() -> None:
    """Refuse to start a login whose token could not be printed: with fd 1 closed (``>&-``) Python has no
    ``sys.stdout``. A stream without a file descriptor (a test harness) is taken on trust."""
    stream = sys.stdout
    if stream is None or stream.closed:
        raise _StdoutUnavailable("closed")
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    try:
        os.fstat(fd)
    except OSError:
        raise _StdoutUnavailable("closed") from None


def _print_token(text: str) -> None:
    _check_stdout()
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise _StdoutUnavailable("the reading end of the pipe has gone") from None
    except (OSError, ValueError) as error:  # ENOSPC (> /dev/full), EBADF, a closed stream
        reason = getattr(error, "strerror", None) or "closed"
        raise _StdoutUnavailable(str(reason)) from None


def _silence_stdout() -> None:
    """Point stdout's file descriptor at /dev/null, so the interpreter's final flush of what is still buffered
    (the token) neither fails again ("Exception ignored ... BrokenPipeError") nor goes anywhere else."""
    try:
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (AttributeError, OSError, ValueError):
        return
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)


def _client_auth(client_id: str, secret_env: str, method: str, encoding: str) -> Any:
    from .._protocol.client_auth import ClientSecretBasic, ClientSecretPost, NoClientAuth

    secret = os.environ.get(secret_env) or None
    if secret is None:
        if secret_env != DEFAULT_SECRET_ENV:
            # Named on purpose: silently becoming a public client would hide a broken setup.
            raise click.UsageError(
                f"--client-secret-env names {secret_env}, but that environment variable is not set (or empty); "
                f"export it, or drop --client-secret-env for a public client"
            )
        return NoClientAuth(client_id)
    if method == "post":
        return ClientSecretPost(client_id, secret)
    return ClientSecretBasic(client_id, secret, encoding)  # type: ignore[arg-type]


def _explain(error: TokensmithError) -> str:
    if isinstance(error, AccessDenied):
        return "the sign-in was denied"
    if isinstance(error, ExpiredToken):
        return "the code expired before the sign-in was approved; run the command again"
    if isinstance(error, DeviceFlowTimeout):
        return "gave up waiting for approval (--timeout); run the command again, with a longer --timeout"
    if isinstance(error, DeviceFlowCancelled):
        return "cancelled"
    from .presenter import printable

    hint = ""
    if isinstance(error, InvalidClient):
        hint = _INVALID_CLIENT_HINTS.get(
            _auth_in_use,
            "; check --client-id and the secret in the variable named by --client-secret-env, "
            "or try --auth-method post / --basic-encoding",
        )
    elif isinstance(error, TransportError):
        hint = "; check the URL, your network and any proxy (HTTPS_PROXY, NO_PROXY), or raise --timeout"
    elif isinstance(error, NonJSONResponse):
        hint = "; check the endpoint URL: something other than the authorization server answered"
    # The message may quote the server (error_description): no terminal controls, bidi or zero-width characters.
    return printable(f"{type(error).__name__}: {error}{hint}", limit=None)


#: The client authentication method of this run (set by ``_client``), for the hint on an ``invalid_client``.
_auth_in_use = "basic"
_INVALID_CLIENT_HINTS = {
    "private_key_jwt": (
        "; check --client-id, and that the identity provider has the public half of the key in --private-key-file "
        "registered for it (and --key-id, --assertion-alg if it expects them)"
    ),
    "client_secret_jwt": "; check --client-id, the client secret, and --assertion-alg (default HS256)",
}


def _exit_code(error: BaseException) -> int:
    if isinstance(error, LoginRequired):
        return EXIT_LOGIN_REQUIRED
    if isinstance(error, (ConfigError, ExecInfoError, ConfigurationError, InvalidEndpointError, InsecureEndpointError)):
        return EXIT_USAGE  # a URL that cannot be used (no TLS, whitespace, credentials in it) is a bad setting
    if isinstance(error, (AccessDenied, DeviceFlowTimeout, DeviceFlowCancelled, ExpiredToken)):
        return EXIT_ERROR  # the person's answer or patience, not the server rejecting this client
    if isinstance(error, (OAuthError, AuthenticationError)):
        return EXIT_REJECTED
    if isinstance(error, TransportError) or (isinstance(error, InvalidResponse) and error.transient):
        return EXIT_NETWORK
    return EXIT_ERROR


#: The settings a login needs to store the very token asked for (its store key and place) and to reach the server:
#: all but those that matter only after it.
_LOGIN_SETTINGS = tuple(name for name in SETTINGS if name not in ("revocation_endpoint", "timeout", "git_username"))


def _login_command(settings: Settings) -> str:
    """The command that fixes a "login required", for the one-line remedy: the profile, and every setting given
    by a flag or an environment variable, as flags (a login with fewer would store a token under another key)."""
    import shlex

    parts = ["tokensmith", "login"]
    if settings.profile:
        parts += ["--profile", settings.profile]
    for name in _LOGIN_SETTINGS:
        origin = settings.origin.get(name)
        if origin is None or origin.startswith("profile"):
            continue  # not set, or set by the profile named above
        flag, value = "--" + name.replace("_", "-"), getattr(settings, name)
        if isinstance(value, bool):
            parts += [flag] if value else []
        elif isinstance(value, tuple):
            parts += [flag, " ".join(value)] if value else []
        elif value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


_UNREADABLE = object()


def _utf8(data: bytes) -> str | None:
    """``data`` as UTF-8 text, or None; the decode error (it holds all of ``data``) is never kept as an
    exception's context."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _read_secret(settings: Settings) -> str | None:
    """The client secret, from the one place the settings name: stdin, a file, or an environment variable. A
    source that was named but is empty is an error: silently becoming a public client would hide a broken setup."""
    if settings.client_secret_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise ConfigError("--client-secret-stdin: nothing was read from stdin")
        return line
    if settings.client_secret_file:
        path = os.path.expanduser(settings.client_secret_file)
        data, _ = read_small_file(path, "the client secret file", _KEY_FILE_LIMIT)
        if len(data) > _KEY_FILE_LIMIT:
            raise ConfigError(f"the client secret file {path} is too large to be a client secret")
        secret = _utf8(data)
        if secret is None:
            raise ConfigError(f"the client secret file {path} is not UTF-8 text")
        secret = secret.strip()
        if not secret:
            raise ConfigError(f"the client secret file {path} is empty")
        return secret
    if settings.client_secret_env:
        from_env = os.environ.get(settings.client_secret_env) or None
        if from_env is None:
            raise ConfigError(
                f"the client secret variable {settings.client_secret_env} (from "
                f"{settings.origin.get('client_secret_env', 'the settings')}) is not set or empty; export it, or "
                "drop client_secret_env for a public client"
            )
        return _checked_secret(from_env, settings.client_secret_env)
    from_default = os.environ.get(DEFAULT_SECRET_ENV) or None
    return None if from_default is None else _checked_secret(from_default, DEFAULT_SECRET_ENV)


def _checked_secret(secret: str, variable: str) -> str:
    """A secret from an environment variable, unless it holds a control character: RFC 6749 client secrets are
    VSCHAR, and the usual one is the newline ``echo`` left in a file a Kubernetes secret was made from. Sent as is,
    the server answers invalid_client (or "not properly encoded"), which says nothing about why. Never quoted."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in secret):
        raise ConfigError(
            f"the client secret in {variable} contains a control character (a trailing newline?); remove it"
        )
    return secret


#: A key file is a few kilobytes; anything much larger is not one (and is not read into memory whole).
_KEY_FILE_LIMIT = 64 * 1024


def _read_key_file(settings: Settings) -> tuple[str, bytes, int]:
    """The private key file's path, bytes and mode."""
    assert settings.private_key_file is not None
    path = os.path.expanduser(settings.private_key_file)
    data, mode = read_small_file(path, "the private key file", _KEY_FILE_LIMIT)
    if len(data) > _KEY_FILE_LIMIT:
        raise ConfigError(f"the private key file {path} is too large to be a private key")
    if not data.strip():
        raise ConfigError(f"the private key file {path} is empty")
    return path, data, mode


def _load_private_key(settings: Settings) -> tuple[str, Any, int]:
    """The key file's path, its key (a private JWK dict, or a ``cryptography`` key from a PEM decrypted with the
    password from ``private_key_password_env``) and the file's mode. ``ConfigError`` (never quoting the file)
    otherwise."""
    path, data, mode = _read_key_file(settings)
    return path, _parse_private_key(path, data, settings), mode


def _parse_private_key(path: str, data: bytes, settings: Settings) -> Any:
    # No message quotes the file or the parser's error text (which may): only what is wrong and where.
    password_env = settings.private_key_password_env
    password = os.environ.get(password_env, "").encode() if password_env else None
    if data.lstrip().startswith(b"{"):
        try:
            jwk = json.loads(data)
        except (ValueError, RecursionError):
            jwk = _UNREADABLE
        if jwk is _UNREADABLE:  # raised out here: the decoder's error (its .doc is the key) is not kept as context
            raise ConfigError(f"the private key file {path} is neither PEM nor valid JWK JSON")
        return _pick_jwk(path, jwk, settings.key_id)
    if b"-----BEGIN" not in data:
        raise ConfigError(f"the private key file {path} is neither PEM nor a JWK (JSON)")
    if b"PRIVATE KEY-----" not in data:
        raise ConfigError(f"the private key file {path} holds no private key (a public key or a certificate?)")
    if b"OPENSSH PRIVATE KEY-----" in data:
        raise ConfigError(
            f"the private key file {path} is in OpenSSH's format; convert it to PKCS#8 PEM "
            "(ssh-keygen -p -m PKCS8 -f FILE) or a JWK"
        )
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        raise ConfigError("private_key_jwt needs PyJWT with cryptography: pip install 'tokensmith[jwt]'") from None
    encrypted = b"ENCRYPTED" in data  # PKCS#8 "BEGIN ENCRYPTED PRIVATE KEY", or "Proc-Type: 4,ENCRYPTED"
    try:  # a password for a key that is not encrypted is not used (a key rotated to a plain one keeps working)
        return load_pem_private_key(data, password if encrypted else None)
    except TypeError:  # cryptography: encrypted, yet no password
        raise ConfigError(
            f"the private key file {path} is encrypted: name the variable holding its password with "
            "--private-key-password-env VAR"
        ) from None
    except UnsupportedAlgorithm:
        raise ConfigError(f"the private key file {path} holds a key of an unsupported type") from None
    except ValueError:
        if encrypted and password is not None:
            raise ConfigError(
                f"cannot decrypt the private key file {path}: wrong password in {password_env}?"
            ) from None
        raise ConfigError(f"the private key file {path} holds no usable PEM private key") from None


def _pick_jwk(path: str, document: Any, key_id: str | None) -> dict[str, Any]:
    """A private JWK, or the one of a JWK Set (RFC 7517 §5) that is alone or has ``kid`` = ``key_id``."""
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        keys = [k for k in document["keys"] if isinstance(k, dict)]
        if key_id is not None:
            keys = [k for k in keys if k.get("kid") == key_id]
        if len(keys) != 1:
            which = f"with kid {key_id!r}" if key_id is not None else "(give --key-id to choose one)"
            raise ConfigError(f"the JWK Set in {path} has {len(keys)} keys {which}, not exactly one")
        document = keys[0]
    if not isinstance(document, dict) or not isinstance(document.get("kty"), str):
        raise ConfigError(f'the private key file {path} is JSON but not a JWK (no "kty")')
    return document


def _jwt_auth(settings: Settings, secret: str | None) -> Any:
    """``PrivateKeyJWT`` or ``ClientSecretJWT`` for the settings, with the key parsed and one assertion signed
    here, so an unusable key, password or algorithm is a usage error before anything is sent."""
    from ..jwt_auth import ClientSecretJWT, PrivateKeyJWT

    assert settings.client_id is not None
    where, mode = "client_secret_jwt", 0
    # RFC 7523 §3: the endpoint called by default; some servers want the issuer (Auth0) or a fixed URL.
    audience, issuer = settings.assertion_audience or "endpoint", settings.issuer
    try:
        if settings.auth_method == "private_key_jwt":
            path, key, mode = _load_private_key(settings)
            where = f"the private key file {path}"
            auth: Any = PrivateKeyJWT(
                settings.client_id,
                key,
                kid=settings.key_id,
                alg=settings.assertion_alg,
                audience=audience,
                issuer=issuer,
            )
        else:
            assert secret is not None
            alg = settings.assertion_alg or "HS256"
            auth = ClientSecretJWT(settings.client_id, secret, alg=alg, audience=audience, issuer=issuer)
        auth.assertion("urn:tokensmith:cli:check")  # never sent: parses the key and tries alg and kid once
    except ConfigurationError as error:  # the library's messages never quote a key or a secret
        raise ConfigError(f"{where}: {error}") from None
    if os.name == "posix" and mode & 0o077:
        # Like ssh, but a warning, not a refusal: CI secret mounts (Kubernetes secret volumes, files a CI step wrote
        # under umask 022) are often 0644 on single-tenant runners, and refusing would break the main use. Only
        # once the key works, so that a broken one is a single line.
        sys.stderr.write(
            f"tokensmith: warning: {where} is accessible by group or others (mode {mode & 0o777:04o}); chmod 600 it\n"
        )
    return auth


def _store(settings: Settings) -> Any:
    from ..stores import FileStore

    files = FileStore(settings.store_dir)
    if settings.store == "keyring":
        from ..stores import KeyringStore

        return KeyringStore(fallback=files)
    return files


def _client(settings: Settings, *, on_prompt: Callable[[Any], None] | None = None, on_progress: Any = None) -> Any:
    """The ``TokenClient`` for these settings (its store key is the one the fast path computes)."""
    global _auth_in_use
    settings.require()
    settings.check_client_auth()
    from .._protocol.client_auth import ClientSecretBasic, ClientSecretPost
    from .._transport import DEFAULT_TIMEOUT, Transport, total_deadline
    from ..client import TokenClient

    _auth_in_use = settings.auth_method
    # private_key_jwt reads no secret (not even TOKENSMITH_CLIENT_SECRET, nor stdin): the key is the credential.
    secret = None if settings.auth_method == "private_key_jwt" else _read_secret(settings)
    auth = None
    if settings.auth_method in ("private_key_jwt", "client_secret_jwt"):
        auth = _jwt_auth(settings, secret)
        secret = None
    elif secret is not None and "auth_method" in settings.origin:
        assert settings.client_id is not None
        auth = (
            ClientSecretPost(settings.client_id, secret)
            if settings.auth_method == "post"
            else ClientSecretBasic(settings.client_id, secret, settings.basic_encoding)  # type: ignore[arg-type]
        )
    verify: bool | str | None = None
    if settings.insecure_skip_tls_verify:
        verify = False
        sys.stderr.write("tokensmith: warning: TLS certificates are not verified (--insecure-skip-tls-verify)\n")
    elif settings.ca_bundle:
        verify = os.path.expanduser(settings.ca_bundle)
    timeout: Any = DEFAULT_TIMEOUT
    total = None
    if settings.timeout is not None:
        connect, read = DEFAULT_TIMEOUT
        timeout = (min(connect, settings.timeout), min(read, settings.timeout))
        total = min(total_deadline(DEFAULT_TIMEOUT), settings.timeout)
    client = TokenClient(
        settings.token_endpoint,
        settings.client_id,
        secret if auth is None else None,
        issuer=settings.issuer,
        auth=auth,
        device_authorization_endpoint=settings.device_authorization_endpoint,
        authorization_endpoint=settings.authorization_endpoint,
        redirect_uri=settings.redirect_uri,
        login_flow=_login_flow(settings),
        scope=list(settings.scope) or None,
        audience=settings.audience,
        resource=settings.resource or None,
        grant=settings.grant,  # type: ignore[arg-type]
        store=_store(settings),
        on_prompt=on_prompt,
        on_progress=on_progress,
        login_timeout=settings.timeout,
        transport=Transport(timeout=timeout, total_timeout=total, verify=verify),
        basic_encoding=settings.basic_encoding,  # type: ignore[arg-type]
    )
    client.paste = _paste  # a browser login with no browser and no device flow asks on the terminal
    return client


def _login_flow(settings: Settings) -> Any:
    """The library's login flow for the CLI's ``--flow`` (device unless browser or auto was asked for)."""
    return settings.flow if settings.flow in ("browser", "auto") else "device"


def _paste() -> str:
    """Paste mode: the prompt on stderr (stdout is for data), the pasted address from stdin."""
    line = _read_long_line("Paste the address here and press Enter: ")
    if not line:
        raise EOFError("no address was pasted (end of input)")
    return line.strip()


def _read_long_line(prompt: str) -> str:
    """``prompt`` on stderr, then a line from stdin. On a POSIX terminal, read with the kernel's line editing off
    (switched off before the prompt is shown): in canonical mode a terminal keeps at most 4095 bytes of a line
    (1023 on macOS) and silently drops the rest, and a redirect address can be longer. Echo and Ctrl-C stay;
    Enter ends the line, Backspace erases, Ctrl-D on an empty line is the end of input. Elsewhere: ``readline()``."""
    try:
        import termios

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    except Exception:  # no termios (Windows), no file descriptor, termios.error
        saved = None
    if saved is None:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        return sys.stdin.readline()
    raw = termios.tcgetattr(fd)
    raw[3] &= ~termios.ICANON
    raw[6][termios.VMIN], raw[6][termios.VTIME] = 1, 0
    line = bytearray()

    def restore() -> None:
        with contextlib.suppress(Exception):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    # This runs in the login's paste thread: if the login ends first (Ctrl-C, timeout), the process exits with
    # the read still pending, and the terminal must not be left without its line editing.
    atexit.register(restore)
    try:
        termios.tcsetattr(fd, termios.TCSANOW, raw)
        sys.stderr.write(prompt)
        sys.stderr.flush()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk or (chunk == b"\x04" and not line):
                return ""
            for byte in chunk:
                if byte in (0x0A, 0x0D):
                    return line.decode("utf-8", "replace") + "\n"
                if byte in (0x7F, 0x08):  # Backspace: erase the last character on screen too
                    if line:
                        del line[-1]
                        sys.stderr.write("\b \b")
                        sys.stderr.flush()
                elif byte != 0x04:
                    line.append(byte)
    finally:
        restore()
        atexit.unregister(restore)


class _LazyPresenter:
    """The terminal UI, created only when a login really starts (a cached or refreshed token needs none)."""

    def __init__(self, qr: bool | None = None, browser: bool | None = None) -> None:
        self._qr, self._browser = qr, browser
        self.presenter: Any = None

    def show_prompt(self, prompt: Any) -> None:
        from .presenter import TerminalPresenter

        self.presenter = TerminalPresenter(sys.stderr, qr=self._qr, open_browser=self._browser)
        self.presenter.show_prompt(prompt)

    def on_progress(self, progress: Any) -> None:
        if self.presenter is not None:
            self.presenter.on_progress(progress)

    def close(self, success: bool | None) -> None:
        if self.presenter is not None:
            self.presenter.close(success=success)


def _interactive_default() -> bool:
    """A login may start when a person can see the prompt and act: stdin and stderr are terminals."""
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _record(settings: Settings, client: Any) -> None:
    from . import identities

    identities.record(settings, client.cache_key)


def _setup_logging(verbose: bool) -> None:
    """The library's log lines on stderr: warnings only (as ``tokensmith: warning: ...``), every line with
    ``--verbose``. Never a secret: the library logs none."""
    root = logging.getLogger("tokensmith")
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter("tokensmith: %(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.DEBUG)
    else:
        handler.setFormatter(logging.Formatter("tokensmith: warning: %(message)s"))
        handler.setLevel(logging.WARNING)
    root.addHandler(handler)
    root.propagate = False


def _settings_from(opts: dict[str, Any]) -> Settings:
    _setup_logging(bool(opts.pop("verbose", False)))
    flags = {k: v for k, v in opts.items() if v is not None}
    return resolve(flags)


def _identity_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that talks to an authorization server takes (flags > env > profile)."""
    assert click is not None
    options = [
        click.option("--profile", help="Named profile from the configuration file (TOKENSMITH_PROFILE)."),
        click.option("--issuer", help="Issuer URL; endpoints are discovered (TOKENSMITH_ISSUER)."),
        click.option("--token-endpoint", help="Token endpoint URL, instead of discovery."),
        click.option("--device-authorization-endpoint", help="RFC 8628 device authorization URL."),
        click.option("--authorization-endpoint", help="Authorization URL for browser logins, instead of discovery."),
        click.option(
            "--redirect-uri",
            help="Loopback redirect URI for browser logins (default http://127.0.0.1:<free port>/callback).",
        ),
        click.option("--revocation-endpoint", help="RFC 7009 revocation URL, instead of discovery."),
        click.option("--client-id", help="OAuth client id (TOKENSMITH_CLIENT_ID)."),
        click.option(
            "--client-secret-env",
            help=f"Environment variable holding the client secret (default: {DEFAULT_SECRET_ENV} if set).",
        ),
        click.option("--client-secret-file", help="File holding the client secret."),
        click.option("--client-secret-stdin", is_flag=True, default=None, help="Read the client secret from stdin."),
        click.option(
            "--auth-method",
            # The RFC 8414 names and hyphenated spellings are accepted too (normalised by cli.config).
            type=click.Choice((*AUTH_METHODS, *AUTH_METHOD_ALIASES)),
            metavar="[" + "|".join(AUTH_METHODS) + "]",
            help="Client authentication (default: basic; private_key_jwt with --private-key-file).",
        ),
        click.option("--basic-encoding", type=click.Choice(BASIC_ENCODINGS), help="How Basic encodes id and secret."),
        click.option(
            "--private-key-file",
            metavar="PATH",
            help="private_key_jwt: PEM or JWK (JSON) file of the client's private key (TOKENSMITH_PRIVATE_KEY_FILE).",
        ),
        click.option(
            "--private-key-password-env",
            metavar="VAR",
            help="Environment variable holding an encrypted PEM's password.",
        ),
        click.option(
            "--key-id", metavar="KID", help="kid of the client assertion (default: the JWK's, else the key thumbprint)."
        ),
        click.option(
            "--assertion-alg", metavar="ALG", help="Client assertion algorithm (default: the key's own; HS256)."
        ),
        click.option(
            "--assertion-audience",
            metavar="AUD",
            help="aud of the client assertion: endpoint (default), issuer (Auth0), or a URL.",
        ),
        click.option("--scope", "scope", multiple=True, help="Scope to request; repeat or space-separate."),
        click.option("--audience", help="Audience (Auth0)."),
        click.option("--resource", "resource", multiple=True, help="RFC 8707 resource indicator; may repeat."),
        click.option(
            "--flow",
            type=click.Choice(FLOWS),
            help="People: device, browser, or auto (a browser where one can open, else device, else paste). "
            "Services: client-credentials.",
        ),
        click.option("--store", type=click.Choice(STORES), help="Where tokens are kept (default: file)."),
        click.option("--store-dir", help="Token directory of the file store."),
        click.option("--ca-bundle", help="CA bundle (PEM) to verify the server with."),
        click.option(
            "--insecure-skip-tls-verify", is_flag=True, default=None, help="Do not verify TLS (test rigs only)."
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds for each request, and for a whole login.",
        ),
        click.option("--verbose", "-v", is_flag=True, help="Debug logging on stderr (never secrets)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _build() -> Any:
    assert click is not None

    @click.group(
        context_settings={"help_option_names": ["-h", "--help"]},
        epilog=EXIT_CODES_HELP.replace("\n", "\n\n\b\n", 1),  # \b after a blank line: not rewrapped
    )
    @click.version_option(package_name="tokensmith")
    def cli() -> None:
        """Log in once, then print a fresh OAuth 2.0 access token whenever asked.

        Tokens go to stdout; prompts, progress and errors to stderr. Settings: flags, then TOKENSMITH_*
        environment variables, then a profile in ~/.config/tokensmith/config.toml.
        """

    @cli.command()
    @_identity_options
    @click.option("--qr/--no-qr", default=None, help="Show a QR code (default: when stderr is a terminal).")
    @click.option("--browser/--no-browser", default=None, help="Open the browser (default: local display only).")
    def login(qr: bool | None, browser: bool | None, **opts: Any) -> None:
        """Sign in and store the token: device or browser flow for people (--flow), client credentials for
        services."""
        settings = _settings_from(opts)
        ui = _LazyPresenter(qr, browser)
        client = _client(settings, on_prompt=ui.show_prompt, on_progress=ui.on_progress)
        client.open_browser = browser  # --no-browser: a browser login only shows the link (auto: no browser here)
        ok = False
        try:
            if settings.grant == "client_credentials":
                token = client.fetch_client_credentials()
            else:
                token = client.login(login_timeout=settings.timeout)
            ok = True
        finally:
            ui.close(success=True if ok else None)
        _record(settings, client)
        left = "" if token.expires_at is None else f"; the access token is valid for {_duration(token.expires_at)}"
        refresh = ", renewable without you" if token.refresh_token else ""
        click.echo(f"Logged in ({settings.describe()}){left}{refresh}.", err=True)

    @cli.command()
    @_identity_options
    @click.option(
        "--min-valid",
        type=click.FloatRange(min=0),
        default=0.0,
        callback=_a_number,
        help="Renew unless valid this long (seconds).",
    )
    @click.option("--force-refresh", is_flag=True, help="Renew now, even if the cached token is valid.")
    @click.option("--interactive/--no-interactive", default=None, help="May start a login (default: on a terminal).")
    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="raw", show_default=True)
    def token(min_valid: float, force_refresh: bool, interactive: bool | None, fmt: str, **opts: Any) -> None:
        """Print a valid access token (renewing it, or logging in when allowed and needed)."""
        from .formats import exec_info, render

        settings = _settings_from(opts)
        api_version, exec_interactive = exec_info() if fmt == "exec-credential" else ("", None)
        if interactive is None:
            interactive = exec_interactive if exec_interactive is not None else _interactive_default()
        _check_stdout()
        found = _obtain(settings, interactive=interactive, min_valid=min_valid, force=force_refresh)
        now = time.time()
        if min_valid > 0 and found.expires_at is not None and found.expires_at - now < min_valid:
            # The best there is, so printed; but every call with this --min-valid goes to the server for it.
            sys.stderr.write(
                f"tokensmith: warning: the token is valid for {max(0, int(found.expires_at - now))} s, less than "
                f"--min-valid {min_valid:g} (no longer-lived one could be had), so every call with this --min-valid "
                "asks the server again\n"
            )
        text = render(
            fmt,
            found.access_token,
            found.token_type,
            found.expires_at,
            renew_at=found.must_refresh_at,
            now=now,
            api_version=api_version or "client.authentication.k8s.io/v1",
        )
        _print_token(text)

    @cli.command()
    @_identity_options
    @click.option("--all", "all_", is_flag=True, help="Every stored identity.")
    @click.option("--revoke/--no-revoke", default=True, show_default=True, help="Revoke at the server first.")
    def logout(all_: bool, revoke: bool, **opts: Any) -> None:
        """Revoke the refresh token at the server (RFC 7009) and delete it from the store."""
        from . import identities

        settings = _settings_from(opts)
        targets = [(i.to_settings(), i.key) for i in identities.recorded(settings)] if all_ else [(settings, None)]
        if all_ and not targets:
            click.echo("Nothing stored.", err=True)
        for target, key in targets:
            _logout_one(target, key, revoke=revoke)

    @cli.command()
    @_identity_options
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    def status(as_json: bool, **opts: Any) -> None:
        """Stored identities: profile, issuer, client, scopes, expiry, refresh. Never a token."""
        from . import identities

        settings = _settings_from(opts)
        rows: list[dict[str, Any]] = []
        now = time.time()
        for identity in identities.recorded(settings):
            target = identity.to_settings()
            stored = _store(target).load(identity.key)
            if stored is None:
                continue
            rows.append(
                {
                    "profile": target.profile,
                    "issuer": target.issuer or target.token_endpoint,
                    "client_id": target.client_id,
                    "scope": stored.scope or " ".join(target.scope) or None,
                    "expires_in": None if stored.expires_at is None else int(stored.expires_at - now),
                    "refresh_available": bool(stored.refresh_token),
                    "store": target.store,
                    "store_dir": target.store_dir,
                }
            )
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            click.echo("No stored tokens. Log in with: tokensmith login --issuer URL --client-id ID")
            return
        for row in rows:
            expires = row["expires_in"]
            state = "no expiry" if expires is None else ("expired" if expires <= 0 else f"expires in {expires} s")
            click.echo(
                f"{row['profile'] or '-'}\t{row['issuer']}\t{row['client_id']}\t{row['scope'] or '-'}\t{state}\t"
                f"refresh {'yes' if row['refresh_available'] else 'no'}\t{row['store']}"
            )

    @cli.command("git-credential")
    @_identity_options
    @click.option("--username", "git_username", help="User name git sends with the token (default: oauth2).")
    @click.option("--interactive/--no-interactive", default=None, help="May start a login (default: on a terminal).")
    @click.argument("action", metavar="get|store|erase")
    def git_credential(action: str, interactive: bool | None, **opts: Any) -> None:
        """git's credential helper. Set it up with (the `!` makes git run it as a command):

        \b
          git config credential.helper "!tokensmith git-credential --profile P"
        """
        if action not in ("get", "store", "erase"):
            # gitcredentials(7): "If a helper receives any other operation, it should silently ignore the request",
            # so that git can add operations without older helpers failing them.
            return
        from . import fast
        from .formats import git_answer, parse_git_request

        text = fast.git_request_text if fast.git_request_text is not None else sys.stdin.read()
        request = parse_git_request(text)
        settings = _settings_from(opts)
        if action == "store":
            return  # never keep a git-supplied secret: the token is ours, and stored already
        if action == "erase":
            _git_erase(settings, request)
            return
        if interactive is None:
            try:
                interactive = sys.stderr.isatty()  # git owns stdin; the prompt goes to the terminal on stderr
            except (AttributeError, ValueError):
                interactive = False
        _check_stdout()
        found = _obtain(settings, interactive=interactive, min_valid=0.0, force=False)
        _print_token(git_answer(request, found.access_token, found.expires_at, settings.git_username))

    @cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
    @_identity_options
    @click.argument("curl_args", nargs=-1, type=click.UNPROCESSED)
    def curl(curl_args: tuple[str, ...], **opts: Any) -> None:
        """Run curl with the token as a header fed on stdin (never in argv): tokensmith curl -- URL ..."""
        settings = _settings_from(opts)
        found = _obtain(settings, interactive=_interactive_default(), min_valid=0.0, force=False)
        args = list(curl_args[1:] if curl_args[:1] == ("--",) else curl_args)
        command = ["curl", "-H", "@-", *args]
        try:
            proc = subprocess.run(  # noqa: S603 - the user's own arguments, no shell
                command, input=f"Authorization: Bearer {found.access_token}\n", text=True
            )
        except FileNotFoundError:
            raise click.UsageError("curl was not found on PATH") from None
        raise SystemExit(proc.returncode)

    @cli.command("help")
    @click.argument("topic", type=click.Choice(["exit-codes", "config", "completion"]))
    def help_(topic: str) -> None:
        """More help: exit-codes, config, completion."""
        if topic == "exit-codes":
            click.echo(EXIT_CODES_HELP, nl=False)
        elif topic == "config":
            from . import config

            # The module's docstring, as a person reads it: without the paragraph for developers, nor reST markup.
            paragraphs = (config.__doc__ or "").strip().split("\n\n")
            text = "\n\n".join(p for p in paragraphs if not p.startswith("Standard library only"))
            click.echo(text.replace("``", "`").replace(")::\n", "):\n"))
            click.echo(f"\nThis machine's file: {config.config_path()}")
        else:
            click.echo(
                "Shell completion (click):\n"
                '  bash: eval "$(_TOKENSMITH_COMPLETE=bash_source tokensmith)"\n'
                '  zsh:  eval "$(_TOKENSMITH_COMPLETE=zsh_source tokensmith)"\n'
                "  fish: _TOKENSMITH_COMPLETE=fish_source tokensmith | source"
            )

    @cli.command("device-login")
    @click.option("--device-authorization-endpoint", required=True, help="RFC 8628 device authorization URL.")
    @click.option("--token-endpoint", required=True, help="Token endpoint URL.")
    @click.option("--client-id", required=True)
    @click.option(
        "--client-secret-env",
        default=DEFAULT_SECRET_ENV,
        show_default=True,
        help="Environment variable holding the client secret, for confidential clients (Google).",
    )
    @click.option("--auth-method", type=click.Choice(["basic", "post"]), default="basic", show_default=True)
    @click.option(
        "--basic-encoding",
        type=click.Choice(["rfc6749", "secret_only", "raw"]),
        default="rfc6749",
        show_default=True,
        help="How the Basic header encodes id and secret (servers disagree).",
    )
    @click.option("--scope", "scopes", multiple=True, help="Scope to request; repeat or space-separate.")
    @click.option("--audience", help="Audience (Auth0).")
    @click.option("--resource", "resources", multiple=True, help="RFC 8707 resource indicator; may repeat.")
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        help="Give up after this many seconds in all, the first request included (default: when the code expires).",
    )
    @click.option("--qr/--no-qr", default=None, help="Show a QR code (default: when stderr is a terminal).")
    @click.option(
        "--browser/--no-browser",
        default=None,
        help="Open the browser (default: only with a local display and not over SSH).",
    )
    def device_login(**opts: Any) -> None:
        """Sign in with the device authorization grant and print the access token."""
        _check_stdout()
        from .._transport import DEFAULT_TIMEOUT, Transport, total_deadline
        from ..device import device_login as run
        from .presenter import TerminalPresenter

        limit: float | None = opts["timeout"]
        transport = None
        if limit is not None:
            # --timeout bounds the whole login: every request (the first one included) gets at most that long.
            connect, read = DEFAULT_TIMEOUT
            transport = Transport(
                timeout=(min(connect, limit), min(read, limit)),
                total_timeout=min(total_deadline(DEFAULT_TIMEOUT), limit),
            )

        auth = _client_auth(opts["client_id"], opts["client_secret_env"], opts["auth_method"], opts["basic_encoding"])
        cancel = threading.Event()
        with TerminalPresenter(sys.stderr, qr=opts["qr"], open_browser=opts["browser"]) as presenter:
            token = run(
                opts["device_authorization_endpoint"],
                opts["token_endpoint"],
                auth,
                on_prompt=presenter.show_prompt,
                on_progress=presenter.on_progress,
                scope=list(opts["scopes"]) or None,
                audience=opts["audience"],
                resource=list(opts["resources"]) or None,
                login_timeout=limit,
                transport=transport,
                cancel=cancel,
            )
        _print_token(token.access_token + "\n")

    return cli


def _a_number(ctx: Any, param: Any, value: float) -> float:
    """click's FloatRange lets ``nan`` through (no comparison with it is true)."""
    if value != value:
        raise click.BadParameter("nan is not a number of seconds", ctx=ctx, param=param)
    return value


def _duration(expires_at: float) -> str:
    seconds = max(0, int(expires_at - time.time()))
    return f"{seconds // 60} min" if seconds >= 120 else f"{seconds} s"


def _obtain(settings: Settings, *, interactive: bool, min_valid: float, force: bool) -> Any:
    """A token by the library's rules (store, refresh, client credentials, login when allowed); recorded."""
    ui = _LazyPresenter()
    client = _client(settings, on_prompt=ui.show_prompt, on_progress=ui.on_progress)
    ok = False
    try:
        if force:
            token = client.fetch_client_credentials() if settings.grant == "client_credentials" else client.refresh()
        else:
            token = client.get_token(interactive=interactive, min_valid=min_valid)
        ok = True
    except LoginRequired as error:
        if force and interactive and settings.grant != "client_credentials":
            token = client.login(login_timeout=settings.timeout)
            ok = True
        else:
            raise LoginRequired(
                f"login required for {settings.describe()}: run `{_login_command(settings)}`"
            ) from error
    finally:
        ui.close(success=True if ok else None)
    _record(settings, client)
    return token


def _logout_one(settings: Settings, key: str | None, *, revoke: bool) -> None:
    from ..revocation import logout as drop
    from . import identities

    assert click is not None
    client = _client(settings)
    endpoint = settings.revocation_endpoint
    revoked = revoke
    if revoke and endpoint is None and client.store.load(client.cache_key) is not None:
        try:
            metadata = client.discover()
        except DiscoveryError:
            metadata = None
        if metadata is None or metadata.revocation_endpoint is None:
            revoked = False
            click.echo(
                f"tokensmith: {settings.describe()}: the server offers no revocation endpoint; the token is only "
                "deleted here (pass --revocation-endpoint if it has one)",
                err=True,
            )
    removed = drop(client, revoke_at_server=revoked, endpoint=endpoint)
    identities.forget(settings, key or client.cache_key)
    if removed is None:
        click.echo(f"Nothing stored for {settings.describe()}.", err=True)
    else:
        how = "revoked at the server and deleted" if revoked else "deleted"
        click.echo(f"Logged out of {settings.describe()} (token {how}).", err=True)


def _git_erase(settings: Settings, request: dict[str, list[str]]) -> None:
    """git says the credential it used was rejected: if that is our current token, renew it now (no login; a
    failure here is silent, the next ``get`` reports it). git's own secret is never stored."""
    rejected = next(iter(request.get("password") or request.get("credential") or []), None)
    if not rejected:
        return
    try:
        client = _client(settings)
        current = client.store.load(client.cache_key)
        if current is not None and current.access_token == rejected:
            client.get_token(stale=current, interactive=False)
    except (TokensmithError, ConfigError):
        return


def main(argv: Sequence[str] | None = None) -> int:
    """The full command line (``tokensmith.cli.fast.main`` calls it for everything it does not answer itself).
    Returns the exit status; see ``EXIT_CODES_HELP``."""
    if click is None:
        sys.stderr.write("tokensmith: the command line needs click: pip install 'tokensmith[cli]'\n")
        return EXIT_USAGE
    try:
        _build().main(args=list(argv) if argv is not None else None, prog_name="tokensmith", standalone_mode=False)
    except KeyboardInterrupt:
        sys.stderr.write("\ntokensmith: interrupted\n")
        return EXIT_INTERRUPTED
    except click.exceptions.Abort:
        sys.stderr.write("\ntokensmith: interrupted\n")
        return EXIT_INTERRUPTED
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.UsageError as error:
        if isinstance(error, getattr(click.exceptions, "NoArgsIsHelpError", ())):
            error.show()  # plain `tokensmith`: the help itself is the answer
            return EXIT_USAGE
        # One line, like every other failure: what is wrong, and where to read more.
        where = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        sys.stderr.write(f"tokensmith: {' '.join(error.format_message().split())}{where}\n")
        return EXIT_USAGE
    except click.ClickException as error:
        error.show()
        return EXIT_USAGE
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else EXIT_ERROR
    except _StdoutUnavailable as error:
        _silence_stdout()
        sys.stderr.write(f"tokensmith: cannot write the token to stdout ({error.reason}); nothing was printed\n")
        return EXIT_ERROR
    except (ConfigError, ExecInfoError) as error:
        sys.stderr.write(f"tokensmith: {error}\n")
        return EXIT_USAGE
    except LoginRequired as error:
        from .presenter import printable

        sys.stderr.write(f"tokensmith: {printable(str(error), limit=None)}\n")
        return EXIT_LOGIN_REQUIRED
    except (TokensmithError, ValueError) as error:
        message = _explain(error) if isinstance(error, TokensmithError) else str(error)
        sys.stderr.write(f"tokensmith: {message}\n")
        return _exit_code(error)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
