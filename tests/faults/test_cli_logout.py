"""``tokensmith logout`` when revocation does not simply work (RFC 7009): the token is deleted only once the server
has revoked it (HTTP 200) or revocation was declined with ``--no-revoke``; every failure keeps the token and the
identity, and says so in one final line. Real subprocesses against the fault-injecting server, with a token
planted under the library's own store key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_harness import Cli, free_port, plant
from fault_server import FaultServer, Reply
from tokensmith import TokenClient

ACCESS, REFRESH = "planted-access-token", "planted-refresh-token"


def _setup(cli: Cli, server: FaultServer, *, refresh: bool = True) -> tuple[list[str], Path]:
    """A stored token for a public client of ``server``; the logout flags and the token file."""
    key = TokenClient(server.url("/token"), "cli").cache_key
    plant(cli.tokens, key, ACCESS, refresh_token=REFRESH if refresh else None)
    flags = ["--token-endpoint", server.url("/token"), "--client-id", "cli"]
    return [*flags, "--revocation-endpoint", server.url("/revoke")], cli.token_file(key)


def test_revoked_then_deleted(cli: Cli, fault_server: FaultServer) -> None:
    fault_server.default("/revoke", Reply(body=""))  # RFC 7009 §2.2: 200, body ignored
    flags, path = _setup(cli, fault_server)
    proc = cli.run("logout", *flags)
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.endswith("(token revoked at the server and deleted).\n") and proc.stderr.count("\n") == 1
    assert not path.exists()
    (request,) = fault_server.recorded("/revoke")
    assert request.method == "POST"
    assert request.form == [("client_id", "cli"), ("token", REFRESH), ("token_type_hint", "refresh_token")]
    assert fault_server.count() == 1  # nothing else: no token request, no discovery


def test_without_a_refresh_token_the_access_token_is_revoked(cli: Cli, fault_server: FaultServer) -> None:
    fault_server.default("/revoke", Reply(json={}))
    flags, path = _setup(cli, fault_server, refresh=False)
    assert cli.run("logout", *flags).returncode == 0 and not path.exists()
    (request,) = fault_server.recorded("/revoke")
    assert request.form == [("client_id", "cli"), ("token", ACCESS), ("token_type_hint", "access_token")]


@pytest.mark.parametrize(
    ("reply", "code", "what", "attempts"),
    [
        (Reply(status=400, json={"error": "unsupported_token_type"}), 5, "UnsupportedTokenType", 1),
        (Reply(status=401, json={"error": "invalid_client"}), 5, "InvalidClient", 1),
        (Reply(status=503, body="<html>maintenance</html>", content_type="text/html"), 6, "NonJSONResponse", 3),
        (Reply(status=202, json={"status": "queued"}), 1, "HTTP 202, not 200", 1),
        (Reply(status=204), 1, "HTTP 204, not 200", 1),
        (Reply(status=307, headers={"Location": "https://elsewhere.example/"}), 1, "redirect", 1),
    ],
    ids=["unsupported_token_type", "invalid_client", "503-page", "202", "204", "redirect"],
)
def test_a_failed_revocation_keeps_the_token(
    reply: Reply, code: int, what: str, attempts: int, cli: Cli, fault_server: FaultServer
) -> None:
    fault_server.default("/revoke", reply)
    flags, path = _setup(cli, fault_server)
    before = path.read_bytes()
    identities = sorted(p.name for p in cli.identities.glob("*")) if cli.identities.exists() else []
    proc = cli.run("logout", *flags)
    assert proc.returncode == code and proc.stdout == ""
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("tokensmith: ") and what in last
    assert "Traceback" not in proc.stderr and REFRESH not in proc.stderr and ACCESS not in proc.stderr
    assert path.read_bytes() == before  # still there, untouched: the grant may still be live
    assert (sorted(p.name for p in cli.identities.glob("*")) if cli.identities.exists() else []) == identities
    assert fault_server.count("/revoke") == attempts  # a 503 is retried (revoking twice is harmless)


def test_an_unreachable_revocation_endpoint_keeps_the_token(cli: Cli, fault_server: FaultServer) -> None:
    flags, path = _setup(cli, fault_server)
    flags[-1] = f"http://127.0.0.1:{free_port()}/revoke"
    before = path.read_bytes()
    proc = cli.run("logout", *flags)
    assert proc.returncode == 6 and path.read_bytes() == before
    assert proc.stderr.splitlines()[-1].startswith("tokensmith: ConnectError")


def test_no_revoke_deletes_without_asking_the_server(cli: Cli, fault_server: FaultServer) -> None:
    flags, path = _setup(cli, fault_server)
    proc = cli.run("logout", *flags, "--no-revoke")
    assert proc.returncode == 0 and proc.stderr.endswith("(token deleted).\n")
    assert not path.exists() and fault_server.count() == 0


def test_a_server_without_a_revocation_endpoint_deletes_and_says_so(cli: Cli, fault_server: FaultServer) -> None:
    """Discovered metadata without ``revocation_endpoint``: nothing to revoke with; deleted here, with a word."""
    issuer = fault_server.base_url
    fault_server.default(
        "/.well-known/openid-configuration", Reply(json={"issuer": issuer, "token_endpoint": issuer + "/token"})
    )
    key = TokenClient(issuer=issuer, client_id="cli").cache_key
    plant(cli.tokens, key, ACCESS, refresh_token=REFRESH)
    proc = cli.run("logout", "--issuer", issuer, "--client-id", "cli")
    assert proc.returncode == 0 and not cli.token_file(key).exists()
    first, second = proc.stderr.splitlines()
    assert "offers no revocation endpoint" in first and "--revocation-endpoint" in first
    assert second.endswith("(token deleted).")
