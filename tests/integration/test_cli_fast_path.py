"""The cached-token fast path (issue 8): ``tokensmith token`` and ``tokensmith git-credential get`` answer a valid
cached token with the standard library only, give exactly what the full command line gives, and find the token
under the very key ``tokensmith.TokenClient`` stores it under.

No server is needed: tokens are planted with the library's own ``FileStore`` under ``TokenClient(...).cache_key``,
for an issuer nothing listens on. ``python -X importtime`` lists every module a run imports (on stderr)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli_harness import Cli, one_line, plant
from tokensmith import TokenClient

HEAVY = ("requests", "click", "keyring", "urllib3", "dataclasses", "typing")
FORMATS = ("raw", "json", "header", "env", "exec-credential")
ACCESS_TOKEN = "cached-access-token.fast_path~1"
SCOPE = "openid offline_access"


def imported(stderr: str) -> set[str]:
    """The modules ``-X importtime`` says were imported."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and not line.rstrip().endswith("| package")
    }


def heavy(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in HEAVY}


def other_stderr(stderr: str) -> str:
    """stderr without ``-X importtime``'s lines."""
    return "".join(line for line in stderr.splitlines(keepends=True) if not line.startswith("import time:"))


@pytest.fixture
def cached(cli: Cli, issuer: str) -> list[str]:
    """A valid token for a public client planted in the default store; the flags that name it."""
    plant(cli.tokens, TokenClient(issuer=issuer, client_id="fast-cli", scope=SCOPE).cache_key, ACCESS_TOKEN)
    return ["--issuer", issuer, "--client-id", "fast-cli", "--scope", SCOPE]


# -- nothing heavy, and the same answer as the full command line ---------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_token_from_the_cache_imports_nothing_heavy_and_answers_as_the_full_path(
    fmt: str, cli: Cli, cached: list[str]
) -> None:
    before = time.time()
    fast = cli.run("token", *cached, "--format", fmt, python_flags=("-X", "importtime"))
    middle = time.time()
    full = cli.run("token", *cached, "--format", fmt, "--interactive", python_flags=("-X", "importtime"))
    after = time.time()

    assert fast.returncode == full.returncode == 0, (fast.stderr, full.stderr)
    assert other_stderr(fast.stderr) == other_stderr(full.stderr) == ""
    fast_modules, full_modules = imported(fast.stderr), imported(full.stderr)
    assert "tokensmith.cli.fast" in fast_modules and "tokensmith.cli.main" not in fast_modules
    assert heavy(fast_modules) == set()
    assert {"click", "requests", "tokensmith.cli.main"} <= full_modules  # the check does see them when loaded

    assert ACCESS_TOKEN in fast.stdout
    if fmt != "json":
        assert fast.stdout == full.stdout
        return
    fast_doc, full_doc = json.loads(fast.stdout), json.loads(full.stdout)
    expires_at = fast_doc["expires_at"]
    assert int(expires_at - middle) <= fast_doc.pop("expires_in") <= int(expires_at - before)
    assert int(expires_at - after) <= full_doc.pop("expires_in") <= int(expires_at - middle)
    assert fast_doc == full_doc


@pytest.mark.parametrize("capability", ["", "capability[]=authtype\n"], ids=["password", "authtype"])
def test_git_credential_get_from_the_cache_imports_nothing_heavy(capability: str, cli: Cli, cached: list[str]) -> None:
    request = f"{capability}protocol=https\nhost=git.example.test\n\n"
    fast = cli.run("git-credential", *cached, "get", input=request, python_flags=("-X", "importtime"))
    full = cli.run("git-credential", *cached, "--interactive", "get", input=request, python_flags=("-X", "importtime"))
    assert fast.returncode == full.returncode == 0
    assert other_stderr(fast.stderr) == other_stderr(full.stderr) == ""
    assert heavy(imported(fast.stderr)) == set() and "click" in imported(full.stderr)
    assert fast.stdout == full.stdout
    expected = f"credential={ACCESS_TOKEN}" if capability else f"password={ACCESS_TOKEN}"
    assert expected in fast.stdout.splitlines()


