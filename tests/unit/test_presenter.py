"""The terminal presenter (RFC 8628 §3.3.1, C15): always the link and the code; QR for the complete URI;
no colour with NO_COLOR; nothing from the server can drive the terminal."""

from __future__ import annotations

import io
import threading
import time

import pytest

from tokensmith._protocol.polling import PollOutcome
from tokensmith.cli.presenter import (
    TerminalPresenter,
    has_local_display,
    may_open_in_browser,
    printable,
    render_qr,
)
from tokensmith.device import DevicePrompt, PollProgress

PROMPT = DevicePrompt(
    user_code="WDJB-MJHT",
    verification_uri="https://idp.example/device",
    verification_uri_complete="https://idp.example/device?user_code=WDJB-MJHT",
    expires_in=600,
    expires_at=time.time() + 600,
    interval=5,
)


def _show(prompt: DevicePrompt = PROMPT, **kwargs: object) -> str:
    out = io.StringIO()
    presenter = TerminalPresenter(out, live=False, open_browser=False, **kwargs)  # type: ignore[arg-type]
    presenter.show_prompt(prompt)
    presenter.close(success=True)
    return out.getvalue()


def test_code_and_link_always_shown_even_with_a_qr_code() -> None:
    text = _show(qr=True, color=False)
    assert "WDJB-MJHT" in text and "https://idp.example/device" in text
    assert any(ch in text for ch in "█▀▄")  # the QR block
    assert "Signed in." in text


def test_plain_output_when_not_a_terminal() -> None:
    text = _show()  # StringIO is not a TTY: no QR, no colour, no status line
    assert "\x1b" not in text and "█" not in text and "\r" not in text
    assert "WDJB-MJHT" in text and "user_code=WDJB-MJHT" in text  # the complete link as text


def test_no_color_respected() -> None:
    out = io.StringIO()
    out.isatty = lambda: True  # type: ignore[method-assign]
    presenter = TerminalPresenter(
        out, environ={"NO_COLOR": "1", "TERM": "xterm"}, qr=False, live=False, open_browser=False
    )
    assert presenter.color is False
    presenter.show_prompt(PROMPT)
    assert "\x1b[" not in out.getvalue()
    coloured = TerminalPresenter(out, environ={"TERM": "xterm"}, qr=False, live=False, open_browser=False)
    assert coloured.color is True


def test_server_strings_cannot_inject_terminal_escapes() -> None:
    evil = DevicePrompt("AB\x1b]0;pwned\x07CD", "https://x/\x1b[2Jdevice", None, 60, time.time() + 60, 5)
    text = _show(evil, color=False)
    assert "\x1b" not in text and "\x07" not in text and "AB]0;pwnedCD" in text
    assert printable("a\x9bb\nc") == "abc"


