"""The terminal presenter (RFC 8628 §3.3.1, C15): always the link and the code; QR for the complete URI;
no colour with NO_COLOR; nothing from the server can drive the terminal."""

from __future__ import annotations

import io
import threading
import time

import pytest

from tokensmith._protocol.polling import PollOutcome
from tokensmith.cli.presenter import TerminalPresenter, has_local_display, printable
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
    assert done.wait(5)
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


def test_live_status_line_counts_down_and_is_cleared() -> None:
    out = io.StringIO()
    now = [PROMPT.expires_at - 125]
    presenter = TerminalPresenter(out, live=True, qr=False, color=False, open_browser=False, clock=lambda: now[0])
    presenter.show_prompt(PROMPT)
    for _ in range(50):
        if "2:05 left" in out.getvalue():
            break
        time.sleep(0.05)
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
        assert presenter._ticker is not None and not presenter._ticker.is_alive()
        text = out.getvalue()
        assert (expected in text) if expected else ("Signed in." not in text)
        presenter.close(success=True)  # idempotent: nothing more is written
        assert out.getvalue() == text
