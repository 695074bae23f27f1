"""The command line's secret and key files never hang and never read what is not a file: a FIFO nobody writes to,
a device, a directory, a file too large; and a pipe from process substitution (``--client-secret-file <(vault
read ...)``), which is a FIFO too, still works. Real subprocesses; nothing is sent when the file is refused."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fault_server import FaultServer, Reply

TOKEN = {"access_token": "at-from-a-pipe", "token_type": "Bearer", "expires_in": 600}


def _token(fault_server: FaultServer, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tokensmith", "token", "--token-endpoint", fault_server.url("/token"),
            "--client-id", "svc", "--flow", "client-credentials", *extra]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENSMITH_")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_CONFIG_HOME=str(tmp_path / "config"), NO_COLOR="1")
    # A hang would show as this timeout (a test failure), not as a stuck suite.
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("flag", ["--client-secret-file", "--private-key-file"])
def test_a_fifo_nobody_writes_to_is_refused_at_once(fault_server: FaultServer, tmp_path: Path, flag: str) -> None:
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo)
    done = _token(fault_server, tmp_path, flag, str(fifo))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "empty" in done.stderr, done.stderr
    assert fault_server.count("/token") == 0


@pytest.mark.parametrize("flag", ["--client-secret-file", "--private-key-file"])
@pytest.mark.parametrize("target", ["/dev/zero", "directory"])
def test_a_device_or_directory_is_refused(fault_server: FaultServer, tmp_path: Path, flag: str, target: str) -> None:
    path = str(tmp_path) if target == "directory" else target
    done = _token(fault_server, tmp_path, flag, path)
    expected = "is a directory" if target == "directory" else "not a regular file"
    assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert fault_server.count("/token") == 0


def test_a_secret_file_too_large_to_be_a_secret_is_refused(fault_server: FaultServer, tmp_path: Path) -> None:
    big = tmp_path / "secret"
    big.write_bytes(b"s" * (1024 * 1024))
    done = _token(fault_server, tmp_path, "--client-secret-file", str(big))
    assert done.returncode == 2 and "too large" in done.stderr, done.stderr
    assert fault_server.count("/token") == 0


def test_a_secret_from_process_substitution_is_read(fault_server: FaultServer, tmp_path: Path) -> None:
    """``--client-secret-file <(...)``: a pipe whose writer starts a little later than the command."""
    fault_server.script("/token", Reply(json=TOKEN))
    argv = [sys.executable, "-m", "tokensmith", "token", "--token-endpoint", fault_server.url("/token"),
            "--client-id", "svc", "--flow", "client-credentials"]  # fmt: skip
    command = " ".join(f"'{a}'" for a in argv) + " --client-secret-file <(sleep 0.5; printf %s 'pipe-secret')"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENSMITH_")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "at-from-a-pipe", done.stderr
    (sent,) = fault_server.recorded("/token")
    scheme, _, encoded = sent.headers["authorization"].partition(" ")
    assert scheme == "Basic" and base64.b64decode(encoded) == b"svc:pipe-secret"  # the piped secret, whole


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_the_configuration_file_never_hangs_the_fast_path_or_the_full_command(
    fault_server: FaultServer, tmp_path: Path, kind: str
) -> None:
    """``tokensmith token`` runs on every kubectl and git call: a configuration file that is a FIFO nobody writes
    to reads as empty (no settings), a device or a directory is a usage error (exit 2); it never hangs."""
    if kind == "fifo":
        config = tmp_path / "config.toml"
        os.mkfifo(config)
    else:
        config = Path("/dev/zero") if kind == "device" else tmp_path
    env_extra = {"TOKENSMITH_CONFIG": str(config)}
    argv = [sys.executable, "-m", "tokensmith", "token", "--no-interactive", "--token-endpoint",
            fault_server.url("/token"), "--client-id", "svc"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENSMITH_")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), NO_COLOR="1", **env_extra)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, stdin=subprocess.DEVNULL)
    if kind == "fifo":
        assert done.returncode == 4 and "login required" in done.stderr, done.stderr  # read as no settings
    else:
        assert done.returncode == 2 and "configuration file" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and fault_server.count("/token") == 0
