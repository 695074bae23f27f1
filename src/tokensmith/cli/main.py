"""``tokensmith``: print a fresh access token on stdout; everything for the person goes to stderr.

Secrets never come from argv (visible in ``ps``): the client secret is read from an environment variable.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

try:
    import click
except ImportError:  # pragma: no cover - exercised only without the extra
    click = None  # type: ignore[assignment]

from ..exceptions import (
    AccessDenied,
    DeviceFlowCancelled,
    DeviceFlowTimeout,
    ExpiredToken,
    InvalidClient,
    NonJSONResponse,
    TokensmithError,
    TransportError,
)

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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


DEFAULT_SECRET_ENV = "TOKENSMITH_CLIENT_SECRET"


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
        hint = (
            "; check --client-id and the secret in the variable named by --client-secret-env, "
            "or try --auth-method post / --basic-encoding"
        )
    elif isinstance(error, TransportError):
        hint = "; check the URL, your network and any proxy (HTTPS_PROXY, NO_PROXY), or raise --timeout"
    elif isinstance(error, NonJSONResponse):
        hint = "; check the endpoint URL: something other than the authorization server answered"
    # The message may quote the server (error_description): no terminal controls, bidi or zero-width characters.
    return printable(f"{type(error).__name__}: {error}{hint}", limit=None)


def _build() -> Any:
    assert click is not None

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="tokensmith")
    def cli() -> None:
        """Fetch OAuth 2.0 tokens. The token goes to stdout; prompts and progress go to stderr."""

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


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point. Returns the exit status: 0 ok, 1 failed, 2 usage, 130 interrupted."""
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
    except click.ClickException as error:
        error.show()
        return EXIT_USAGE
    except _StdoutUnavailable as error:
        _silence_stdout()
        sys.stderr.write(f"tokensmith: cannot write the token to stdout ({error.reason}); nothing was printed\n")
        return EXIT_ERROR
    except (TokensmithError, ValueError) as error:
        message = _explain(error) if isinstance(error, TokensmithError) else str(error)
        sys.stderr.write(f"tokensmith: {message}\n")
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
