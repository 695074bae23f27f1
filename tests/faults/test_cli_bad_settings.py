"""A setting that cannot be right is a usage error (exit 2) in one line that names the setting and where it came
from, before anything is sent: an issuer or endpoint URL that is not one (no scheme, whitespace, credentials, plain
http to a remote host), a value with a control character or stray whitespace (a Kubernetes secret mounted as an
environment variable keeps the newline ``echo`` put there), a scope that is not an RFC 6749 §3.3 scope-token, a
TOML ``true`` where seconds are expected. The command line as a subprocess, nothing listening anywhere."""

from __future__ import annotations

import pytest

from cli_harness import Cli, one_line


def _usage_error(proc: object) -> str:
    """The one stderr line of a run that ended in exit 2 with nothing on stdout."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)  # type: ignore[attr-defined]
    assert proc.stdout == ""  # type: ignore[attr-defined]
    return one_line(proc.stderr)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["token", "login"])
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("idp.example.com", "issuer (--issuer) must be an absolute https:// URL"),
        ("https://idp.example.com/ ", "whitespace or invisible characters"),
        ("https://idp.exa\u00a0mple.com", "whitespace or invisible characters"),
        ("https://user:pw@idp.example.com", "must not carry credentials"),
        ("http://idp.example.com", "refusing plain http://"),
        ("ftp://idp.example.com", "only https://"),
        ("https://idp.example.com?tenant=1", "no query or fragment"),
    ],
    ids=["no-scheme", "trailing-space", "nbsp", "credentials", "plain-http", "ftp", "query"],
)
def test_an_issuer_that_is_not_a_usable_url_is_a_usage_error(command: str, url: str, says: str, cli: Cli) -> None:
    proc = cli.run(command, "--issuer", url, "--client-id", "c", "--no-interactive" if command == "token" else "-v")
    line = _usage_error(proc)
    assert line.startswith("tokensmith: ") and says in line, line
    assert "pw" not in line.split("must not")[0] or "credentials" not in says  # the password is never echoed


def test_a_token_endpoint_without_a_scheme_is_a_usage_error(cli: Cli) -> None:
    proc = cli.run("token", "--token-endpoint", "idp.example.com/token", "--client-id", "c", "--no-interactive")
    assert "token_endpoint (--token-endpoint) must be an absolute https:// URL" in _usage_error(proc)


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("TOKENSMITH_CLIENT_ID", "my-cli\n", "client_id"),
        ("TOKENSMITH_CLIENT_ID", " my-cli", "client_id"),
        ("TOKENSMITH_CLIENT_ID", "my-cli\u00a0", "client_id"),
        ("TOKENSMITH_CLIENT_ID", "my\u200bcli", "client_id"),
        ("TOKENSMITH_AUDIENCE", "https://api.example.com/\r\n", "audience"),
        ("TOKENSMITH_ISSUER", " https://idp.example.com", "issuer"),
    ],
    ids=["newline", "leading-space", "nbsp", "zero-width-space", "crlf", "issuer-leading-space"],
)
def test_an_environment_value_with_stray_whitespace_or_control_characters_is_a_usage_error(
    variable: str, value: str, setting: str, cli: Cli, issuer: str
) -> None:
    env = {"TOKENSMITH_ISSUER": issuer, "TOKENSMITH_CLIENT_ID": "my-cli", variable: value}
    for command in (("token", "--no-interactive"), ("login",)):
        proc = cli.run(*command, env=env)
        line = _usage_error(proc)
        assert f"{setting} ({variable})" in line and "whitespace" in line, line


def test_a_profile_value_with_a_trailing_newline_is_a_usage_error(cli: Cli, issuer: str) -> None:
    cli.write_config(f'[profiles.p]\nissuer = "{issuer}"\nclient_id = "my-cli\\n"\n')
    line = _usage_error(cli.run("token", "--profile", "p", "--no-interactive"))
    assert "client_id (profile 'p')" in line


@pytest.mark.parametrize("scope", ['read"all', "read\\all", "caf\u00e9", "read\x07"])
def test_a_scope_that_is_not_a_scope_token_is_a_usage_error(scope: str, cli: Cli, issuer: str) -> None:
    proc = cli.run("token", "--issuer", issuer, "--client-id", "c", "--scope", f"openid {scope}", "--no-interactive")
    assert "scope (--scope)" in _usage_error(proc)


def test_a_client_secret_variable_ending_in_a_newline_is_a_usage_error_that_never_shows_it(
    cli: Cli, issuer: str
) -> None:
    """``kubectl create secret --from-file`` of a file ``echo`` wrote: the variable ends in a newline. Sent as is,
    the IdP says invalid_client or "not properly encoded" (exit 5) and nobody sees why."""
    secret = "s3cr3t-value-42"
    env = {"MY_SECRET": secret + "\n"}
    proc = cli.run("token", "--issuer", issuer, "--client-id", "c", "--client-secret-env", "MY_SECRET", env=env)
    line = _usage_error(proc)
    assert "MY_SECRET" in line and "control character" in line, line
    assert secret not in line


def test_a_boolean_timeout_in_a_profile_is_a_usage_error(cli: Cli, issuer: str) -> None:
    """TOML ``timeout = true`` is not one second."""
    cli.write_config(f'[profiles.p]\nissuer = "{issuer}"\nclient_id = "c"\ntimeout = true\n')
    line = _usage_error(cli.run("token", "--profile", "p", "--no-interactive"))
    assert "timeout (profile 'p') must be a number of seconds" in line


def test_a_default_profile_that_names_no_profile_is_a_usage_error_not_ignored(cli: Cli, issuer: str) -> None:
    """A typo in ``default_profile`` dropped every setting of the profile meant, and the error then blamed the
    missing client id ("pass --client-id"), not the typo. Unknown keys in a profile are errors for the same reason."""
    cli.write_config(f'default_profile = "prdo"\n[profiles.prod]\nissuer = "{issuer}"\nclient_id = "c"\n')
    line = _usage_error(cli.run("token", "--no-interactive"))
    assert "default_profile 'prdo'" in line and "prod" in line.split("'prdo'", 1)[1], line
