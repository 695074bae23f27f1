"""A renewal lease left by a process that is gone is taken over at once, not only when it expires: a holder
killed but not yet reaped by its parent (a zombie), and a lease whose pid now names an unrelated process (the
pid was reused). Both through ``tokensmith.FileStore`` and lease files written by a real child process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokensmith import FileStore

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs a Linux-style /proc")

KEY = "leasekey"
SRC = str(Path(__file__).resolve().parents[2] / "src")

_HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {src!r})
    from tokensmith import FileStore
    store = FileStore({directory!r})
    store.claim({key!r}, "the-dead-holder", "renew", 3600)
    print("claimed", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process that claimed a one-hour lease on KEY and is still running."""
    code = _HOLDER.format(src=SRC, directory=str(tmp_path), key=KEY)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "claimed"
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()


def test_a_lease_of_a_killed_but_unreaped_holder_is_taken_over(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    store = FileStore(tmp_path, lock_timeout=30)
    assert store.claim(KEY, "me", "renew", 60).owner == "the-dead-holder"  # alive: its lease stands
    os.kill(holder.pid, signal.SIGKILL)
    # Wait for it to die without reaping it (WNOWAIT): its pid names a zombie until the parent collects it.
    os.waitid(os.P_PID, holder.pid, os.WEXITED | os.WNOWAIT)
    with open(f"/proc/{holder.pid}/stat") as handle:
        assert handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    lease = store.claim(KEY, "me", "renew", 60)
    assert lease.owner == "me"


def test_a_lease_whose_pid_now_names_another_process_is_taken_over(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    store = FileStore(tmp_path, lock_timeout=30)
    holder.kill()
    holder.wait(timeout=30)
    # The holder is gone and its pid reused by an unrelated process (simulated: the lease is pointed at one).
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lease_file = tmp_path / f"{KEY}.lease"
        document = json.loads(lease_file.read_text())
        assert "started" in document["lease"]  # the holder recorded when its process started
        document["lease"]["pid"] = unrelated.pid
        lease_file.write_text(json.dumps(document))
        current = store.current_lease(KEY)
        assert current is not None and current.pid == unrelated.pid
        lease = store.claim(KEY, "me", "renew", 60)
        assert lease.owner == "me"
    finally:
        unrelated.kill()
        unrelated.wait(timeout=30)


def test_a_live_holders_lease_stands(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    store = FileStore(tmp_path, lock_timeout=30)
    lease = store.claim(KEY, "me", "renew", 60)
    assert lease.owner == "the-dead-holder"
    assert lease.pid == holder.pid