@pytest.mark.parametrize(
    ("environ", "platform", "expected"),
    [
        ({"DISPLAY": ":0"}, "linux", True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({}, "linux", False),  # a container or a bare server
        ({"DISPLAY": ":0", "SSH_CONNECTION": "10.0.0.1 22 10.0.0.2 22"}, "linux", False),  # X forwarding over SSH
        ({}, "darwin", True),
        ({"SSH_TTY": "/dev/pts/1"}, "darwin", False),
    ],
)
def test_browser_only_with_a_local_display(environ: dict[str, str], platform: str, expected: bool) -> None:
    assert has_local_display(environ, platform) is expected


def test_browser_is_opened_in_the_background_with_the_complete_link() -> None:
    opened: list[str] = []
    done = threading.Event()

    def opener(url: str) -> None:
        opened.append(url)
        done.set()

    presenter = TerminalPresenter(io.StringIO(), open_browser=True, live=False, browser_opener=opener)
    presenter.show_prompt(PROMPT)
    assert done.wait(30)
    assert opened == [PROMPT.verification_uri_complete]


def test_progress_lines_only_when_something_changes() -> None:
    out = io.StringIO()
    presenter = TerminalPresenter(out, live=False, open_browser=False)
    presenter.show_prompt(PROMPT)
    before = out.getvalue()
    presenter.on_progress(PollProgress(1, PollOutcome.PENDING, 5, 590, 5))
    assert out.getvalue() == before  # pending: nothing new to say
    presenter.on_progress(PollProgress(2, PollOutcome.SLOW_DOWN, 10, 580, 10))
    presenter.on_progress(PollProgress(3, PollOutcome.TRANSIENT, 10, 570, 20))
    added = out.getvalue()[len(before) :]
    assert "every 10 s" in added and "retrying in 20 s" in added


def _wait_for_text(out: io.StringIO, text: str) -> None:
    """Until the status thread has written ``text``, for up to 30 s: its first line can be seconds late on a loaded
    machine."""
    deadline = time.monotonic() + 30
    while text not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_live_status_line_counts_down_and_is_cleared() -> None:
    out = io.StringIO()
    now = [PROMPT.expires_at - 125]
    presenter = TerminalPresenter(out, live=True, qr=False, color=False, open_browser=False, clock=lambda: now[0])
    presenter.show_prompt(PROMPT)
    _wait_for_text(out, "2:05 left")
    presenter.close(success=True)
    text = out.getvalue()
    assert "Waiting for approval ... 2:05 left" in text
    assert text.endswith("\r\x1b[2KSigned in.\n")


def test_final_progress_event_stops_the_status_line() -> None:
    """The client calls no close(): the final APPROVED/STOPPED event must end the live line by itself."""
    for outcome, expected in ((PollOutcome.APPROVED, "Signed in."), (PollOutcome.STOPPED, None)):
        out = io.StringIO()
        presenter = TerminalPresenter(out, live=True, qr=False, color=False, open_browser=False)
        presenter.show_prompt(PROMPT)
        presenter.on_progress(PollProgress(1, outcome, 5, 100, 0))
        assert presenter._ticker is not None
        presenter._ticker.join(30)  # close() waits 2 s at most, which a loaded machine can outlast
        assert not presenter._ticker.is_alive()
        text = out.getvalue()
        assert (expected in text) if expected else ("Signed in." not in text)
        presenter.close(success=True)  # idempotent: nothing more is written
        assert out.getvalue() == text


def test_a_status_line_starved_past_close_writes_nothing_after_the_last_word() -> None:
    """close() waits for the status thread for 2 s at most. On a loaded machine that thread can be held up between
    its look at the stop flag and its write for longer: it must then not draw the status line again after
    "Signed in." (the last thing on the terminal must be how the login ended)."""
    in_tick, go_on = threading.Event(), threading.Event()

    def clock() -> float:  # the status thread reads the clock between its stop check and its write
        if threading.current_thread().name == "tokensmith-status" and not go_on.is_set():
            in_tick.set()
            go_on.wait(30)
        return PROMPT.expires_at - 125

    out = io.StringIO()
    presenter = TerminalPresenter(out, live=True, qr=False, color=False, open_browser=False, clock=clock)
    presenter.show_prompt(PROMPT)
    assert in_tick.wait(30)
    presenter.close(success=True)  # gives up waiting for the held-up thread after 2 s
    go_on.set()
    assert presenter._ticker is not None
    presenter._ticker.join(30)
    assert not presenter._ticker.is_alive()
    assert out.getvalue().endswith("Signed in.\n") and "left" not in out.getvalue()


def test_ctrl_c_while_the_status_line_starts_still_closes_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C right as the code appears can land inside Thread.start(): close() (run on the way out) must not
    then raise RuntimeError("cannot join thread before it is started") over the KeyboardInterrupt."""
    start = threading.Thread.start

    def interrupted(thread: threading.Thread) -> None:
        if thread.name == "tokensmith-status":
            raise KeyboardInterrupt
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", interrupted)
    out = io.StringIO()
    presenter = TerminalPresenter(out, live=True, qr=False, color=False, open_browser=False)
    with pytest.raises(KeyboardInterrupt):
        presenter.show_prompt(PROMPT)
    presenter.close(success=None)
    assert PROMPT.user_code in out.getvalue() and "Signed in." not in out.getvalue()


# -- "never trust" the server's text (issue 7, item 16) -----------------------------------------------------


def _prompt(
    user_code: str = "WDJB-MJHT",
    verification_uri: str = "https://idp.example/device",
    verification_uri_complete: str | None = None,
    expires_in: int = 600,
    expires_at: float | None = None,
) -> DevicePrompt:
    at = time.time() + expires_in if expires_at is None else expires_at
    return DevicePrompt(user_code, verification_uri, verification_uri_complete, expires_in, at, 5)


class RecordingOpener:
    """A browser that records every link it is asked to open."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    def __call__(self, url: str) -> None:
        self.opened.append(url)


def _show_with_browser(prompt: DevicePrompt, **kwargs: object) -> tuple[str, list[str]]:
    out = io.StringIO()
    opener = RecordingOpener()
    presenter = TerminalPresenter(out, live=False, open_browser=True, browser_opener=opener, **kwargs)  # type: ignore[arg-type]
    presenter.show_prompt(prompt)
    for thread in threading.enumerate():  # the opener runs in the background: let it finish before looking
        if thread.name == "tokensmith-browser":
            thread.join(30)
    presenter.close(success=True)
    return out.getvalue(), opener.opened


HIDDEN = [
    "\x00",
    "\x07",  # bell
    "\x08",  # backspace: could overwrite what was shown
    "\x1b",  # ESC (C0)
    "\r",
    "\n",
    "\x7f",
    "\x85",  # NEL (C1)
    "\x9b",  # CSI (C1): an escape sequence in one byte on 8-bit terminals
    "\x9d",  # OSC (C1)
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",  # bidi embeddings and overrides
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",  # bidi isolates
    "\u200b",
    "\u200c",
    "\u200d",  # zero-width space, non-joiner, joiner
    "\u200e",
    "\u200f",  # left-to-right / right-to-left marks
    "\ufeff",  # BOM / zero-width no-break space
    "\u00ad",  # soft hyphen
    "\u2060",  # word joiner
    "\u2028",
    "\u2029",  # line / paragraph separator
    "\u3164",  # Hangul filler: a letter that renders as nothing
    "\U000e0041",  # tag character
]


@pytest.mark.parametrize("hidden", HIDDEN, ids=[f"U+{ord(c):04X}" for c in HIDDEN])
def test_printable_removes_controls_format_and_invisible_characters(hidden: str) -> None:
    assert printable(f"WDJB{hidden}-MJHT") == "WDJB-MJHT"


def test_printable_keeps_ordinary_text() -> None:
    text = "Gerät anmelden – コードを入力 https://idp.example/device?user_code=WDJB-MJHT"
    assert printable(text) == text


def test_printable_bounds_long_text_with_an_ellipsis() -> None:
    assert printable("A" * 300) == "A" * 300
    assert printable("A" * 1_000_000) == "A" * 300 + "…"
    assert printable("\u202e" * 1000 + "A" * 301) == "A" * 300 + "…"  # counted after stripping
    assert printable("A" * 1000, limit=10) == "A" * 10 + "…"
    assert printable("A" * 1000, limit=None) == "A" * 1000


def test_bidi_and_zero_width_characters_never_reach_the_terminal() -> None:
    evil = _prompt(
        user_code="WDJB\u202e-MJHT\u200b\u2028",
        verification_uri="https://idp.example/\u2066device\u2069\x9b2J",
        verification_uri_complete="https://idp.example/device?user_code=WDJB-MJHT\ufeff\u0085",
    )
    text = _show(evil, color=False)
    assert not {ch for ch in text if ch in HIDDEN and ch != "\n"}
    assert "    WDJB-MJHT\n" in text
    assert "    https://idp.example/device2J\n" in text
    assert "Link with the code filled in: https://idp.example/device?user_code=WDJB-MJHT\n" in text


def test_absurdly_long_server_strings_are_cut_on_the_terminal() -> None:
    huge = _prompt(
        user_code="W" * 100_000,
        verification_uri="https://idp.example/" + "d" * 100_000,
        verification_uri_complete="https://idp.example/device?user_code=" + "W" * 100_000,
    )
    text = _show(huge, color=False)
    assert len(text) < 2_000
    assert f"    {'W' * 300}…\n" in text
    assert text.count("…") == 3


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example/device",
        "HTTPS://IDP.EXAMPLE/device?user_code=WDJB-MJHT",
        "https://idp.example:8443/device#x",
        "http://127.0.0.1:3000/device",
        "http://127.8.9.10/device",
        "http://[::1]:3000/device",
        "http://localhost/device",
        "http://idp.localhost:3000/device",
    ],
)
def test_links_a_browser_may_open(url: str) -> None:
    assert may_open_in_browser(url)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "-https://idp.example/device",
        "--remote-debugging-port=9222",
        "-new-tab https://idp.example",
        "file:///etc/passwd",
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "ftp://idp.example/device",
        "chrome://settings",
        "about:blank",
        "idp.example/device",  # no scheme
        "//idp.example/device",
        "http://idp.example/device",  # plain http to a remote host
        "http://10.0.0.1/device",
        "http://127.0.0.1.evil.example/device",
        "http://evil.example\\.localhost/device",  # browsers read the backslash as '/': host evil.example
        "https://idp.example@evil.example/device",  # user info: the host is evil.example
        "https://user:password@idp.example/device",
        "https:///device",  # no host
        "https://",
        "https://[::1/device",  # malformed
        "http://localhost:99999/device",  # malformed port
        "https://idp.example/dev ice",
        "https://idp.example/device\t",
        " https://idp.example/device",
        "https://idp.example/device\n",
        "https://idp.example/\x1b[2Jdevice",
        "https://idp.example/\x9bdevice",
        "https://idp.example/device\u202e",
        "https://idp.example/\u200bdevice",
        "https://idp.example/device\u00a0",  # no-break space
        "https://іdp.example/device",  # Cyrillic і: non-ASCII links are shown, never opened
    ],
)
def test_links_a_browser_must_not_open(url: str) -> None:
    assert not may_open_in_browser(url)


