"""The ``tokensmith`` command line against the real IdP (issue 8): login, token formats, renewal, logout with
revocation, status, profiles and exit codes. Every test runs the installed console script as a subprocess in a
sandboxed home (``cli_harness.Cli``), and checks what a user, a script or the IdP would see: stdout bytes, exit
codes, the lines on stderr, the token files, and the IdP's own verdict on the tokens."""

from __future__ import annotations

import json
import re
import shlex
import signal
import stat
import subprocess
import time
from calendar import timegm
from pathlib import Path

import pytest

from cli_harness import (
    B64TOKEN,
    USER_CODE,
    Cli,
    CountingProxy,
    expire,
    free_port,
    introspect,
    one_line,
    plant,
    read_until_code,
    redeem_refresh_token,
    rewrite_token_file,
)
from idp_harness import CC_CLIENT, CC_POST_CLIENT, DEVICE_PUBLIC, ClientInfo, LocalIdP
from tokensmith import TokenClient

pytestmark = pytest.mark.idp

SCOPE = "openid offline_access"
CC_SECRET = CC_CLIENT.client_secret
assert CC_SECRET is not None
SECRET_ENV = {"TOKENSMITH_CLIENT_SECRET": CC_SECRET}
RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def device_args(idp: LocalIdP) -> list[str]:
    return ["--issuer", idp.issuer, "--client-id", DEVICE_PUBLIC.client_id, "--scope", SCOPE]


def device_key(idp: LocalIdP) -> str:
    return TokenClient(issuer=idp.issuer, client_id=DEVICE_PUBLIC.client_id, scope=SCOPE).cache_key


def cc_args(idp: LocalIdP, scope: str = "api:read") -> list[str]:
    identity = ["--issuer", idp.issuer, "--client-id", CC_CLIENT.client_id, "--scope", scope]
    return [*identity, "--flow", "client-credentials"]


def cc_key(idp: LocalIdP, scope: str = "api:read", client: ClientInfo = CC_CLIENT) -> str:
    return TokenClient(issuer=idp.issuer, client_id=client.client_id, client_secret="unused", scope=scope).cache_key


def secrets_of(token: dict[str, object]) -> list[str]:
    return [str(token[k]) for k in ("access_token", "refresh_token", "id_token") if token.get(k)]


# -- 1. login ----------------------------------------------------------------------------------------------------


def test_device_login_prints_nothing_on_stdout_and_stores_the_token(idp: LocalIdP, cli: Cli) -> None:
    proc, code = cli.login_device(idp, *device_args(idp))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert idp.verification_uri in proc.stderr and code in proc.stderr  # the prompt went to stderr
    assert proc.stderr.splitlines()[-1].startswith(f"Logged in ({idp.issuer} / client device-public); ")

    key = device_key(idp)
    stored = cli.stored(key)
    assert B64TOKEN.fullmatch(stored["access_token"]) and stored["refresh_token"]
    assert set(stored["scope"].split()) == set(SCOPE.split())
    assert stat.S_IMODE(cli.token_file(key).stat().st_mode) == 0o600
    for secret in secrets_of(stored):
        assert secret not in proc.stderr
    assert introspect(idp, stored["access_token"])["active"] is True  # a real token of this IdP

    served = cli.run("token", *device_args(idp), "--no-interactive")
    assert (served.returncode, served.stdout, served.stderr) == (0, stored["access_token"] + "\n", "")


