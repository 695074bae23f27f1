"""A terminal UI for device login: the link, the user code, a QR code, a live status line.

Everything goes to one stream (stderr by default) so stdout stays free for the token. The core never prints;
it calls ``show_prompt`` and ``on_progress`` (see ``tokensmith.device.device_login``).
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import re
import shutil
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TextIO

from .._protocol.polling import PollOutcome
from ..device import DevicePrompt, PollProgress

logger = logging.getLogger("tokensmith.cli")

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def printable(text: str) -> str:
    """Strip control characters: a server-supplied code or link must not drive the terminal (escape injection)."""
    return _UNPRINTABLE.sub("", text)


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
    """A compact (half-block) QR code as text, or None when ``segno`` is not installed."""
    try:
        import segno
    except ImportError:
        logger.debug("segno not installed (pip install 'tokensmith[qr]'); no QR code shown")
        return None
    buffer = io.StringIO()
    segno.make(data, error="l", micro=False).terminal(out=buffer, border=border, compact=True)
    return buffer.getvalue()


class TerminalPresenter:
    """Shows a ``DevicePrompt`` and polling progress on a terminal.

    Defaults follow the stream: on a TTY, a QR code (when it fits), a live status line and colour (unless
    ``NO_COLOR`` is set or ``TERM=dumb``); otherwise plain lines only. The browser is opened only when there is a
    local display and the session is not over SSH, from a background thread so it can never block the login.
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

    def show_prompt(self, prompt: DevicePrompt) -> None:
        self._prompt = prompt
        uri = printable(prompt.verification_uri)
        code = printable(prompt.user_code)
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
        complete = printable(prompt.verification_uri_complete) if prompt.verification_uri_complete else None
        if complete and self.qr:
            block = render_qr(complete)
            if block is not None and _width(block) <= _columns(self.stream):
                lines += ["Or scan this QR code (check that the page shows the same code):", block.rstrip("\n"), ""]
        if complete:
            lines += [f"Link with the code filled in: {complete}", ""]
        minutes = max(1, round(prompt.expires_in / 60))
        lines.append(
            f"The code expires in {minutes} min (at {time.strftime('%H:%M', time.localtime(prompt.expires_at))})."
        )
        self._write("\n".join(lines) + "\n")
        if self.open_browser:
            target = complete or uri
            self._write("Opening your browser ...\n")
            threading.Thread(
                target=self._browser_opener, args=(target,), daemon=True, name="tokensmith-browser"
            ).start()
        if self.live:
            self._ticker = threading.Thread(target=self._tick, daemon=True, name="tokensmith-status")
            self._ticker.start()
        else:
            self._write("Waiting for approval ...\n")

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
            left = max(0, int(self._prompt.expires_at - self._clock()))
            if left == 0:  # the code is dead; whoever polls will say so
                return
            with self._lock:
                line = f"{frame if self.color else '*'} {self._status} ... {left // 60}:{left % 60:02d} left"
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
