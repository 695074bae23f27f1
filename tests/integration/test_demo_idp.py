"""`make idp` (demo/idp.py): the bundled IdP on a fixed port for trying the README by hand. It prints the issuer
and every client with what it needs, including the private_key_jwt clients' key files, and stops on Ctrl-C."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cli_harness import free_port
from tokensmith import TokenClient

pytestmark = pytest.mark.idp
IDP = Path(__file__).resolve().parents[2] / "demo" / "idp.py"


def _start_demo_idp() -> tuple[subprocess.Popen[str], int, str]:
    """demo/idp.py on a free port, once it has printed everything; on another port if something else took that one
    between ``free_port()`` and node binding it (a busy CI machine runs many servers at once)."""
    for _ in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(IDP), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops the server" in line:
                return proc, port, "".join(lines)
        _out, err = proc.communicate(timeout=30)
        if "EADDRINUSE" not in err:
            pytest.fail(f"demo/idp.py did not start (exit {proc.returncode}):\n{err}")
    pytest.fail("three free ports were taken before demo/idp.py could bind one")


def test_make_idp_prints_usable_clients_and_stops_on_ctrl_c() -> None:
    proc, port, shown = _start_demo_idp()
    try:
        assert f"issuer:                        http://127.0.0.1:{port}\n" in shown, shown
        keys = dict(re.findall(r"^\s+(pkjwt-\S+)\s+\(private_key_jwt: --private-key-file (\S+)\)$", shown, re.M))
        assert sorted(keys) == ["pkjwt-ec", "pkjwt-es384", "pkjwt-rsa"], shown
        for client_id, path in keys.items():
            assert Path(path).stat().st_mode & 0o077 == 0
            client = TokenClient.from_issuer(f"http://127.0.0.1:{port}", client_id, private_key=Path(path).read_bytes())
            with client:
                assert client.get_token().access_token
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not any(Path(path).exists() for path in keys.values())  # the keys went with the server


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_make_idp_stopped_by_kill_or_a_closed_terminal_takes_the_idp_with_it(stop: signal.Signals) -> None:
    """``kill`` (SIGTERM) ended Python at once and left the node IdP running on the port."""
    proc, port, _shown = _start_demo_idp()
    try:
        assert _listening(port)
    finally:
        proc.send_signal(stop)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not _listening(port)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_make_idp_on_a_taken_port_says_so_in_a_line_not_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, str(IDP), "--port", str(port)], capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 1 and "EADDRINUSE" in done.stderr and "Traceback" not in done.stderr, done.stderr
