"""Command-line configuration: flags > ``TOKENSMITH_*`` environment variables > a named profile in a TOML file.

Standard library only, and cheap: the cached-token path (``tokensmith token``, run by kubectl and git on every
call) resolves its settings with this module before anything else is imported.

The file is ``$TOKENSMITH_CONFIG``, else ``$XDG_CONFIG_HOME/tokensmith/config.toml`` (``~/.config/...``;
``%APPDATA%\\tokensmith\\config.toml`` on Windows)::

    default_profile = "dev"

    [profiles.dev]
    issuer = "http://127.0.0.1:9400"
    client_id = "device-public"
    scope = "openid offline_access"

Secrets never live in it (nor on the command line): a profile names where the secret is, with
``client_secret_env`` or ``client_secret_file``.

Secretless client authentication (services, CI jobs): ``private_key_file = "/path/key.pem"`` (PEM, or a private
JWK as JSON; ``TOKENSMITH_PRIVATE_KEY_FILE``, ``--private-key-file``) signs a short-lived assertion per request
(``auth_method = "private_key_jwt"``, implied by the key file; ``private-key-jwt`` is accepted too). The
cached-token fast path never reads the key. An encrypted PEM's password comes from the
variable named by ``private_key_password_env``. ``key_id`` sets the assertion's ``kid`` (default: the JWK's, else
the key's RFC 7638 thumbprint), ``assertion_alg`` its algorithm (default: the key's own, RS256 / ES256 / ...),
``assertion_audience`` its ``aud``: ``endpoint`` (default: the URL called, RFC 7523 §3), ``issuer`` (Auth0 wants
its tenant URL, the issuer), or a URL.
``auth_method = "client_secret_jwt"`` MACs the assertion with the client secret (from the usual sources; HS256
unless ``assertion_alg``). The key file should be readable by its owner only: a group- or world-readable one
is used, with a warning (CI secret mounts are often 0644).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing (nor dataclasses) import on the fast path
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

ENV_PREFIX = "TOKENSMITH_"
#: Read for the secret when nothing else names a source.
DEFAULT_SECRET_ENV = "TOKENSMITH_CLIENT_SECRET"

FLOWS = ("device", "browser", "auto", "client-credentials")
STORES = ("file", "keyring")
AUTH_METHODS = ("basic", "post", "private_key_jwt", "client_secret_jwt")
#: Other spellings of the methods: the CLI's hyphenated style and the RFC 8414 names IdP consoles show.
AUTH_METHOD_ALIASES = {
    "private-key-jwt": "private_key_jwt",
    "client-secret-jwt": "client_secret_jwt",
    "client_secret_basic": "basic",
    "client-secret-basic": "basic",
    "client_secret_post": "post",
    "client-secret-post": "post",
}
#: The assertion algorithms (RFC 7518) each JWT method may use; the library's own lists (``_protocol.jwt_assertion``,
#: not imported here: this module is on the fast path) are the final word, and a unit test keeps the two equal.
PRIVATE_KEY_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
SECRET_JWT_ALGS = ("HS256", "HS384", "HS512")
#: Profile keys that would hold a secret, and the setting that names where it is instead.
_SECRET_KEYS = {
    "client_secret": 'client_secret_env = "VAR" or client_secret_file = "/path"',
    "secret": 'client_secret_env = "VAR" or client_secret_file = "/path"',
    "password": 'client_secret_env = "VAR" or client_secret_file = "/path"',
    "private_key": 'private_key_file = "/path/key.pem"',
    "private_key_password": 'private_key_password_env = "VAR"',
}
BASIC_ENCODINGS = ("rfc6749", "secret_only", "raw")


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting and where it came from."""


