"""Issue 7 item 20: the CLI's failures say what to do next, ``--timeout`` bounds the first request too, and a
secret variable that was named but is unset is an error, not a silent public client. Real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys

from fault_server import FaultServer, Reply

DEVICE_REPLY = {"device_code": "dc-1", "user_code": "ABCD", "verification_uri": "https://v", "expires_in": 600}


def _run(fault_server: FaultServer, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tokensmith",
            "device-login",
            "--device-authorization-endpoint",
            fault_server.url("/device"),
            "--token-endpoint",
            fault_server.url("/token"),
            "--client-id",
            "cli",
            "--no-browser",
            "--no-qr",
            *extra,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        timeout=60,
    )


def test_timeout_bounds_the_first_request(fault_server: FaultServer) -> None:
    fault_server.script("/device", Reply(json=DEVICE_REPLY, delay=20))
    proc = _run(fault_server, "--timeout", "1")
    assert proc.returncode == 6 and proc.stdout == ""  # 6: network
    (line,) = proc.stderr.strip().splitlines()
    assert "RequestTimeout" in line and "raise --timeout" in line
    assert fault_server.count("/device") == 1 and fault_server.count("/token") == 0


def test_a_named_secret_variable_that_is_unset_is_a_usage_error(fault_server: FaultServer) -> None:
    proc = _run(fault_server, "--client-secret-env", "MY_UNSET_SECRET", env={"MY_UNSET_SECRET": ""})
    assert proc.returncode == 2 and "MY_UNSET_SECRET" in proc.stderr and "not set" in proc.stderr
    assert fault_server.count() == 0  # it never became a public client


def test_a_rejected_client_says_which_flags_to_check(fault_server: FaultServer) -> None:
    fault_server.script("/device", Reply(status=401, json={"error": "invalid_client"}))
    proc = _run(fault_server, env={"TOKENSMITH_CLIENT_SECRET": "wrong-secret"})
    assert proc.returncode == 5  # 5: rejected by the IdP
    assert "--client-id" in proc.stderr and "--client-secret-env" in proc.stderr
    assert "wrong-secret" not in proc.stderr


def test_a_gateway_page_says_check_the_url(fault_server: FaultServer) -> None:
    fault_server.script("/device", Reply(status=502, body="<html>Bad Gateway</html>", content_type="text/html"))
    proc = _run(fault_server)
    assert proc.returncode == 6 and "check the endpoint URL" in proc.stderr and "Bad Gateway" not in proc.stderr