@pytest.mark.parametrize(
    ("uri", "complete", "expected"),
    [
        ("https://idp.example/device", "https://idp.example/device?user_code=WDJB-MJHT", ["complete"]),
        ("http://127.0.0.1:3000/device", None, ["uri"]),
        ("https://idp.example/device", "javascript:alert(1)", ["uri"]),  # the plain link still works
        ("https://idp.example/device", "https://idp.example/device?user_code=WDJB MJHT", ["uri"]),
        ("--renderer-cmd-prefix=/bin/sh", None, []),
        ("file:///etc/passwd", "data:text/html,<h1>hi</h1>", []),
        ("http://idp.example/device", "-https://idp.example/device?user_code=WDJB-MJHT", []),
    ],
)
def test_browser_opens_only_a_safe_link(uri: str, complete: str | None, expected: list[str]) -> None:
    text, opened = _show_with_browser(_prompt(verification_uri=uri, verification_uri_complete=complete))
    assert opened == [{"uri": uri, "complete": complete}[e] for e in expected]
    if opened:
        assert "Opening your browser" in text and "not opened automatically" not in text
    else:
        assert "Opening your browser" not in text
        assert text.count("not opened automatically") == 1
    assert f"    {printable(uri)}\n" in text  # shown, so the person can copy it
    if complete:
        assert f"Link with the code filled in: {printable(complete)}\n" in text