@pytest.mark.parametrize("source", ["TOKENSMITH_CLIENT_SECRET", "--client-secret-file", "--client-secret-stdin"])
def test_client_credentials_login_reads_the_secret_from(source: str, idp: LocalIdP, cli: Cli, tmp_path: Path) -> None:
    extra: list[str] = []
    env: dict[str, str] = {}
    stdin = None
    if source == "TOKENSMITH_CLIENT_SECRET":
        env = SECRET_ENV
    elif source == "--client-secret-file":
        path = tmp_path / "secret"
        path.write_text(CC_SECRET + "\n")
        path.chmod(0o600)
        extra = [source, str(path)]
    else:
        extra, stdin = [source], CC_SECRET + "\n"

    proc = cli.run("login", *cc_args(idp), *extra, input=stdin, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert one_line(proc.stderr).startswith(f"Logged in ({idp.issuer} / client cc-client); ")

    stored = cli.stored(cc_key(idp))
    assert stored["scope"] == "api:read" and not stored.get("refresh_token")
    assert stored["access_token"] not in proc.stderr and CC_SECRET not in proc.stderr
    info = introspect(idp, stored["access_token"], CC_CLIENT)
    assert info["active"] is True and info["client_id"] == "cc-client" and info["scope"] == "api:read"


def test_a_denied_device_login_exits_1_and_stores_nothing(idp: LocalIdP, cli: Cli) -> None:
    proc, _ = cli.login_device(idp, *device_args(idp), approve=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1] == "tokensmith: the sign-in was denied"
    assert cli.token_files() == []


# -- 2. token formats -------------------------------------------------------------------------------------------


@pytest.fixture
def cc_token(idp: LocalIdP, cli: Cli) -> dict[str, object]:
    """A client-credentials login in ``cli``; the stored token's fields."""
    proc = cli.run("login", *cc_args(idp), env=SECRET_ENV)
    assert proc.returncode == 0, proc.stderr
    return cli.stored(cc_key(idp))


def _token(cli: Cli, idp: LocalIdP, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cli.run("token", *cc_args(idp), *extra, env={**SECRET_ENV, **(env or {})})


def test_format_raw_header_and_env(idp: LocalIdP, cli: Cli, cc_token: dict[str, object]) -> None:
    access_token, expires_at = cc_token["access_token"], cc_token["expires_at"]
    assert isinstance(expires_at, float)
    for extra in ([], ["--format", "raw"]):
        proc = _token(cli, idp, *extra)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"{access_token}\n", "")

    proc = _token(cli, idp, "--format", "header")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"Authorization: Bearer {access_token}\n", "")

    proc = _token(cli, idp, "--format", "env")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == (
        f"export TOKENSMITH_ACCESS_TOKEN='{access_token}'\nexport TOKENSMITH_TOKEN_EXPIRES_AT='{int(expires_at)}'\n"
    )
    shell = subprocess.run(
        ["/bin/sh", "-c", 'eval "$(cat)"; printf "%s %s" "$TOKENSMITH_ACCESS_TOKEN" "$TOKENSMITH_TOKEN_EXPIRES_AT"'],
        input=proc.stdout,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == f"{access_token} {int(expires_at)}"


def test_format_json(idp: LocalIdP, cli: Cli, cc_token: dict[str, object]) -> None:
    before = time.time()
    proc = _token(cli, idp, "--format", "json")
    after = time.time()
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout.endswith("}\n") and proc.stdout.count("\n") == 1
    document = json.loads(proc.stdout)
    assert list(document) == ["access_token", "token_type", "expires_at", "expires_in"]
    assert document["access_token"] == cc_token["access_token"] and document["token_type"] == "Bearer"
    expires_at = cc_token["expires_at"]
    assert isinstance(expires_at, float) and document["expires_at"] == expires_at
    assert int(expires_at - after) <= document["expires_in"] <= int(expires_at - before)


def _exec_credential(stdout: str) -> tuple[str, str, float]:
    """Check an ExecCredential (client.authentication.k8s.io v1 / v1beta1) field by field; return its apiVersion,
    token and expirationTimestamp (as a Unix time)."""
    assert stdout.endswith("\n") and stdout.count("\n") == 1
    document = json.loads(stdout)
    assert set(document) == {"apiVersion", "kind", "status"}  # no spec in a plugin's answer, nothing else
    assert document["kind"] == "ExecCredential"
    status = document["status"]
    assert set(status) == {"token", "expirationTimestamp"}  # a token, so no clientCertificateData/KeyData
    assert isinstance(status["token"], str) and B64TOKEN.fullmatch(status["token"])
    stamp = status["expirationTimestamp"]
    assert isinstance(stamp, str) and RFC3339_UTC.fullmatch(stamp), stamp
    return document["apiVersion"], status["token"], timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


@pytest.mark.parametrize(
    ("exec_info", "api_version"),
    [
        (None, "client.authentication.k8s.io/v1"),
        ({"apiVersion": "client.authentication.k8s.io/v1", "spec": {"interactive": False}}, None),
        ({"apiVersion": "client.authentication.k8s.io/v1beta1", "spec": {"interactive": True}}, None),
    ],
    ids=["no-exec-info", "v1", "v1beta1"],
)
def test_format_exec_credential(
    exec_info: dict[str, object] | None,
    api_version: str | None,
    idp: LocalIdP,
    cli: Cli,
    cc_token: dict[str, object],
) -> None:
    env = {}
    if exec_info is not None:
        env["KUBERNETES_EXEC_INFO"] = json.dumps({"kind": "ExecCredential", **exec_info})
    before = time.time()
    proc = _token(cli, idp, "--format", "exec-credential", env=env)
    assert proc.returncode == 0 and proc.stderr == ""
    version, token, expiration = _exec_credential(proc.stdout)
    assert version == (api_version or (exec_info or {})["apiVersion"])
    assert token == cc_token["access_token"]
    expires_at = cc_token["expires_at"]
    assert isinstance(expires_at, float)
    # kubectl runs the plugin again once this passes: before the real expiry, and not already past.
    assert before < expiration < expires_at


def test_exec_credential_with_an_unknown_api_version_is_a_usage_error(idp: LocalIdP, cli: Cli) -> None:
    env = {"KUBERNETES_EXEC_INFO": json.dumps({"apiVersion": "client.authentication.k8s.io/v2", "spec": {}})}
    proc = _token(cli, idp, "--format", "exec-credential", env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "apiVersion" in one_line(proc.stderr)


def test_kubectl_not_interactive_never_starts_a_login(idp: LocalIdP, cli: Cli) -> None:
    """``spec.interactive: false``: exit 4 at once. ``true`` (no terminal needed) does start one: the flag is read."""
    info = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"}
    refused = cli.run(
        "token",
        *device_args(idp),
        "--format",
        "exec-credential",
        env={"KUBERNETES_EXEC_INFO": json.dumps({**info, "spec": {"interactive": False}})},
    )
    assert refused.returncode == 4 and refused.stdout == ""
    line = one_line(refused.stderr)
    assert "login required" in line and "tokensmith login" in line and not USER_CODE.search(line)

    interactive = {"KUBERNETES_EXEC_INFO": json.dumps({**info, "spec": {"interactive": True}})}
    proc = cli.popen("token", *device_args(idp), "--format", "exec-credential", env=interactive)
    try:
        read_until_code(proc)
        proc.send_signal(signal.SIGINT)
        stdout, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and stdout == ""
    assert rest.endswith("tokensmith: interrupted\n")
    assert cli.token_files() == []


# -- 3. renewal --------------------------------------------------------------------------------------------------


def proxied_device_args(idp: LocalIdP, proxy: CountingProxy) -> list[str]:
    """The device client with its token endpoint behind the counting proxy (and no discovery)."""
    return [
        "--token-endpoint",
        proxy.url("/token"),
        "--device-authorization-endpoint",
        idp.device_authorization_endpoint,
        "--client-id",
        DEVICE_PUBLIC.client_id,
        "--scope",
        SCOPE,
    ]


def proxied_device_key(proxy: CountingProxy) -> str:
    return TokenClient(proxy.url("/token"), DEVICE_PUBLIC.client_id, scope=SCOPE).cache_key


def test_an_expired_token_is_refreshed_silently_with_one_request(
    idp: LocalIdP, idp_proxy: CountingProxy, cli: Cli
) -> None:
    args = proxied_device_args(idp, idp_proxy)
    login, _ = cli.login_device(idp, *args)
    assert login.returncode == 0, login.stderr
    key = proxied_device_key(idp_proxy)
    first = cli.stored(key)
    expire(cli.token_file(key))
    idp_proxy.clear()

    proc = cli.run("token", *args)
    assert proc.returncode == 0 and proc.stderr == ""  # silently: nothing for the person to see
    second = cli.stored(key)
    assert proc.stdout == second["access_token"] + "\n" and second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]  # the rotated refresh token was kept
    (request,) = idp_proxy.seen()  # exactly one request, and it is the refresh
    assert request.path == "/token" and request.form["grant_type"] == "refresh_token"
    assert request.form["refresh_token"] == first["refresh_token"]

    again = cli.run("token", *args)
    assert again.stdout == proc.stdout and idp_proxy.seen() == [request]  # the renewed token is served as is
    assert introspect(idp, second["refresh_token"])["active"] is True


def test_min_valid_and_force_refresh_renew_a_valid_token(idp: LocalIdP, idp_proxy: CountingProxy, cli: Cli) -> None:
    args = proxied_device_args(idp, idp_proxy)
    login, _ = cli.login_device(idp, *args)
    assert login.returncode == 0, login.stderr
    key = proxied_device_key(idp_proxy)
    now = time.time()
    rewrite_token_file(cli.token_file(key), issued_at=now - 3300, expires_at=now + 300)  # 5 min left of an hour
    current = cli.stored(key)["access_token"]
    idp_proxy.clear()

    for extra in ([], ["--min-valid", "200"]):
        proc = cli.run("token", *args, *extra)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, current + "\n", "")
    assert idp_proxy.seen() == []

    proc = cli.run("token", *args, "--min-valid", "600")  # less than 600 s remain: renewed
    renewed = cli.stored(key)["access_token"]
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, renewed + "\n", "") and renewed != current
    assert len(idp_proxy.seen()) == len(idp_proxy.seen("/token", grant_type="refresh_token")) == 1

    proc = cli.run("token", *args, "--force-refresh")  # a valid hour-long token, renewed anyway
    forced = cli.stored(key)["access_token"]
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, forced + "\n", "") and forced != renewed
    assert len(idp_proxy.seen()) == len(idp_proxy.seen("/token", grant_type="refresh_token")) == 2


