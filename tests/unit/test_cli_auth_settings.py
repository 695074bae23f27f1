"""The command line's client authentication settings (``tokensmith.cli.config``), without a server: spellings,
the method a key file implies, and what cannot work together. The subprocess tests against the IdP are in
``tests/integration/test_cli_secretless.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tokensmith._protocol.jwt_assertion import ASYMMETRIC_ALGS, HMAC_ALGS
from tokensmith.cli.config import (
    AUTH_METHOD_ALIASES,
    AUTH_METHODS,
    PRIVATE_KEY_ALGS,
    SECRET_JWT_ALGS,
    ConfigError,
    Settings,
    resolve,
)

BASE = {"issuer": "https://idp.test", "client_id": "c"}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Settings resolved from flags, environment variables (set in ``os.environ``, as the checks read the variables
    they name; undone after the test) and a profile."""
    for name in ("TOKENSMITH_CLIENT_SECRET", "PW", "S"):
        monkeypatch.delenv(name, raising=False)

    def make(
        flags: dict[str, Any] | None = None, env: dict[str, str] | None = None, profile: dict[str, Any] | None = None
    ) -> Settings:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        data = {"default_profile": "p", "profiles": {"p": profile}} if profile is not None else {}
        return resolve({**BASE, **(flags or {})}, file_data=data)

    return make


def test_the_cli_algorithm_lists_are_the_librarys() -> None:
    """cli.config keeps its own copy (the fast path must not import the library's); they must not drift."""
    assert set(PRIVATE_KEY_ALGS) == ASYMMETRIC_ALGS
    assert set(SECRET_JWT_ALGS) == HMAC_ALGS


@pytest.mark.parametrize(
    ("spelling", "method"),
    [
        ("private_key_jwt", "private_key_jwt"),
        ("private-key-jwt", "private_key_jwt"),
        ("client_secret_jwt", "client_secret_jwt"),
        ("client-secret-jwt", "client_secret_jwt"),
        ("client_secret_basic", "basic"),
        ("client_secret_post", "post"),
        ("post", "post"),
    ],
)
def test_auth_method_spellings(spelling: str, method: str, settings: Callable[..., Settings]) -> None:
    assert settings(env={"TOKENSMITH_AUTH_METHOD": spelling}).auth_method == method
    assert set(AUTH_METHOD_ALIASES.values()) <= set(AUTH_METHODS)


def test_an_unknown_auth_method_is_refused(settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match=r"auth_method .* must be one of basic, post, private_key_jwt"):
        settings({"auth_method": "private_key"})


@pytest.mark.parametrize("source", ["flag", "env", "profile"])
def test_a_key_file_alone_implies_private_key_jwt_and_client_credentials(
    source: str, settings: Callable[..., Settings]
) -> None:
    if source == "flag":
        resolved = settings({"private_key_file": "/k.pem"})
    elif source == "env":
        resolved = settings(env={"TOKENSMITH_PRIVATE_KEY_FILE": "/k.pem"})
    else:
        resolved = settings(profile={"private_key_file": "/k.pem"})
    assert resolved.auth_method == "private_key_jwt" and resolved.private_key_file == "/k.pem"
    assert resolved.origin["auth_method"] == resolved.origin["private_key_file"]
    assert resolved.grant == "client_credentials" and resolved.confidential
    resolved.check_client_auth()


def test_no_key_file_keeps_basic_and_the_device_flow(settings: Callable[..., Settings]) -> None:
    resolved = settings()
    assert resolved.auth_method == "basic" and "auth_method" not in resolved.origin
    assert resolved.grant == "device_code"


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"auth_method": "private_key_jwt"}, {}, "needs a private key"),
        ({"private_key_file": "/k", "auth_method": "basic"}, {}, "only used by private_key_jwt"),
        ({"private_key_password_env": "PW"}, {"PW": "x"}, "none is given"),
        ({"private_key_file": "/k", "private_key_password_env": "PW"}, {}, "PW .* is not set"),
        ({"key_id": "k"}, {}, "only used by private_key_jwt"),
        ({"assertion_alg": "RS256"}, {}, "only used by private_key_jwt and client_secret_jwt"),
        ({"private_key_file": "/k", "assertion_alg": "None"}, {}, "alg none"),
        ({"private_key_file": "/k", "assertion_alg": "HS256"}, {}, "not one of RS256"),
        ({"auth_method": "client_secret_jwt", "assertion_alg": "RS256"}, {"TOKENSMITH_CLIENT_SECRET": "s"}, "HS256"),
        ({"auth_method": "client_secret_jwt"}, {}, "needs the client secret"),
    ],
)
def test_what_cannot_work_together(
    flags: dict[str, Any], env: dict[str, str], message: str, settings: Callable[..., Settings]
) -> None:
    resolved = settings(flags, env)
    with pytest.raises(ConfigError, match=message):
        resolved.check_client_auth()


@pytest.mark.parametrize(
    ("flags", "env"),
    [
        ({"auth_method": "client_secret_jwt"}, {"TOKENSMITH_CLIENT_SECRET": "s"}),
        ({"auth_method": "client_secret_jwt", "client_secret_env": "S", "assertion_alg": "HS384"}, {}),
        ({"private_key_file": "/k", "key_id": "k", "assertion_alg": "ES256"}, {}),
        ({"private_key_file": "/k", "private_key_password_env": "PW"}, {"PW": "x"}),
        ({"auth_method": "post"}, {}),
    ],
)
def test_what_works(flags: dict[str, Any], env: dict[str, str], settings: Callable[..., Settings]) -> None:
    settings(flags, env).check_client_auth()


@pytest.mark.parametrize("key", ["private_key", "private_key_password"])
def test_a_key_or_its_password_in_a_profile_is_refused(key: str, settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match=rf"holds a secret \({key}\); name its source instead: {key}_"):
        settings(profile={key: "-----BEGIN PRIVATE KEY-----"})


def test_the_readme_profiles_resolve_and_the_deploy_one_is_private_key_jwt() -> None:
    """The README's configuration example uses only known settings, and its secretless profile means what it says."""
    import re
    import sys
    from pathlib import Path

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if "private_key_file" in b]
    data = tomllib.loads(block)
    for name in data["profiles"]:
        resolved = resolve({"profile": name}, {}, file_data=data)
        assert resolved.profile == name
    deploy = resolve({"profile": "deploy"}, {}, file_data=data)
    assert deploy.auth_method == "private_key_jwt" and deploy.grant == "client_credentials"
    deploy.check_client_auth()