def test_no_qr_code_for_a_link_that_must_not_be_opened() -> None:
    text = _show(_prompt(verification_uri_complete="javascript:alert(1)//WDJB-MJHT"), qr=True, color=False)
    assert "scan this QR code" not in text and not any(ch in text for ch in "█▀▄")
    assert "Link with the code filled in: javascript:alert(1)//WDJB-MJHT" in text


def test_link_too_long_for_a_qr_code_shows_the_link_and_no_qr(caplog: pytest.LogCaptureFixture) -> None:
    long_link = "https://idp.example/device?user_code=WDJB-MJHT&pad=" + "a" * 4000
    assert render_qr(long_link) is None  # segno: DataOverflowError
    caplog.set_level("DEBUG", logger="tokensmith.cli")
    text, opened = _show_with_browser(_prompt(verification_uri_complete=long_link), qr=True, color=False)
    assert "scan this QR code" not in text and not any(ch in text for ch in "█▀▄")
    assert "Link with the code filled in: https://idp.example/device?user_code=WDJB-MJHT&pad=" in text
    assert "    WDJB-MJHT\n" in text
    assert opened == [long_link]
    assert "DataOverflowError" in caplog.text


def test_a_failing_qr_renderer_never_ends_the_login(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import segno

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(segno, "make", broken)
    caplog.set_level("DEBUG", logger="tokensmith.cli")
    text = _show(PROMPT, qr=True, color=False)
    assert "scan this QR code" not in text
    assert "WDJB-MJHT" in text and f"Link with the code filled in: {PROMPT.verification_uri_complete}" in text
    assert "Signed in." in text
    assert "RuntimeError" in caplog.text


@pytest.mark.parametrize("expires_in", [10**12, 2**62])
def test_absurd_lifetime_is_shown_without_a_clock_time_or_countdown(expires_in: int) -> None:
    prompt = _prompt(verification_uri_complete=PROMPT.verification_uri_complete, expires_in=expires_in)
    assert "The code expires in more than a day." in _show(prompt, color=False)
    out = io.StringIO()
    presenter = TerminalPresenter(out, live=True, qr=False, color=False, open_browser=False)
    presenter.show_prompt(prompt)
    _wait_for_text(out, "* Waiting for approval ...")
    assert presenter._ticker is not None and presenter._ticker.is_alive()
    presenter.close(success=True)
    text = out.getvalue()
    assert "* Waiting for approval ..." in text and "left" not in text
    assert text.endswith("\r\x1b[2KSigned in.\n")


def test_expiry_outside_the_clock_range_shows_the_minutes_only() -> None:
    text = _show(_prompt(expires_in=600, expires_at=1e300), color=False)  # time.localtime overflows
    assert "The code expires in 10 min.\n" in text


def test_expiry_shows_minutes_and_clock_time() -> None:
    prompt = _prompt(expires_in=900)
    text = _show(prompt, color=False)
    assert f"The code expires in 15 min (at {time.strftime('%H:%M', time.localtime(prompt.expires_at))})." in text