def test_force_refresh_of_a_client_credentials_token_fetches_a_new_one(
    idp: LocalIdP, cli: Cli, cc_token: dict[str, object]
) -> None:
    proc = _token(cli, idp, "--force-refresh")
    fresh = cli.stored(cc_key(idp))["access_token"]
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"{fresh}\n", "") and fresh != cc_token["access_token"]


# -- 4. --no-interactive with nothing stored ----------------------------------------------------------------------


def _login_command(stderr: str) -> list[str]:
    """The `tokensmith login ...` that the one line of ``stderr`` tells the person to run, as argv."""
    line = one_line(stderr)
    match = re.search(r"`(tokensmith login[^`]*)`", line)
    assert match, line
    return shlex.split(match.group(1))


def test_no_interactive_names_the_login_that_fixes_it(idp: LocalIdP, cli: Cli, tmp_path: Path) -> None:
    """The named command, run as written, logs in the very identity asked for: same issuer, client, scopes,
    audience and token directory (so the same store key in the same place)."""
    store_dir = tmp_path / "team tokens"
    args = [
        "--issuer",
        idp.issuer,
        "--client-id",
        DEVICE_PUBLIC.client_id,
        "--scope",
        "openid",
        "--scope",
        "offline_access",
        "--audience",
        "https://api.example.test/",
        "--store-dir",
        str(store_dir),
    ]
    proc = cli.run("token", *args, "--no-interactive")
    assert proc.returncode == 4 and proc.stdout == ""
    command = _login_command(proc.stderr)
    assert command[:2] == ["tokensmith", "login"]

    login, _ = cli.login_device(idp, *command[2:])
    assert login.returncode == 0, login.stderr
    (stored,) = cli.token_files(store_dir)
    served = cli.run("token", *args, "--no-interactive")
    access_token = json.loads(stored.read_text())["token"]["access_token"]
    assert (served.returncode, served.stdout, served.stderr) == (0, access_token + "\n", "")