class Settings:
    """Everything a command needs to know, resolved. Secrets are not here: only where to find one.

    A plain class (class attributes are the defaults), not a dataclass: this module is on the fast path."""

    profile: str | None = None
    issuer: str | None = None
    token_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    authorization_endpoint: str | None = None
    redirect_uri: str | None = None
    revocation_endpoint: str | None = None
    client_id: str | None = None
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    client_secret_stdin: bool = False
    auth_method: str = "basic"
    basic_encoding: str = "rfc6749"
    private_key_file: str | None = None
    private_key_password_env: str | None = None
    key_id: str | None = None
    assertion_alg: str | None = None
    assertion_audience: str | None = None
    scope: tuple[str, ...] = ()
    audience: str | None = None
    resource: tuple[str, ...] = ()
    flow: str | None = None
    store: str = "file"
    store_dir: str | None = None
    ca_bundle: str | None = None
    insecure_skip_tls_verify: bool = False
    timeout: float | None = None
    git_username: str = "oauth2"

    def __init__(self, *, origin: Mapping[str, str] | None = None, **values: Any) -> None:
        for name, value in values.items():
            if name not in SETTING_NAMES and name != "profile":
                raise TypeError(f"unknown setting {name!r}")
            setattr(self, name, value)
        #: Where each value came from ("flag", "env", "profile <name>"), for error messages.
        self.origin: Mapping[str, str] = dict(origin or {})

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in ("profile", *sorted(SETTING_NAMES)))
        return f"Settings({shown})"

    @property
    def secret_configured(self) -> bool:
        """Whether a client secret is to be used (without reading it)."""
        if self.client_secret_stdin or self.client_secret_file:
            return True
        return bool(os.environ.get(self.client_secret_env or DEFAULT_SECRET_ENV))

    @property
    def confidential(self) -> bool:
        """Whether the client authenticates: a secret or a private key (without reading either)."""
        return bool(self.private_key_file) or self.secret_configured

    @property
    def grant(self) -> str:
        """The TokenClient grant: the explicit flow, else client credentials for a confidential client."""
        flow = self.flow or ("client-credentials" if self.confidential else "device")
        return "client_credentials" if flow == "client-credentials" else "device_code"

    def describe(self) -> str:
        """A short "which identity" for messages: profile, else issuer and client."""
        if self.profile:
            return f"profile {self.profile!r}"
        return f"{self.issuer or self.token_endpoint} / client {self.client_id}"

    def _named(self, name: str) -> str:
        """``--flag`` and where its value came from, for messages."""
        return f"--{name.replace('_', '-')} ({self.origin.get(name, 'the settings')})"

    def check_client_auth(self) -> None:
        """``ConfigError`` for client authentication settings that cannot work together. Cheap and without reading
        any file, so the cached-token path refuses exactly what the full command line refuses."""
        method = self.auth_method
        if method == "private_key_jwt" and not self.private_key_file:
            raise ConfigError(
                "auth method private_key_jwt needs a private key: pass --private-key-file PATH, set "
                "TOKENSMITH_PRIVATE_KEY_FILE, or put private_key_file in a profile"
            )
        if self.private_key_file and method != "private_key_jwt":
            raise ConfigError(
                f"a private key file ({self.origin.get('private_key_file', 'the settings')}) is only used by "
                f"private_key_jwt, but the auth method is {method} ({self.origin.get('auth_method', 'default')}); "
                "drop one of them"
            )
        if self.private_key_password_env:
            if not self.private_key_file:
                raise ConfigError(
                    f"{self._named('private_key_password_env')} is for an encrypted private key file, and none is "
                    "given (--private-key-file)"
                )
            if not os.environ.get(self.private_key_password_env):
                raise ConfigError(
                    f"the private key password variable {self.private_key_password_env} (from "
                    f"{self.origin.get('private_key_password_env', 'the settings')}) is not set or empty; export it, "
                    "or drop private_key_password_env for an unencrypted key"
                )
        if self.key_id is not None and method != "private_key_jwt":
            raise ConfigError(f"{self._named('key_id')} is only used by private_key_jwt (auth method: {method})")
        if self.assertion_alg is not None:
            allowed = {"private_key_jwt": PRIVATE_KEY_ALGS, "client_secret_jwt": SECRET_JWT_ALGS}.get(method)
            if allowed is None:
                raise ConfigError(
                    f"{self._named('assertion_alg')} is only used by private_key_jwt and client_secret_jwt "
                    f"(auth method: {method})"
                )
            if self.assertion_alg.lower() == "none":
                raise ConfigError("an unsigned client assertion (alg none) is refused (RFC 7523 §3)")
            if self.assertion_alg not in allowed:
                raise ConfigError(
                    f"{self._named('assertion_alg')}: {self.assertion_alg!r} is not one of {', '.join(allowed)} "
                    f"(for {method})"
                )
        if self.assertion_audience is not None:
            if method not in ("private_key_jwt", "client_secret_jwt"):
                raise ConfigError(
                    f"{self._named('assertion_audience')} is only used by private_key_jwt and client_secret_jwt "
                    f"(auth method: {method})"
                )
            if not self.assertion_audience.strip():
                raise ConfigError(f"{self._named('assertion_audience')} is empty")
            if self.assertion_audience == "issuer" and not self.issuer:
                raise ConfigError(
                    f"{self._named('assertion_audience')} is 'issuer', but no issuer is given: pass --issuer, or "
                    "the audience the server expects as a URL"
                )
        if (
            method == "client_secret_jwt"
            and not (self.client_secret_stdin or self.client_secret_file or self.client_secret_env)
            and not os.environ.get(DEFAULT_SECRET_ENV)
        ):
            raise ConfigError(
                "auth method client_secret_jwt needs the client secret: --client-secret-env VAR, "
                f"--client-secret-file PATH, --client-secret-stdin, or {DEFAULT_SECRET_ENV}"
            )

    def require(self) -> None:
        """``ConfigError`` unless there is enough to talk to an authorization server."""
        if not self.client_id:
            raise ConfigError("no client id: pass --client-id, set TOKENSMITH_CLIENT_ID, or put client_id in a profile")
        if not self.issuer and not self.token_endpoint:
            raise ConfigError(
                "no authorization server: pass --issuer (or --token-endpoint), set TOKENSMITH_ISSUER, or put "
                "issuer in a profile"
            )