def test_a_profile_file_is_read_without_anything_heavy(cli: Cli, issuer: str) -> None:
    """Reading the TOML profile file costs ``tomllib``, which imports ``typing`` (the one exception); still no
    requests, click, keyring, urllib3 or dataclasses."""
    cli.write_config(f'default_profile = "p"\n[profiles.p]\nissuer = "{issuer}"\nclient_id = "fast-cli"\n')
    plant(cli.tokens, TokenClient(issuer=issuer, client_id="fast-cli").cache_key, ACCESS_TOKEN)
    fast = cli.run("token", python_flags=("-X", "importtime"))
    assert (fast.returncode, fast.stdout, other_stderr(fast.stderr)) == (0, ACCESS_TOKEN + "\n", "")
    assert heavy(imported(fast.stderr)) - {"typing"} == set()


# -- the store key is the library's ---------------------------------------------------------------------------------

#: (flags, environment, TokenClient keyword arguments) naming the same identity two ways. Filled in per test:
#: {issuer}, {endpoint} (a token endpoint URL) and {secret_file}.
Case = tuple[list[str], dict[str, str], dict[str, Any]]
SAME_IDENTITY: dict[str, Case] = {
    "issuer-public-scopes-in-another-order": (
        ["--issuer", "{issuer}", "--client-id", "c", "--scope", "openid", "--scope", "profile email"],
        {},
        {"issuer": "{issuer}", "client_id": "c", "scope": ["email", "openid", "profile"]},
    ),
    "token-endpoint-only": (
        ["--token-endpoint", "{endpoint}", "--client-id", "c"],
        {},
        {"token_endpoint": "{endpoint}", "client_id": "c"},
    ),
    "issuer-and-token-endpoint": (
        ["--issuer", "{issuer}", "--token-endpoint", "{endpoint}", "--client-id", "c"],
        {},
        {"issuer": "{issuer}", "token_endpoint": "{endpoint}", "client_id": "c"},
    ),
    "audience-and-resources-in-another-order": (
        [
            *("--issuer", "{issuer}", "--client-id", "c", "--audience", "https://aud.test/"),
            *("--resource", "https://b.test/", "--resource", "https://a.test/"),
        ],
        {},
        {"issuer": "{issuer}", "client_id": "c", "audience": "https://aud.test/"}
        | {"resource": ["https://a.test/", "https://b.test/"]},
    ),
    "confidential-by-TOKENSMITH_CLIENT_SECRET": (
        ["--issuer", "{issuer}", "--client-id", "c", "--scope", "api:read"],
        {"TOKENSMITH_CLIENT_SECRET": "s3cret"},
        {"issuer": "{issuer}", "client_id": "c", "client_secret": "s3cret", "scope": "api:read"},
    ),
    "confidential-by-secret-file": (
        ["--issuer", "{issuer}", "--client-id", "c", "--client-secret-file", "{secret_file}"],
        {},
        {"issuer": "{issuer}", "client_id": "c", "client_secret": "s3cret"},
    ),
    "confidential-by-named-variable": (
        ["--issuer", "{issuer}", "--client-id", "c", "--client-secret-env", "MY_SECRET"],
        {"MY_SECRET": "s3cret"},
        {"issuer": "{issuer}", "client_id": "c", "client_secret": "s3cret"},
    ),
    "confidential-device-flow": (
        ["--issuer", "{issuer}", "--client-id", "c", "--flow", "device"],
        {"TOKENSMITH_CLIENT_SECRET": "s3cret"},
        {"issuer": "{issuer}", "client_id": "c", "client_secret": "s3cret", "grant": "device_code"},
    ),
    # The auth method is not part of the key: a private key makes a confidential client (client credentials), and
    # the fast path answers without reading the key file (here not even a key) or importing PyJWT.
    "confidential-by-private-key-file": (
        ["--issuer", "{issuer}", "--client-id", "c", "--private-key-file", "{secret_file}"],
        {},
        {"issuer": "{issuer}", "client_id": "c", "private_key": "unread"},
    ),
    "private-key-jwt-with-every-flag": (
        [
            *("--issuer", "{issuer}", "--client-id", "c", "--auth-method", "private-key-jwt"),
            *("--private-key-file", "{secret_file}", "--private-key-password-env", "KEY_PW"),
            *("--key-id", "k1", "--assertion-alg", "ES384"),
        ],
        {"KEY_PW": "pw"},
        {"issuer": "{issuer}", "client_id": "c", "private_key": "unread"},
    ),
    "private-key-file-from-the-environment": (
        ["--issuer", "{issuer}", "--client-id", "c"],
        {"TOKENSMITH_PRIVATE_KEY_FILE": "{secret_file}", "TOKENSMITH_AUTH_METHOD": "private_key_jwt"},
        {"issuer": "{issuer}", "client_id": "c", "private_key": "unread"},
    ),
    "client-secret-jwt": (
        ["--issuer", "{issuer}", "--client-id", "c", "--auth-method", "client_secret_jwt", "--assertion-alg", "HS512"],
        {"TOKENSMITH_CLIENT_SECRET": "s3cret"},
        {"issuer": "{issuer}", "client_id": "c", "client_secret": "s3cret"},
    ),
    "all-from-the-environment": (
        [],
        {"TOKENSMITH_ISSUER": "{issuer}", "TOKENSMITH_CLIENT_ID": "c", "TOKENSMITH_SCOPE": "b a"},
        {"issuer": "{issuer}", "client_id": "c", "scope": "a b"},
    ),
}
#: The planted identity, and flags that differ from it in one thing each: never answered from its token.
PLANTED: dict[str, Any] = {"issuer": "{issuer}", "client_id": "c", "scope": "a b", "audience": "https://aud.test/"}
PLANTED_FLAGS = ["--issuer", "{issuer}", "--client-id", "c", "--scope", "a b", "--audience", "https://aud.test/"]
ANOTHER_IDENTITY: dict[str, tuple[list[str], dict[str, str]]] = {
    "other-scope": (
        ["--issuer", "{issuer}", "--client-id", "c", "--scope", "a", "--audience", "https://aud.test/"],
        {},
    ),
    "no-audience": (["--issuer", "{issuer}", "--client-id", "c", "--scope", "a b"], {}),
    "other-client": (
        ["--issuer", "{issuer}", "--client-id", "d", "--scope", "a b", "--audience", "https://aud.test/"],
        {},
    ),
    "confidential": (PLANTED_FLAGS, {"TOKENSMITH_CLIENT_SECRET": "s3cret"}),
    "token-endpoint-instead-of-issuer": (
        ["--token-endpoint", "{endpoint}", "--client-id", "c", "--scope", "a b", "--audience", "https://aud.test/"],
        {},
    ),
    "other-store-dir": ([*PLANTED_FLAGS, "--store-dir", "{secret_file}.d"], {}),
}


