"""A writer killed with SIGKILL at a random moment never leaves a torn token file (C26).

A child process saves tokens of random sizes (10 B to 300 KiB, each carrying a checksum of itself) to one key
as fast as it can; it is killed 0-50 ms after it says it started. After every kill a fresh ``FileStore`` must
load either nothing (no write finished yet) or an intact token, and no ``.corrupt-*`` file may ever appear.
The same directory is kept across runs, so most kills interrupt an overwrite of an existing token.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tokensmith.stores.file import FileStore
from tokensmith.token import Token

HELPER = str(Path(__file__).resolve().parents[1] / "helpers" / "store_child.py")
KEY = "crash-test-key"
RUNS = 50


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def assert_intact(token: Token, runs_so_far: int) -> None:
    """The token is exactly one the children wrote: its checksum matches and every field is from that write."""
    digest, _, payload = token.access_token.partition(".")
    assert hashlib.sha256(payload.encode("ascii")).hexdigest()[:32] == digest, "torn access token"
    assert token.refresh_token == f"rt-{digest}", "fields from two different writes"
    run = payload.split("-", 1)[0]
    assert token.scope == f"run-{run}"
    assert 0 <= int(run) < runs_so_far
    assert token.expires_at is not None


def test_sigkill_mid_write_never_corrupts_the_store(tmp_path: Path) -> None:
    directory = tmp_path / "tokens"
    rng = random.Random()
    loaded_tokens = 0
    for run in range(RUNS):
        child = subprocess.Popen(
            [sys.executable, HELPER, "crash", str(directory), KEY, str(run)],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "started"
            time.sleep(rng.uniform(0, 0.05))  # the kill lands anywhere in the write loop
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()

        token = FileStore(directory).load(KEY)
        if token is not None:
            assert_intact(token, run + 1)
            loaded_tokens += 1
        assert not list(directory.glob("*.corrupt-*")), f"run {run}: a torn file was found and quarantined"

    # The test only means something if the children wrote, and were killed mid-write at least once
    # (a temporary file left behind is the trace of an interrupted write).
    assert loaded_tokens > 0
    leftovers = [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    assert leftovers, "no kill landed in the middle of a write"
    for path in leftovers:
        assert path.stat().st_mode & 0o077 == 0  # even a torn temporary file was private
    # And the store still works.
    fs = FileStore(directory)
    final = fs.load(KEY)
    assert final is not None
    fs.save(KEY, Token(access_token="after-the-storm"))
    assert fs.load(KEY) == Token(access_token="after-the-storm")
