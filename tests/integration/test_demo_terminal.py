"""`make demo` in a terminal shows the device login's QR code, as the README says: the demo reads the command's
stderr through a pipe, so it must tell the command that a person is looking at a terminal."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect
import pytest

pytestmark = pytest.mark.idp
DEMO = Path(__file__).resolve().parents[2] / "demo" / "run_demo.py"


def test_the_demo_in_a_terminal_shows_the_qr_code() -> None:
    child = pexpect.spawn(
        sys.executable, [str(DEMO), "--auto-approve"], dimensions=(60, 120), timeout=90, encoding="utf-8"
    )
    try:
        child.expect(r"\[2/6\]")
        child.expect(r"enter the code")
        assert child.expect([r"Or scan this QR code", r"Waiting for approval", r"\[3/6\]"]) == 0
        child.expect(r"Done\.")
    finally:
        child.close(force=True)
