"""``tokensmith`` under the tools that run it (issue 8): git's credential helper protocol driven by the real
``git credential``, ``tokensmith curl`` (the token goes to curl on stdin, never in argv), and flytekit's
external-command authenticator. Client-credentials identities: the helper fetches its own token, no login."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from cli_harness import TOKENSMITH, Cli, introspect
from fault_server import FaultServer, Reply
from idp_harness import CC_CLIENT, DEVICE_PUBLIC, LocalIdP
from tokensmith import TokenClient

pytestmark = pytest.mark.idp

CC_SECRET = CC_CLIENT.client_secret
assert CC_SECRET is not None
GIT_REQUEST = "protocol=https\nhost=git.example.test\npath=team/repo.git\n\n"


@pytest.fixture
def service(idp: LocalIdP, tmp_path: Path) -> list[str]:
    """Flags naming the client-credentials identity, its secret in a file."""
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(CC_SECRET + "\n")
    secret_file.chmod(0o600)
    return [
        *("--issuer", idp.issuer, "--client-id", CC_CLIENT.client_id, "--scope", "api:read"),
        *("--client-secret-file", str(secret_file)),
    ]


def service_key(idp: LocalIdP) -> str:
    return TokenClient(issuer=idp.issuer, client_id=CC_CLIENT.client_id, client_secret="x", scope="api:read").cache_key


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- git ------------------------------------------------------------------------------------------------------


def git(cli: Cli, *args: str, input: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], input=input, capture_output=True, text=True, env=cli.environ(), timeout=60, check=False
    )


def use_helper(cli: Cli, *helper_args: str) -> None:
    """``credential.helper = !tokensmith git-credential ...`` in the sandbox's global git config (the only one)."""
    helper = "!" + shlex.join([str(TOKENSMITH), "git-credential", *helper_args])
    subprocess.run(
        ["git", "config", "--global", "credential.helper", helper], env=cli.environ(), check=True, timeout=30
    )