#: The settings a flag, an environment variable or a profile may give, in the order --help lists them.
SETTINGS = (
    "issuer",
    "token_endpoint",
    "device_authorization_endpoint",
    "authorization_endpoint",
    "redirect_uri",
    "revocation_endpoint",
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "client_secret_stdin",
    "auth_method",
    "basic_encoding",
    "private_key_file",
    "private_key_password_env",
    "key_id",
    "assertion_alg",
    "assertion_audience",
    "scope",
    "audience",
    "resource",
    "flow",
    "store",
    "store_dir",
    "ca_bundle",
    "insecure_skip_tls_verify",
    "timeout",
    "git_username",
)
SETTING_NAMES = frozenset(SETTINGS)
_KEYS = SETTING_NAMES
_TUPLES = {"scope", "resource"}
_BOOLS = {"client_secret_stdin", "insecure_skip_tls_verify"}
_CHOICES = {"flow": FLOWS, "store": STORES, "auth_method": AUTH_METHODS, "basic_encoding": BASIC_ENCODINGS}
#: File and directory names: taken as given (the operating system says whether they exist).
_PATHS = {"client_secret_file", "private_key_file", "store_dir", "ca_bundle"}
#: URLs the client sends requests (or the person) to; the library checks the rest (TLS, credentials, ...).
_ENDPOINTS = {
    "issuer",
    "token_endpoint",
    "device_authorization_endpoint",
    "authorization_endpoint",
    "revocation_endpoint",
}


