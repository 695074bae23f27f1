"""A terminal UI for device login: the link, the user code, a QR code, a live status line.

Everything goes to one stream (stderr by default) so stdout stays free for the token. The core never prints;
it calls ``show_prompt`` and ``on_progress`` (see ``tokensmith.device.device_login``).
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import shutil
import sys
import threading
import time
import unicodedata
import webbrowser
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlsplit

from .._protocol.polling import PollOutcome
from .._protocol.urls import is_loopback_host
from .._threads import start_daemon
from ..device import DevicePrompt, PollProgress

if TYPE_CHECKING:
    from ..browser import BrowserPrompt

logger = logging.getLogger("tokensmith.cli")

_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

#: At most this many characters of one server string are shown (a user code is ~9, a link ~100).
SHOWN_LIMIT = 300
#: Unicode categories never shown: controls (C0, DEL, C1), format characters (bidi overrides and isolates,
#: zero-width space/joiners, BOM, soft hyphen, tags), lone surrogates, and line/paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: Letters that render as nothing (Hangul fillers) and the combining grapheme joiner.
_HIDDEN_CHARS = frozenset("\u115f\u1160\u3164\uffa0\u034f")
#: Lifetimes beyond this are shown as "more than a day", without a clock time or countdown.
_ONE_DAY = 24 * 3600


def printable(text: str, limit: int | None = SHOWN_LIMIT) -> str:
    """``text`` made safe to show on a terminal: without control, format (bidi, zero-width) and line-separator
    characters, so a server-supplied code or link can neither drive the terminal (escape injection) nor disguise
    itself; cut to ``limit`` characters with an ellipsis (``None``: no limit)."""
    kept: list[str] = []
    for ch in text:
        if ch in _HIDDEN_CHARS or unicodedata.category(ch) in _HIDDEN_CATEGORIES:
            continue
        if limit is not None and len(kept) >= limit:
            return "".join(kept) + "…"
        kept.append(ch)
    return "".join(kept)


def may_open_in_browser(url: str) -> bool:
    """True for a link the presenter may hand to a browser: ``https://``, or ``http://`` to a loopback host;
    printable ASCII only (no whitespace, control, format or look-alike characters), no leading ``-`` (it would
    be an option to the browser command), no backslash (browsers read it as ``/``, so the host they see could
    differ from the one checked here) and no user name or password before the host. Everything else
    (``file:``, ``javascript:``, ``data:``, ...) is only shown."""
    if not url or url.startswith("-") or "\\" in url or not all("!" <= ch <= "~" for ch in url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    if not host or parts.username is not None or parts.password is not None:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host))


def is_remote_session(environ: Mapping[str, str]) -> bool:
    return any(environ.get(v) for v in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY"))


def has_local_display(environ: Mapping[str, str], platform: str = sys.platform) -> bool:
    """True when a browser opened here would appear in front of the person: not over SSH, and a desktop exists
    (macOS/Windows, or an X11/Wayland display, or WSL with ``wslview``)."""
    if is_remote_session(environ):
        return False
    if platform in ("darwin", "win32"):
        return True
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY") or environ.get("BROWSER"):
        return True
    return bool(environ.get("WSL_DISTRO_NAME") and shutil.which("wslview"))


def render_qr(data: str, *, border: int = 2) -> str | None:
    """A compact (half-block) QR code as text, or None when ``segno`` is not installed or cannot encode ``data``
    (too long for a QR code: ``DataOverflowError``). A QR code is a convenience: no failure here ends a login."""
    try:
        import segno
    except ImportError:
        logger.debug("segno not installed (pip install 'tokensmith[qr]'); no QR code shown")
        return None
    buffer = io.StringIO()
    try:
        segno.make(data, error="l", micro=False).terminal(out=buffer, border=border, compact=True)
    except Exception as error:
        logger.debug("no QR code shown: %s", type(error).__name__)
        return None
    return buffer.getvalue()


class TerminalPresenter:
    """Shows a ``DevicePrompt`` and polling progress on a terminal.

    Defaults follow the stream: on a TTY, a QR code (when it fits), a live status line and colour (unless
    ``NO_COLOR`` is set or ``TERM=dumb``); otherwise plain lines only. The browser is opened only when there is a
    local display and the session is not over SSH, from a background thread so it can never block the login,
    and only for a link that passes ``may_open_in_browser`` (the same rule decides whether a QR code is shown).
    Server text is shown through ``printable``.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        qr: bool | None = None,
        open_browser: bool | None = None,
        color: bool | None = None,
        live: bool | None = None,
        environ: Mapping[str, str] | None = None,
        browser_opener: Callable[[str], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        env = os.environ if environ is None else environ
        tty = _isatty(self.stream)
        self.qr = tty if qr is None else qr
        self.live = tty if live is None else live
        self.color = (tty and not env.get("NO_COLOR") and env.get("TERM") != "dumb") if color is None else color
        self.open_browser = (tty and has_local_display(env)) if open_browser is None else open_browser
        self._browser_opener = browser_opener or _open_in_browser
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._prompt: DevicePrompt | None = None
        self._status = "Waiting for approval"
        self._status_shown = False
        self._closed = False

    # -- callbacks for device_login ----------------------------------------------------------------------

    def show_prompt(self, prompt: DevicePrompt | BrowserPrompt) -> None:
        """Show what the person must do: a device flow's link and code, or a browser login's link."""
        if not isinstance(prompt, DevicePrompt):
            self._show_browser_prompt(prompt)
            return
        self._prompt = prompt
        uri = printable(prompt.verification_uri)
        code = printable(prompt.user_code)
        raw_complete = prompt.verification_uri_complete
        lines = [
            "",
            "To sign in, open this page in a browser:",
            "",
            f"    {self._style(uri, '4')}",
            "",
            "and enter the code:",
            "",
            f"    {self._style(code, '1')}",
            "",
        ]
        complete = printable(raw_complete) if raw_complete else None
        if raw_complete and self.qr and may_open_in_browser(raw_complete):
            block = render_qr(raw_complete)
            if block is not None and _width(block) <= _columns(self.stream):
                lines += ["Or scan this QR code (check that the page shows the same code):", block.rstrip("\n"), ""]
        if complete:
            lines += [f"Link with the code filled in: {complete}", ""]
        lines.append(_expiry_text(prompt.expires_in, prompt.expires_at))
        self._write("\n".join(lines) + "\n")
        if self.open_browser:
            # The link with the code filled in if it passes, else the plain one; the person always has both.
            target = next((u for u in (raw_complete, prompt.verification_uri) if u and may_open_in_browser(u)), None)
            if target is None:
                self._write(
                    "The link was not opened automatically (only https:// links, or http:// to this computer, are);"
                    " copy it into a browser.\n"
                )
            else:
                self._write("Opening your browser ...\n")
                threading.Thread(
                    target=self._browser_opener, args=(target,), daemon=True, name="tokensmith-browser"
                ).start()
        if self.live:
            ticker = start_daemon(self._tick, name="tokensmith-status")
            self._ticker = ticker  # only once started: a Ctrl-C inside start() must leave close() a thread to join
        else:
            self._write("Waiting for approval ...\n")

    def _show_browser_prompt(self, prompt: BrowserPrompt) -> None:
        # The link carries the login's state: shown to the person (they must be able to copy it), never logged.
        url = printable(prompt.url, limit=None)
        lines = ["", "To sign in, open this page in a browser:", "", f"    {self._style(url, '4')}", ""]
        if prompt.paste:
            lines += [
                "After signing in, your browser lands on an address starting with",
                f"{printable(prompt.redirect_uri)} (the page itself may not load): copy that whole address",
                "from the address bar and paste it here.",
                "",
            ]
        elif prompt.browser:
            lines += ["Opening your browser ...", ""]
        self._write("\n".join(lines) + "\n")
        if not prompt.paste:
            self._write("Waiting for the sign-in in the browser ...\n")

    def on_progress(self, progress: PollProgress) -> None:
        if progress.outcome.final:
            self.close(success=progress.outcome is PollOutcome.APPROVED)
            return
        outcome = progress.outcome.value
        if outcome == "slow_down":
            message = f"The server asked to slow down; checking every {progress.interval:g} s now."
        elif outcome == "transient_error":
            message = f"Could not reach the server; retrying in {progress.next_poll_in:.0f} s."
        else:
            message = ""
        with self._lock:
            self._status = message or "Waiting for approval"
            if message and not self.live:
                self.stream.write(message + "\n")
                self.stream.flush()

    def close(self, success: bool | None = None) -> None:
        """Stop the status line; say how it ended. Only the first call does anything."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        with self._lock:
            if self._status_shown:
                self.stream.write("\r\x1b[2K")
            if success is True:
                self.stream.write(self._style("Signed in.", "32") + "\n")
            self.stream.flush()

    def __enter__(self) -> TerminalPresenter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(success=None if exc_type else True)

    # -- internals ---------------------------------------------------------------------------------------

    def _tick(self) -> None:
        for frame in itertools.cycle(_SPINNER):
            if self._stop.is_set() or self._prompt is None:
                return
            remaining = self._prompt.expires_at - self._clock()
            if remaining < 1:  # the code is dead; whoever polls will say so
                return
            if remaining <= _ONE_DAY:
                left = int(remaining)
                countdown = f" {left // 60}:{left % 60:02d} left"
            else:  # an absurd lifetime: no countdown
                countdown = ""
            with self._lock:
                if self._stop.is_set():  # close() gave up waiting for this thread (held up since the check above)
                    return  # and may have said how the login ended: nothing goes after that
                line = f"{frame if self.color else '*'} {self._status} ...{countdown}"
                self.stream.write("\r\x1b[2K" + line)
                self.stream.flush()
                self._status_shown = True
            if self._stop.wait(1.0):
                return

    def _style(self, text: str, sgr: str) -> str:
        return f"\x1b[{sgr}m{text}\x1b[0m" if self.color else text

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()


def _expiry_text(expires_in: float, expires_at: float) -> str:
    """When the code expires, for people: minutes and the clock time; an absurd lifetime (``10**12`` s, past what
    ``time.localtime`` can convert) as "more than a day"."""
    if not expires_in <= _ONE_DAY:  # also NaN
        return "The code expires in more than a day."
    minutes = max(1, round(expires_in / 60))
    try:
        clock = time.strftime("%H:%M", time.localtime(expires_at))
    except (OverflowError, OSError, ValueError):
        return f"The code expires in {minutes} min."
    return f"The code expires in {minutes} min (at {clock})."


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return shutil.get_terminal_size((80, 24)).columns


def _width(block: str) -> int:
    return max((len(line) for line in block.splitlines()), default=0)


def _open_in_browser(url: str) -> None:
    try:
        webbrowser.open(url, new=2)
    except Exception as error:  # a missing or broken browser must never end the login
        logger.debug("could not open a browser: %s", type(error).__name__)
