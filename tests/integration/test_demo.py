"""The README's main command (`make demo DEMO_ARGS=--auto-approve`) runs end to end and prints no token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.idp
DEMO = Path(__file__).resolve().parents[2] / "demo" / "run_demo.py"


def test_demo_runs_end_to_end_without_showing_secrets() -> None:
    proc = subprocess.run([sys.executable, str(DEMO), "--auto-approve"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[1/3] client credentials" in proc.stderr and "Signed in." in proc.stderr
    assert "refresh token rotated: True" in proc.stderr and proc.stderr.rstrip().endswith("Done.")
    assert proc.stdout == ""
    assert "access_token='***" in proc.stderr  # shown redacted, never in clear