def config_path(environ: Mapping[str, str] = os.environ) -> str:
    explicit = environ.get(ENV_PREFIX + "CONFIG")
    if explicit:
        return explicit
    if sys.platform == "win32":
        base = environ.get("APPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Roaming")
    else:
        base = environ.get("XDG_CONFIG_HOME") or ""
        if not os.path.isabs(base):
            base = os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "tokensmith", "config.toml")


#: A configuration file is a few kilobytes.
CONFIG_FILE_LIMIT = 1024 * 1024
#: How long a pipe given as a file (``--client-secret-file <(vault read ...)``) may take to deliver its content.
PIPE_WAIT = 10.0


def read_small_file(path: str, what: str, limit: int) -> tuple[bytes, int]:
    """At most ``limit`` + 1 bytes of a regular file, or of a pipe (process substitution), and its mode. Never
    blocks on a FIFO nobody writes to (its read is an immediate end of file, so "empty"), a FIFO whose writer is
    silent (``PIPE_WAIT``), or a device; a directory, device or socket is refused. ``ConfigError`` otherwise."""
    import select
    import stat
    import time

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise ConfigError(f"{what} {path} is {kind}")
        chunks: list[bytes] = []
        size, deadline = 0, time.monotonic() + PIPE_WAIT
        while size <= limit:
            try:
                chunk = os.read(fd, limit + 1 - size)
            except BlockingIOError:  # a pipe whose writer has not written yet
                remaining = deadline - time.monotonic()
                if remaining <= 0 and chunks:
                    break  # a writer that keeps the pipe open: what it wrote is the content
                if remaining <= 0:
                    raise ConfigError(f"nothing arrived from {what} {path} (a pipe nobody writes to?)") from None
                select.select([fd], [], [], remaining)
                continue
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), mode
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None
    finally:
        os.close(fd)


def load_config_file(path: str) -> dict[str, Any]:
    """The parsed file, or ``{}`` if there is none. ``ConfigError`` for a file that cannot be read or parsed."""
    if not os.path.lexists(path):
        return {}
    data, _ = read_small_file(path, "the configuration file", CONFIG_FILE_LIMIT)
    if len(data) > CONFIG_FILE_LIMIT:
        raise ConfigError(f"the configuration file {path} is too large (over {CONFIG_FILE_LIMIT // 1024} KiB)")
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]
    # The error is raised outside the handler: a UnicodeDecodeError holds the whole file (secrets included) and
    # would otherwise stay on the ConfigError as its context.
    problem = None
    try:
        parsed: dict[str, Any] = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        problem = "not UTF-8 text"
    except tomllib.TOMLDecodeError as error:
        problem = str(error)  # where, never what: tomllib quotes no content
    if problem is not None:
        raise ConfigError(f"the configuration file {path} is not valid TOML: {problem}")
    return parsed


def _stray_character(value: str) -> str | None:
    """``U+XXXX at position N`` for the first character that has no place in a setting's value: a control, format
    (zero-width) or non-ASCII space anywhere, any whitespace at either end (a Kubernetes secret mounted as a variable
    keeps the newline ``echo`` wrote; a value pasted from a web page brings U+00A0). None when there is none."""
    for index, ch in enumerate(value):
        if not ch.isprintable() or (ch.isspace() and (index == 0 or index == len(value) - 1)):
            return f"U+{ord(ch):04X} at position {index + 1}"
    return None