def filled(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_credential_fill_round_trips_the_token(idp: LocalIdP, cli: Cli, service: list[str]) -> None:
    use_helper(cli, *service)
    first = filled(git(cli, "credential", "fill", input=GIT_REQUEST))
    stored = cli.stored(service_key(idp))  # the helper fetched it (client credentials) and stored it
    assert first == {
        "protocol": "https",
        "host": "git.example.test",
        "username": "oauth2",
        "password": stored["access_token"],
    }
    assert introspect(idp, first["password"], CC_CLIENT)["active"] is True

    before = sha256(cli.token_file(service_key(idp)))
    assert filled(git(cli, "credential", "fill", input=GIT_REQUEST)) == first  # from the cache
    assert sha256(cli.token_file(service_key(idp))) == before

    use_helper(cli, *service, "--username", "x-token-auth")
    assert filled(git(cli, "credential", "fill", input=GIT_REQUEST)) == {**first, "username": "x-token-auth"}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_approve_and_reject_never_write_gits_secret_into_the_store(
    idp: LocalIdP, cli: Cli, service: list[str]
) -> None:
    use_helper(cli, *service)
    token = filled(git(cli, "credential", "fill", input=GIT_REQUEST))["password"]
    path = cli.token_file(service_key(idp))
    listing = sorted(p.name for p in cli.tokens.parent.rglob("*"))
    before = path.read_bytes()

    foreign = "protocol=https\nhost=git.example.test\nusername=someone\npassword=gits-own-secret-42\n\n"
    ours = f"protocol=https\nhost=git.example.test\nusername=oauth2\npassword={token}\n\n"
    for action, request in (("approve", foreign), ("approve", ours), ("reject", foreign)):
        proc = git(cli, "credential", action, input=request)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
        assert path.read_bytes() == before, action  # byte for byte
        assert sorted(p.name for p in cli.tokens.parent.rglob("*")) == listing
    for stored in cli.tokens.parent.rglob("*"):
        if stored.is_file():
            assert b"gits-own-secret-42" not in stored.read_bytes()

    # git rejecting *our* token (the server said 401): the helper renews it, and the next fill gets the new one.
    proc = git(cli, "credential", "reject", input=ours)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    renewed = cli.stored(service_key(idp))["access_token"]
    assert renewed != token
    assert filled(git(cli, "credential", "fill", input=GIT_REQUEST))["password"] == renewed


def test_git_credential_get_answers_a_bearer_credential_when_git_offers_authtype(
    idp: LocalIdP, cli: Cli, service: list[str]
) -> None:
    """git >= 2.46 offers ``capability[]=authtype``; the installed git may be older, so we speak for it."""
    plain = cli.run("git-credential", *service, "get", input="protocol=https\nhost=git.example.test\n\n")
    assert plain.returncode == 0 and plain.stderr == ""
    stored = cli.stored(service_key(idp))
    token, expiry = stored["access_token"], int(stored["expires_at"])
    assert plain.stdout == f"username=oauth2\npassword={token}\npassword_expiry_utc={expiry}\n"

    request = "capability[]=authtype\nprotocol=https\nhost=git.example.test\nwwwauth[]=Bearer realm=git\n\n"
    for extra in ([], ["--interactive"]):  # the fast path, and the full command line
        proc = cli.run("git-credential", *service, *extra, "get", input=request)
        assert (proc.returncode, proc.stderr) == (0, "")
        assert proc.stdout == (
            "capability[]=authtype\nauthtype=Bearer\n"
            f"credential={token}\nephemeral=true\npassword_expiry_utc={expiry}\n"
        )


def test_git_credential_get_without_a_login_exits_4_and_says_which(idp: LocalIdP, cli: Cli) -> None:
    device = ["--issuer", idp.issuer, "--client-id", DEVICE_PUBLIC.client_id, "--scope", "openid"]
    proc = cli.run("git-credential", *device, "get", input="protocol=https\nhost=git.example.test\n\n")
    assert proc.returncode == 4 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "`tokensmith login --issuer" in proc.stderr


# -- curl -----------------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_sends_the_bearer_token(idp: LocalIdP, cli: Cli, service: list[str], fault_server: FaultServer) -> None:
    fault_server.default("/api/whoami", Reply(json={"user": "svc"}))
    proc = cli.run("curl", *service, "--", "-sS", fault_server.url("/api/whoami"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, '{"user": "svc"}', "")
    (request,) = fault_server.recorded("/api/whoami")
    assert request.method == "GET"
    assert request.headers["authorization"] == f"Bearer {cli.stored(service_key(idp))['access_token']}"


def test_curl_gets_the_token_on_stdin_never_in_argv_or_environment(
    idp: LocalIdP, cli: Cli, service: list[str], tmp_path: Path
) -> None:
    """A fake ``curl`` first on PATH records the command line tokensmith ran, its stdin and its environment."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    fake = bin_dir / "curl"
    fake.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do printf "%s\\n" "$arg"; done > "$RECORD/argv"\n'
        'cat > "$RECORD/stdin"\n'
        'env > "$RECORD/environ"\n'
        "exit 22\n"
    )
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RECORD": str(record)}
    url = "https://api.example.test/v1/items?page=2"
    proc = cli.run("curl", *service, "--", "-sS", "--fail", url, env=env)
    assert proc.returncode == 22  # curl's own exit status is passed on
    assert proc.stdout == "" and proc.stderr == ""
    token = cli.stored(service_key(idp))["access_token"]
    argv = (record / "argv").read_text()
    assert argv.splitlines() == ["-H", "@-", "-sS", "--fail", url]
    assert (record / "stdin").read_text() == f"Authorization: Bearer {token}\n"
    assert token not in argv and token not in (record / "environ").read_text()


# -- flytekit -------------------------------------------------------------------------------------------------


def test_flytekit_command_authenticator_gets_the_token(
    idp: LocalIdP, cli: Cli, service: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("flytekit")
    from flytekit.clients.auth.authenticator import CommandAuthenticator
    from flytekit.clients.auth.exceptions import AuthenticationError

    # flytekit runs the command with this process's environment: make it the sandbox's.
    for name in set(os.environ) - set(cli.env):
        monkeypatch.delenv(name)
    for name, value in cli.env.items():
        monkeypatch.setenv(name, value)

    authenticator = CommandAuthenticator([str(TOKENSMITH), "token", *service])
    authenticator.refresh_credentials()
    credentials = authenticator.get_credentials()
    assert credentials is not None
    token = cli.stored(service_key(idp))["access_token"]
    assert credentials.access_token == token
    assert introspect(idp, token, CC_CLIENT)["active"] is True

    again = CommandAuthenticator([str(TOKENSMITH), "token", *service])
    again.refresh_credentials()
    assert again.get_credentials().access_token == token  # the cached token, not a new one

    # Nothing stored for a person's identity, no terminal: flytekit's error carries our one-line remedy.
    device = ["--issuer", idp.issuer, "--client-id", DEVICE_PUBLIC.client_id, "--scope", "openid"]
    with pytest.raises(AuthenticationError) as failed:
        CommandAuthenticator([str(TOKENSMITH), "token", *device]).refresh_credentials()
    assert "`tokensmith login --issuer" in str(failed.value)


@pytest.mark.parametrize("action", ["capability", "frobnicate"])
def test_git_credential_ignores_an_action_it_does_not_know_silently(action: str, cli: Cli) -> None:
    """gitcredentials(7): "If a helper receives any other operation, it should silently ignore the request" (room
    for operations git adds later). No settings are needed to ignore one, and none are read."""
    cli.write_config("this is not TOML")
    proc = cli.run("git-credential", action, input="protocol=https\nhost=git.example.test\n\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def _helper_lines() -> list[tuple[str, str]]:
    """The ``credential.helper`` values a person is told to configure: ``git-credential --help`` and the README."""
    helped = Cli(Path(tempfile.mkdtemp(prefix="tokensmith-help-"))).run(
        "git-credential", "--help", env={"COLUMNS": "400"}
    )
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = [("--help", m) for m in re.findall(r'credential\.helper "([^"]+)"', " ".join(helped.stdout.split()))]
    found += [("README", m) for m in re.findall(r'credential\.[^ ]*helper "([^"]+)"', readme)]
    assert {source for source, _ in found} == {"--help", "README"}, found
    return found


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_helper_line_people_are_told_to_configure_works_with_git(
    idp: LocalIdP, cli: Cli, service: list[str]
) -> None:
    """gitcredentials(7): a helper that is not an absolute path and does not start with ``!`` runs as
    ``git credential-<helper>``, so ``tokensmith git-credential ...`` without the ``!`` is never our command."""
    cli.write_config(f"[profiles.P]\n{_profile(idp, service)}\n[profiles.dev]\n{_profile(idp, service)}")
    path = f"{TOKENSMITH.parent}{os.pathsep}{cli.env['PATH']}"  # `tokensmith` on PATH, as installed
    for source, helper in _helper_lines():
        subprocess.run(["git", "config", "--global", "credential.helper", helper], env=cli.environ(), check=True)
        proc = subprocess.run(
            ["git", "credential", "fill"],
            input=GIT_REQUEST,
            capture_output=True,
            text=True,
            env=cli.environ({"PATH": path}),
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0 and "username=oauth2" in proc.stdout, (source, helper, proc.stderr)


def _profile(idp: LocalIdP, service: list[str]) -> str:
    flags = dict(zip(service[::2], service[1::2], strict=True))
    return (
        f'issuer = "{idp.issuer}"\nclient_id = "{CC_CLIENT.client_id}"\nscope = "api:read"\n'
        f'flow = "client-credentials"\nclient_secret_file = "{flags["--client-secret-file"]}"\n'
    )
