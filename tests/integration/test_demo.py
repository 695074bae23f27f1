"""The README's main command (`make demo DEMO_ARGS=--auto-approve`) runs the tokensmith command end to end
(login, token, status, an exec-credential call, logout) and shows no token."""

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
    err = proc.stderr
    for step in range(1, 7):
        assert f"[{step}/6]" in err
    assert "Signed in." in err and "renewed: True" in err and err.rstrip().endswith("Done.")
    assert '"kind": "ExecCredential"' in err and '"token": "<token: ' in err  # shown masked, never in clear
    assert "token revoked at the server and deleted" in err
    assert proc.stdout == ""