def test_no_interactive_names_the_profile_and_the_flags_given(idp: LocalIdP, cli: Cli) -> None:
    cli.write_config(
        f'default_profile = "dev"\n[profiles.dev]\nissuer = "{idp.issuer}"\nclient_id = "device-public"\n'
        f'scope = "{SCOPE}"\n'
    )
    for extra, env in (([], {}), (["--profile", "dev"], {}), ([], {"TOKENSMITH_PROFILE": "dev"})):
        proc = cli.run("token", *extra, "--no-interactive", env=env)
        assert proc.returncode == 4 and proc.stdout == ""
        assert _login_command(proc.stderr) == ["tokensmith", "login", "--profile", "dev"]

    proc = cli.run("token", "--profile", "dev", "--scope", "email", "--resource", "https://r.test/", "--no-interactive")
    assert proc.returncode == 4
    assert _login_command(proc.stderr) == [
        "tokensmith",
        "login",
        "--profile",
        "dev",
        "--scope",
        "email",
        "--resource",
        "https://r.test/",
    ]


# -- 5. logout ---------------------------------------------------------------------------------------------------


def test_logout_revokes_the_refresh_token_at_the_idp_and_deletes_it(idp: LocalIdP, cli: Cli) -> None:
    login, _ = cli.login_device(idp, *device_args(idp))
    assert login.returncode == 0, login.stderr
    key = device_key(idp)
    stored = cli.stored(key)
    assert introspect(idp, stored["refresh_token"])["active"] is True

    proc = cli.run("logout", *device_args(idp))
    assert proc.returncode == 0 and proc.stdout == ""
    assert one_line(proc.stderr) == (
        f"Logged out of {idp.issuer} / client device-public (token revoked at the server and deleted)."
    )
    assert cli.token_files() == [] and list(cli.identities.iterdir()) == []

    # The IdP itself now refuses the refresh token (RFC 7009 §2.1), whoever presents it.
    refused = redeem_refresh_token(idp, stored["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert introspect(idp, stored["refresh_token"]) == {"active": False}
    assert introspect(idp, stored["access_token"]) == {"active": False}  # the server cascades to the grant

    again = cli.run("logout", *device_args(idp))
    assert (
        again.returncode == 0 and one_line(again.stderr) == f"Nothing stored for {idp.issuer} / client device-public."
    )


def test_logout_of_nothing_stored_needs_no_server(cli: Cli) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    proc = cli.run("logout", "--issuer", issuer, "--client-id", "nobody")
    assert proc.returncode == 0 and proc.stdout == ""
    assert one_line(proc.stderr) == f"Nothing stored for {issuer} / client nobody."


def test_logout_all_revokes_every_stored_identity(idp: LocalIdP, cli: Cli, tmp_path: Path) -> None:
    """A public device login and a service login whose secret is in a file: `logout --all` finds both from what
    was recorded at login (the file's name, never the secret) and revokes each with its own client."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(CC_SECRET)
    login, _ = cli.login_device(idp, *device_args(idp))
    assert login.returncode == 0, login.stderr
    service_login = cli.run("login", *cc_args(idp, "api:write"), "--client-secret-file", str(secret_file))
    assert service_login.returncode == 0, service_login.stderr
    device, service = cli.stored(device_key(idp)), cli.stored(cc_key(idp, "api:write"))
    for record in cli.identities.iterdir():
        assert CC_SECRET not in record.read_text() and service["access_token"] not in record.read_text()

    proc = cli.run("logout", "--all")
    assert proc.returncode == 0 and proc.stdout == ""
    assert sorted(proc.stderr.splitlines()) == [
        f"Logged out of {idp.issuer} / client cc-client (token revoked at the server and deleted).",
        f"Logged out of {idp.issuer} / client device-public (token revoked at the server and deleted).",
    ]
    assert cli.token_files() == []
    assert introspect(idp, device["refresh_token"]) == {"active": False}
    assert introspect(idp, service["access_token"], CC_CLIENT) == {"active": False}
    assert cli.run("status", "--json").stdout == "[]\n"


def test_logout_all_no_revoke_deletes_every_token_and_leaves_them_valid(
    idp: LocalIdP, cli: Cli, tmp_path: Path
) -> None:
    """Two service identities, one made a client-credentials login only by TOKENSMITH_CLIENT_SECRET being set
    (not set at logout time: no secret is needed without revocation). Both are deleted here, and both stay
    valid at the IdP."""
    secret_file = tmp_path / "post-secret"
    secret_file.write_text(f"{CC_POST_CLIENT.client_secret}\n")
    implicit = ["--issuer", idp.issuer, "--client-id", CC_CLIENT.client_id, "--scope", "api:read"]  # no --flow
    assert cli.run("login", *implicit, env=SECRET_ENV).returncode == 0
    post_args = ["--issuer", idp.issuer, "--client-id", CC_POST_CLIENT.client_id, "--scope", "api:write"]
    assert cli.run("login", *post_args, "--client-secret-file", str(secret_file)).returncode == 0
    tokens = [cli.stored(cc_key(idp)), cli.stored(cc_key(idp, "api:write", CC_POST_CLIENT))]

    proc = cli.run("logout", "--all", "--no-revoke")
    assert proc.returncode == 0 and proc.stdout == ""
    assert sorted(proc.stderr.splitlines()) == [
        f"Logged out of {idp.issuer} / client cc-client (token deleted).",
        f"Logged out of {idp.issuer} / client cc-post-client (token deleted).",
    ]
    assert cli.token_files() == []
    assert introspect(idp, tokens[0]["access_token"], CC_CLIENT)["active"] is True
    assert introspect(idp, tokens[1]["access_token"], CC_POST_CLIENT)["active"] is True


def test_logout_no_revoke_keeps_the_refresh_token_valid(idp: LocalIdP, cli: Cli) -> None:
    login, _ = cli.login_device(idp, *device_args(idp))
    assert login.returncode == 0, login.stderr
    stored = cli.stored(device_key(idp))
    proc = cli.run("logout", *device_args(idp), "--no-revoke")
    assert proc.returncode == 0
    assert one_line(proc.stderr) == f"Logged out of {idp.issuer} / client device-public (token deleted)."
    assert cli.token_files() == []
    assert introspect(idp, stored["refresh_token"])["active"] is True


# -- 6. status ---------------------------------------------------------------------------------------------------


def test_status_lists_identities_and_never_a_token(idp: LocalIdP, cli: Cli) -> None:
    cli.write_config(
        f'[profiles.svc]\nissuer = "{idp.issuer}"\nclient_id = "cc-client"\nflow = "client-credentials"\n'
        'scope = "api:read"\nclient_secret_env = "SVC_SECRET"\n'
    )
    empty = cli.run("status")
    assert empty.returncode == 0 and empty.stdout.startswith("No stored tokens.")
    assert cli.run("status", "--json").stdout == "[]\n"

    login, _ = cli.login_device(idp, *device_args(idp))
    assert login.returncode == 0, login.stderr
    service = cli.run("token", "--profile", "svc", env={"SVC_SECRET": CC_SECRET})
    assert service.returncode == 0, service.stderr
    secrets = [*secrets_of(cli.stored(device_key(idp))), *secrets_of(cli.stored(cc_key(idp))), CC_SECRET]

    text = cli.run("status")
    as_json = cli.run("status", "--json")
    for proc in (text, as_json):
        assert proc.returncode == 0 and proc.stderr == ""
        for secret in secrets:
            assert secret not in proc.stdout

    rows = {row.split("\t")[2]: row.split("\t") for row in text.stdout.splitlines()}
    assert set(rows) == {"device-public", "cc-client"}
    profile, issuer, _, scope, expiry, refresh, store = rows["device-public"]
    assert (profile, issuer, set(scope.split()), refresh, store) == (
        "-",
        idp.issuer,
        set(SCOPE.split()),
        "refresh yes",
        "file",
    )
    assert re.fullmatch(r"expires in \d+ s", expiry) and 3500 < int(expiry.split()[2]) <= 3600
    assert rows["cc-client"][:4] == ["svc", idp.issuer, "cc-client", "api:read"]
    assert rows["cc-client"][5:] == ["refresh no", "file"]

    listed = {row["client_id"]: row for row in json.loads(as_json.stdout)}
    assert set(listed) == {"device-public", "cc-client"}
    for row in listed.values():
        assert set(row) == {
            "profile",
            "issuer",
            "client_id",
            "scope",
            "expires_in",
            "refresh_available",
            "store",
            "store_dir",
        }
        assert row["issuer"] == idp.issuer and row["store"] == "file" and 3500 < row["expires_in"] <= 3600
    assert listed["device-public"]["profile"] is None and listed["device-public"]["refresh_available"] is True
    assert listed["cc-client"]["profile"] == "svc" and listed["cc-client"]["refresh_available"] is False
    assert listed["cc-client"]["scope"] == "api:read"


# -- 7. profiles and precedence ------------------------------------------------------------------------------------

PROFILES = """\
default_profile = "reader"

[profiles.reader]
issuer = "{issuer}"
client_id = "cc-client"
flow = "client-credentials"
scope = "api:read"
client_secret_env = "READER_SECRET"

[profiles.poster]
issuer = "{issuer}"
client_id = "cc-post-client"
flow = "client-credentials"
scope = ["api:write"]
client_secret_env = "POSTER_SECRET"
auth_method = "post"
"""
PROFILE_SECRETS = {"READER_SECRET": CC_SECRET, "POSTER_SECRET": str(CC_POST_CLIENT.client_secret)}


@pytest.mark.parametrize(
    ("args", "env", "client", "scope"),
    [
        ([], {}, CC_CLIENT, "api:read"),  # the default profile
        ([], {"TOKENSMITH_SCOPE": "api:write"}, CC_CLIENT, "api:write"),  # env over profile
        (
            ["--scope", "api:read", "--scope", "api:write"],
            {"TOKENSMITH_SCOPE": "api:write"},
            CC_CLIENT,
            "api:read api:write",
        ),
        (["--profile", "poster"], {}, CC_POST_CLIENT, "api:write"),
        ([], {"TOKENSMITH_PROFILE": "poster"}, CC_POST_CLIENT, "api:write"),
        (["--profile", "reader"], {"TOKENSMITH_PROFILE": "poster"}, CC_CLIENT, "api:read"),  # flag over env
        (
            ["--client-id", "cc-post-client"],
            {"TOKENSMITH_CLIENT_ID": "cc-client", "READER_SECRET": "post-secret-1"},
            CC_POST_CLIENT,
            "api:read",
        ),
    ],
    ids=[
        "default-profile",
        "env-scope",
        "flag-scope",
        "flag-profile",
        "env-profile",
        "flag-profile-over-env",
        "flag-client",
    ],
)
def test_flags_override_env_override_profile(
    args: list[str], env: dict[str, str], client: ClientInfo, scope: str, idp: LocalIdP, cli: Cli
) -> None:
    """What the IdP issued (introspected as the client it was issued to) and where it was stored say which
    setting won."""
    cli.write_config(PROFILES.format(issuer=idp.issuer))
    proc = cli.run("token", *args, env={**PROFILE_SECRETS, **env})
    assert proc.returncode == 0, proc.stderr
    access_token = proc.stdout.strip()
    info = introspect(idp, access_token, client)
    assert info["active"] is True and info["client_id"] == client.client_id
    assert set(info["scope"].split()) == set(scope.split())
    (stored,) = cli.token_files()
    assert stored == cli.token_file(cc_key(idp, scope, client))


def test_tokensmith_config_names_the_file(idp: LocalIdP, cli: Cli, tmp_path: Path) -> None:
    elsewhere = tmp_path / "team.toml"
    elsewhere.write_text(PROFILES.format(issuer=idp.issuer).replace('"reader"', '"poster"', 1))
    cli.write_config(PROFILES.format(issuer="http://127.0.0.1:9"))  # the default place: not read
    proc = cli.run("token", env={**PROFILE_SECRETS, "TOKENSMITH_CONFIG": str(elsewhere)})
    assert proc.returncode == 0, proc.stderr
    assert introspect(idp, proc.stdout.strip(), CC_POST_CLIENT)["active"] is True


def test_an_unknown_profile_is_a_usage_error(idp: LocalIdP, cli: Cli) -> None:
    path = cli.write_config(PROFILES.format(issuer=idp.issuer))
    for args, env in ((["--profile", "nope"], {}), ([], {"TOKENSMITH_PROFILE": "nope"})):
        for command in ("token", "login"):
            proc = cli.run(command, *args, env=env)
            assert proc.returncode == 2 and proc.stdout == ""
            assert one_line(proc.stderr) == f"tokensmith: no profile 'nope' in {path} (profiles: poster, reader)"


def test_a_secret_in_the_file_is_a_usage_error(idp: LocalIdP, cli: Cli) -> None:
    cli.write_config(
        f'default_profile = "leaky"\n[profiles.leaky]\nissuer = "{idp.issuer}"\nclient_id = "cc-client"\n'
        'client_secret = "hunter2-in-the-file"\n'
    )
    for command in ("token", "login", "status"):
        proc = cli.run(command)
        assert proc.returncode == 2 and proc.stdout == ""
        line = one_line(proc.stderr)
        assert "holds a secret (client_secret)" in line and "client_secret_env" in line
        assert "hunter2" not in line


def test_an_unset_client_secret_env_is_a_usage_error(idp: LocalIdP, cli: Cli) -> None:
    """Also when a public token for the same issuer and client is cached: the named variable is a broken setup,
    never a silent switch to the public client."""
    args = ["--issuer", idp.issuer, "--client-id", "cc-client", "--client-secret-env", "TS_TEST_UNSET_SECRET"]
    plant(cli.tokens, TokenClient(issuer=idp.issuer, client_id="cc-client").cache_key, "cached-public-token")
    for command in (["login"], ["token"], ["token", "--format", "json"]):
        proc = cli.run(*command, *args, env={"TS_TEST_UNSET_SECRET": ""})
        assert proc.returncode == 2 and proc.stdout == ""
        line = one_line(proc.stderr)
        assert "TS_TEST_UNSET_SECRET" in line and "not set" in line


# -- 12. exit codes ----------------------------------------------------------------------------------------------


def test_help_exit_codes_lists_them_all(cli: Cli) -> None:
    proc = cli.run("help", "exit-codes")
    assert proc.returncode == 0 and proc.stderr == ""
    codes = [int(line.split()[0]) for line in proc.stdout.splitlines()[1:]]
    assert codes == [0, 1, 2, 4, 5, 6, 130]


@pytest.mark.parametrize(
    "args",
    [["token", "--no-such-flag"], ["token", "--format", "yaml"], ["login", "--flow", "implicit"], ["token", "extra"]],
)
def test_exit_2_bad_usage_is_one_line_pointing_at_help(args: list[str], cli: Cli) -> None:
    proc = cli.run(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    line = one_line(proc.stderr)
    assert line.startswith("tokensmith: ") and f"'tokensmith {args[0]} --help'" in line


def test_no_command_shows_the_help(cli: Cli) -> None:
    proc = cli.run()
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("Usage: tokensmith [OPTIONS] COMMAND") and "\n  login " in proc.stderr


def test_exit_5_rejected_client_says_what_to_check(idp: LocalIdP, cli: Cli) -> None:
    proc = cli.run("token", *cc_args(idp), env={"TOKENSMITH_CLIENT_SECRET": "not-the-secret-123"})
    assert proc.returncode == 5 and proc.stdout == ""
    line = one_line(proc.stderr)
    assert "invalid_client" in line and "--client-id" in line and "not-the-secret-123" not in line
    assert cli.token_files() == []


def test_exit_6_nothing_listening_says_what_to_check(cli: Cli) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    for command in (["token", "--no-interactive", "--flow", "client-credentials"], ["login"]):
        proc = cli.run(
            *command,
            "--issuer",
            issuer,
            "--client-id",
            "cli",
            "--scope",
            "openid",
            env={"TOKENSMITH_CLIENT_SECRET": "s3cret"},
        )
        assert proc.returncode == 6 and proc.stdout == ""
        line = one_line(proc.stderr)
        assert issuer in line and "check the URL, your network and any proxy" in line


def test_login_required_is_known_without_the_server(cli: Cli) -> None:
    """Nothing stored and no login allowed: exit 4 at once, without asking a server that may be down (it is)."""
    issuer = f"http://127.0.0.1:{free_port()}"
    proc = cli.run("token", "--no-interactive", "--issuer", issuer, "--client-id", "cli", "--scope", "openid")
    assert proc.returncode == 4 and proc.stdout == ""
    assert "tokensmith login --issuer" in one_line(proc.stderr)