def _coerce(name: str, value: Any, where: str) -> Any:
    if name in _TUPLES:
        if isinstance(value, str):
            parts = tuple(value.split())
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            parts = tuple(part for v in value for part in v.split())
        else:
            raise ConfigError(f"{name} ({where}) must be a string or a list of strings")
        for part in parts:
            # RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ); a resource is a URL (printable).
            bad = (
                any(not ("!" <= ch <= "~") or ch in '"\\' for ch in part)
                if name == "scope"
                else _stray_character(part) is not None
            )
            if bad:
                what = 'an RFC 6749 §3.3 scope token (printable ASCII, no " or \\)' if name == "scope" else "a URL"
                raise ConfigError(f"{name} ({where}): {part[:80]!r} is not {what}")
        return parts
    if name in _BOOLS:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no", ""):
            return value.lower() in ("1", "true", "yes")
        raise ConfigError(f"{name} ({where}) must be true or false")
    if name == "timeout":
        if isinstance(value, bool):  # TOML true is not one second
            raise ConfigError(f"timeout ({where}) must be a number of seconds")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"timeout ({where}) must be a number of seconds") from None
        if not number > 0 or number == float("inf"):
            raise ConfigError(f"timeout ({where}) must be a positive number of seconds")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{name} ({where}) must be a string")
    if name not in _PATHS:
        stray = _stray_character(value)
        if stray is not None:
            raise ConfigError(
                f"{name} ({where}) has whitespace or invisible characters where none belong ({stray}); remove them"
            )
    if name in _ENDPOINTS and value:
        if "://" not in value:
            raise ConfigError(f"{name} ({where}) must be an absolute https:// URL, not {value[:200]!r}")
        if name == "issuer" and ("?" in value or "#" in value):
            raise ConfigError(f"issuer ({where}): an issuer identifier has no query or fragment (RFC 8414 §2)")
    if name == "auth_method":
        value = AUTH_METHOD_ALIASES.get(value, value)
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ConfigError(f"{name} ({where}) must be one of {', '.join(_CHOICES[name])}, not {value!r}")
    return value


def resolve(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
    *,
    file_data: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from ``flags`` (None means "not given"), then the environment, then the profile.

    The profile is ``flags["profile"]``, else ``TOKENSMITH_PROFILE``, else the file's ``default_profile``; a
    profile named by any of them must exist. Unknown keys in a profile are errors (a typo must not be ignored), and
    so is a secret written into the file."""
    data = load_config_file(config_path(environ)) if file_data is None else dict(file_data)
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError("the configuration file's [profiles] must be a table of tables")
    named = flags.get("profile") or environ.get(ENV_PREFIX + "PROFILE") or None
    profile_name = named or data.get("default_profile") or None
    if profile_name is not None and not isinstance(profile_name, str):
        raise ConfigError("default_profile must be a string")
    profile: Mapping[str, Any] = {}
    if profile_name is not None:
        found = profiles.get(profile_name)
        if found is None:
            known = ", ".join(sorted(profiles)) or "none defined"
            if named:
                raise ConfigError(f"no profile {profile_name!r} in {config_path(environ)} (profiles: {known})")
            # A typo here must not silently drop every setting of the profile meant.
            raise ConfigError(
                f"default_profile {profile_name!r} in {config_path(environ)} names no profile (profiles: {known})"
            )
        elif not isinstance(found, dict):
            raise ConfigError(f"profile {profile_name!r} must be a table")
        else:
            profile = found
    for key in profile:
        if key in _SECRET_KEYS:
            raise ConfigError(
                f"profile {profile_name!r} holds a secret ({key}); name its source instead: {_SECRET_KEYS[key]}"
            )
        if key not in _KEYS:
            raise ConfigError(f"profile {profile_name!r}: unknown setting {key!r}")
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name in _KEYS:
        flag = flags.get(name)
        if flag is not None and flag != () and flag is not False:
            values[name], origin[name] = _coerce(name, flag, "--" + name.replace("_", "-")), "flag"
            continue
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value not in (None, ""):
            values[name], origin[name] = _coerce(name, env_value, ENV_PREFIX + name.upper()), "env"
            continue
        if name in profile:
            values[name] = _coerce(name, profile[name], f"profile {profile_name!r}")
            origin[name] = f"profile {profile_name}"
    if "auth_method" not in values and values.get("private_key_file"):
        # A key file alone means private_key_jwt (what else would it be for); recorded as such for status/logout.
        values["auth_method"], origin["auth_method"] = "private_key_jwt", origin["private_key_file"]
    return Settings(profile=profile_name, origin=origin, **values)