def _filler(issuer: str, secret_file: Path) -> Callable[[Any], Any]:
    values = {"issuer": issuer, "endpoint": issuer + "/oauth/token", "secret_file": str(secret_file)}

    def fill(item: Any) -> Any:
        if isinstance(item, str):
            return item.format(**values)
        if isinstance(item, list):
            return [fill(i) for i in item]
        if isinstance(item, tuple):
            return tuple(fill(i) for i in item)
        if isinstance(item, dict):
            return {k: fill(v) for k, v in item.items()}
        return item

    return fill


@pytest.mark.parametrize("case", sorted(SAME_IDENTITY))
def test_the_fast_path_finds_the_token_under_the_libraries_key(
    case: str, cli: Cli, issuer: str, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret\n")
    flags, env, kwargs = _filler(issuer, secret_file)(SAME_IDENTITY[case])
    plant(cli.tokens, TokenClient(**kwargs).cache_key, ACCESS_TOKEN)
    proc = cli.run("token", "--no-interactive", *flags, env=env, python_flags=("-X", "importtime"))
    assert (proc.returncode, proc.stdout, other_stderr(proc.stderr)) == (0, ACCESS_TOKEN + "\n", "")
    assert "tokensmith.cli.main" not in imported(proc.stderr)  # answered by the fast path, from that file


@pytest.mark.parametrize("case", sorted(ANOTHER_IDENTITY))
def test_another_identity_is_never_answered_from_the_token(case: str, cli: Cli, issuer: str, tmp_path: Path) -> None:
    fill = _filler(issuer, tmp_path / "unused")
    plant(cli.tokens, TokenClient(**fill(PLANTED)).cache_key, ACCESS_TOKEN)
    same = cli.run("token", "--no-interactive", *fill(PLANTED_FLAGS))
    assert same.stdout == ACCESS_TOKEN + "\n"  # the control: these flags do name it

    flags, env = fill(ANOTHER_IDENTITY[case][0]), ANOTHER_IDENTITY[case][1]
    proc = cli.run("token", "--no-interactive", *flags, env=env)
    assert proc.returncode in (4, 5, 6) and proc.stdout == ""  # the full path asked the (absent) server, or gave up
    assert ACCESS_TOKEN not in proc.stderr


# -- what the full command line refuses, the fast path does not answer -------------------------------------------


@pytest.mark.parametrize(
    ("extra", "env"),
    [
        (["--min-valid", "-1"], {}),
        (["--min-valid", "soon"], {}),
        (["--format", "yaml"], {}),
        (["--client-secret-env", "TS_UNSET_SECRET"], {}),
        (["--profile", "nope"], {}),
        (["--flow", "implicit"], {}),
        (["--timeout", "0"], {}),
        (
            ["--format", "exec-credential"],
            {"KUBERNETES_EXEC_INFO": '{"apiVersion": "client.authentication.k8s.io/v9"}'},
        ),
        ([], {"TOKENSMITH_FLOW": "implicit"}),
        # Client authentication settings that cannot work: the same identity, so a token is cached for it.
        (["--auth-method", "private_key_jwt"], {}),
        (["--auth-method", "client_secret_jwt"], {}),
        (["--auth-method", "pkjwt"], {}),
        (["--key-id", "k1"], {}),
        (["--assertion-alg", "none"], {}),
        (["--private-key-password-env", "KEY_PW"], {"KEY_PW": "pw"}),
    ],
    ids=[
        "negative-min-valid",
        "word-min-valid",
        "format",
        "unset-secret-variable",
        "profile",
        "flow",
        "timeout",
        "exec-info-version",
        "env-flow",
        "private-key-jwt-without-a-key",
        "client-secret-jwt-without-a-secret",
        "unknown-auth-method",
        "key-id-without-private-key-jwt",
        "alg-none",
        "password-variable-without-a-key",
    ],
)
def test_the_fast_path_never_answers_a_usage_error(
    extra: list[str], env: dict[str, str], cli: Cli, cached: list[str]
) -> None:
    proc = cli.run("token", *cached, *extra, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert one_line(proc.stderr).startswith("tokensmith: ")


def test_an_expired_or_nearly_expired_token_is_not_answered_from_the_cache(cli: Cli, issuer: str) -> None:
    """Past its renewal point (a tenth of its life, at most 60 s, before expiry) the fast path steps aside and the
    full path renews; with the server away, an expired token is never printed."""
    flags = ["--issuer", issuer, "--client-id", "fast-cli", "--no-interactive"]
    key = TokenClient(issuer=issuer, client_id="fast-cli").cache_key
    plant(cli.tokens, key, ACCESS_TOKEN, lifetime=-1.0, refresh_token="rt-to-renew-with")
    proc = cli.run("token", *flags, python_flags=("-X", "importtime"))
    assert proc.returncode == 6 and proc.stdout == "" and "tokensmith.cli.main" in imported(proc.stderr)

    plant(cli.tokens, key, ACCESS_TOKEN, lifetime=30.0)  # fresh for 27 more seconds of its 30
    proc = cli.run("token", *flags, python_flags=("-X", "importtime"))
    assert proc.stdout == ACCESS_TOKEN + "\n" and "tokensmith.cli.main" not in imported(proc.stderr)
