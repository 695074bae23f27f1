"""A token directory on a file system without ``flock`` (some NFS, FUSE and SMB mounts: ``ENOSYS``).

``FileStore.lock`` must say at once that it cannot coordinate (``StoreError``), not wait ``lock_timeout`` for
an existence lock that its own lock file holds forever; loading and saving still work. Run in a child process
whose ``fcntl.flock`` fails with ``ENOSYS`` like such a file system's, with a bounded wait."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

_CHILD = textwrap.dedent(
    """
    import errno, fcntl, sys, warnings
    sys.path.insert(0, {src!r})

    def no_flock(*args, **kwargs):
        raise OSError(errno.ENOSYS, "Function not implemented")

    fcntl.flock = no_flock
    warnings.simplefilter("error")  # a library warning on stderr is not how the store reports this
    from tokensmith import FileStore, StoreError, StoreLockTimeout, Token

    store = FileStore({directory!r}, lock_timeout=5)
    store.save("k", Token(access_token="at-1", refresh_token="rt-1", expires_at=None))
    outcomes = []
    for attempt in range(2):  # a second process, or a second call, fares no better
        try:
            with store.lock("k"):
                outcomes.append("locked")
        except StoreLockTimeout:
            outcomes.append("timeout")
        except StoreError as error:
            outcomes.append("refused: " + str(error))
    try:
        store.claim("k", "me", "renew", 60)
        outcomes.append("claimed")
    except StoreError:
        outcomes.append("claim refused")
    loaded = store.load("k")
    outcomes.append("loaded " + (loaded.refresh_token if loaded is not None else "nothing"))
    print(repr(outcomes))
    """
)


def test_lock_on_a_file_system_without_flock_is_refused_at_once(tmp_path: Path) -> None:
    code = _CHILD.format(src=SRC, directory=str(tmp_path))
    # Before: each lock waited lock_timeout for filelock's soft fallback lock, then timed out.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    outcomes = ast.literal_eval(result.stdout.strip())
    assert len(outcomes) == 4
    for outcome in outcomes[:2]:
        assert outcome.startswith("refused: ")
        assert "does not support file locks" in outcome
        assert "k.lock" in outcome
    assert outcomes[2:] == ["claim refused", "loaded rt-1"]
