"""``tokensmith token --min-valid SECONDS`` asks for a token valid at least that long. When the server's tokens
live shorter, no renewal can meet it: the token is still printed (it is the best there is), but the person is
told, once per call, that every call with that ``--min-valid`` goes to the server (Auth0 meters M2M tokens).
``nan`` is refused like any other value that is not a number of seconds. Client credentials at the real IdP
(access tokens live 3600 s), behind a counting proxy."""

from __future__ import annotations

import pytest

from cli_harness import B64TOKEN, Cli, CountingProxy, one_line
from idp_harness import CC_CLIENT, LocalIdP


def _service(idp_proxy: CountingProxy) -> list[str]:
    return ["--token-endpoint", idp_proxy.url("/token"), "--client-id", CC_CLIENT.client_id]


def test_a_min_valid_longer_than_the_servers_tokens_live_is_said_not_hidden(
    idp: LocalIdP, idp_proxy: CountingProxy, cli: Cli
) -> None:
    env = {"TOKENSMITH_CLIENT_SECRET": CC_CLIENT.client_secret or ""}
    first = cli.run("token", *_service(idp_proxy), env=env)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    assert len(idp_proxy.seen("/token")) == 1

    for calls in (2, 3):
        proc = cli.run("token", *_service(idp_proxy), "--min-valid", "86400", env=env)
        assert proc.returncode == 0
        assert B64TOKEN.fullmatch(proc.stdout.strip())
        line = one_line(proc.stderr)
        assert line.startswith("tokensmith: warning: ") and "--min-valid 86400" in line, line
        assert len(idp_proxy.seen("/token")) == calls  # it did go to the server, as the warning says

    met = cli.run("token", *_service(idp_proxy), "--min-valid", "600", env=env)
    assert (met.returncode, met.stderr) == (0, "")
    assert len(idp_proxy.seen("/token")) == 3  # from the store


@pytest.mark.parametrize("value", ["nan", "-1"])
def test_a_min_valid_that_is_not_a_number_of_seconds_is_a_usage_error(value: str, cli: Cli) -> None:
    proc = cli.run("token", "--issuer", "https://idp.example.com", "--client-id", "c", "--min-valid", value)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--min-valid" in one_line(proc.stderr)
