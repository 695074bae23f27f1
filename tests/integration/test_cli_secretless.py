"""Secretless client authentication from the ``tokensmith`` command line, against the real IdP: ``private_key_jwt``
(``--private-key-file``: PEM, encrypted PEM, JWK, JWK Set; RSA and EC) and ``client_secret_jwt`` for client
credentials, the IdP's verdict on a key it does not know (exit 5), a configuration that cannot work (exit 2, one
line, nothing sent), no key material on stderr even with ``--verbose``, profiles and environment variables, the
cached-token fast path (no PyJWT, no ``cli.main``) and ``logout`` (revocation authenticated with the key).

Every test runs the console script as a subprocess in a sandboxed home (``cli_harness.Cli``)."""

from __future__ import annotations

import base64
import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cli_harness import Cli, CountingProxy, one_line
from idp_harness import CC_CLIENT, CSJWT_CLIENT, PKJWT_EC, PKJWT_ES384, PKJWT_RSA, LocalIdP, public_jwk
from tokensmith import ClientSecretJWT, PrivateKeyJWT, TokenClient

pytestmark = pytest.mark.idp

SCOPE = "api:read"
CSJWT_SECRET = CSJWT_CLIENT.client_secret
assert CSJWT_SECRET is not None


def args(idp: LocalIdP, client_id: str) -> list[str]:
    return ["--issuer", idp.issuer, "--client-id", client_id, "--scope", SCOPE, "--flow", "client-credentials"]


def cache_key(idp: LocalIdP, client_id: str) -> str:
    """The library's store key for the client credentials token (the auth method is not part of it)."""
    return TokenClient(issuer=idp.issuer, client_id=client_id, client_secret="unused", scope=SCOPE).cache_key


def write_key(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    path.chmod(mode)
    return path


def pem(key: Any, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8, password: bytes = b"") -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return bytes(key.private_bytes(serialization.Encoding.PEM, fmt, encryption))


def private_jwk(key: Any) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
    jwk: dict[str, Any] = algorithm.to_jwk(key, as_dict=True)
    return {**jwk, "kid": public_jwk(key)["kid"]}


def key_material(data: bytes) -> list[str]:
    """What of a key file must never be shown: every base64 line of a PEM body, or a JWK's private members."""
    text = data.decode()
    if text.lstrip().startswith("{"):
        document = json.loads(text)
        jwks = document.get("keys", [document])
        return [str(jwk[m]) for jwk in jwks for m in ("d", "p", "q", "dp", "dq", "qi") if m in jwk]
    return [line for line in text.splitlines() if line and not line.startswith("-----") and ":" not in line]


def assert_no_key_material(data: bytes, *outputs: str) -> None:
    secrets = key_material(data)
    assert secrets  # the check sees something to look for
    for output in outputs:
        assert "PRIVATE KEY" not in output
        for secret in secrets:
            assert secret not in output


def introspect(idp: LocalIdP, token: str, auth: PrivateKeyJWT | ClientSecretJWT) -> dict[str, Any]:
    """RFC 7662 introspection as the token's own client (the only one the IdP tells), authenticated with ``auth``."""
    form: list[tuple[str, str]] = [("token", token)]
    headers: dict[str, str] = {}
    auth.apply_to(idp.introspection_endpoint, form, headers)
    with requests.Session() as session:
        session.trust_env = False
        response = session.post(idp.introspection_endpoint, data=form, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def imported(stderr: str) -> set[str]:
    """The modules ``-X importtime`` says were imported."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and not line.rstrip().endswith("| package")
    }


# -- private_key_jwt: a token, stored under the usual key, served by the fast path --------------------------------

#: (client, how the key file is written, --auth-method spelling or None for "implied by the key file")
KEY_FILES = {
    "rsa-pem-rfc-name": (PKJWT_RSA.client_id, "pem", "private_key_jwt"),
    "ec-pem-hyphenated": (PKJWT_EC.client_id, "pem", "private-key-jwt"),
    "es384-traditional-pem-implied": (PKJWT_ES384.client_id, "traditional-pem", None),
    "ec-jwk-implied": (PKJWT_EC.client_id, "jwk", None),
    "rsa-jwk-set": (PKJWT_RSA.client_id, "jwk-set", "private_key_jwt"),
}


def key_file_bytes(key: Any, kind: str) -> bytes:
    if kind == "pem":
        return pem(key)
    if kind == "traditional-pem":
        return pem(key, serialization.PrivateFormat.TraditionalOpenSSL)
    if kind == "jwk":
        return json.dumps(private_jwk(key)).encode()
    return json.dumps({"keys": [private_jwk(key)]}).encode()


@pytest.mark.parametrize("case", sorted(KEY_FILES))
def test_private_key_jwt_client_credentials_prints_a_token(case: str, idp: LocalIdP, cli: Cli, tmp_path: Path) -> None:
    client_id, kind, method = KEY_FILES[case]
    key = idp.private_keys[client_id]
    data = key_file_bytes(key, kind)
    path = write_key(tmp_path / "client.key", data)
    flags = [*args(idp, client_id), "--private-key-file", str(path)]
    flags += ["--auth-method", method] if method else []

    proc = cli.run("token", *flags)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr  # 0600: no warning
    stored = cli.stored(cache_key(idp, client_id))
    assert proc.stdout == stored["access_token"] + "\n"
    info = introspect(idp, stored["access_token"], PrivateKeyJWT(client_id, pem(key)))
    assert info["active"] is True and info["client_id"] == client_id and info["scope"] == SCOPE
    assert_no_key_material(data, proc.stdout, json.dumps(stored))

    # The next call is the cached-token fast path, whatever the JWT flags: no cli.main, PyJWT or cryptography.
    again = cli.run("token", *flags, python_flags=("-X", "importtime"))
    assert again.returncode == 0 and again.stdout == proc.stdout
    modules = imported(again.stderr)
    assert "tokensmith.cli.fast" in modules and "tokensmith.cli.main" not in modules
    assert not {m for m in modules if m.split(".")[0] in ("jwt", "cryptography", "click", "requests")}


def test_the_identity_is_recorded_as_private_key_jwt_and_logout_all_revokes_with_the_key(
    idp: LocalIdP, cli: Cli, tmp_path: Path
) -> None:
    key = idp.private_keys[PKJWT_RSA.client_id]
    path = write_key(tmp_path / "rsa.pem", pem(key))
    login = cli.run("login", *args(idp, PKJWT_RSA.client_id), "--private-key-file", str(path))
    assert login.returncode == 0, login.stderr
    assert one_line(login.stderr).startswith(f"Logged in ({idp.issuer} / client pkjwt-rsa); ")
    token = cli.stored(cache_key(idp, PKJWT_RSA.client_id))["access_token"]
    (record,) = cli.identities.glob("*.json")
    settings = json.loads(record.read_text())["settings"]
    assert settings["auth_method"] == "private_key_jwt" and settings["private_key_file"] == str(path)
    assert settings["flow"] == "client-credentials"

    status = cli.run("status", "--json")
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)
    assert row["client_id"] == "pkjwt-rsa" and token not in status.stdout

    # Only the record names the key: the revocation request must authenticate with it, or the IdP refuses.
    out = cli.run("logout", "--all")
    assert out.returncode == 0, out.stderr
    assert "revoked at the server and deleted" in one_line(out.stderr)
    assert cli.token_files() == [] and list(cli.identities.glob("*.json")) == []
    assert introspect(idp, token, PrivateKeyJWT(PKJWT_RSA.client_id, pem(key)))["active"] is False


# -- client_secret_jwt -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["client_secret_jwt", "client-secret-jwt"])
def test_client_secret_jwt_with_the_secret_from_an_env_var(spelling: str, idp: LocalIdP, cli: Cli) -> None:
    env = {"CSJWT_SECRET": CSJWT_SECRET}
    flags = [*args(idp, CSJWT_CLIENT.client_id), "--client-secret-env", "CSJWT_SECRET"]
    # The control: this client is registered for client_secret_jwt only, so the secret in Basic is refused.
    basic = cli.run("token", *flags, env=env)
    assert basic.returncode == 5 and "invalid_client" in one_line(basic.stderr)

    proc = cli.run("token", *flags, "--auth-method", spelling, env=env)
    assert (proc.returncode, proc.stderr) == (0, "")
    stored = cli.stored(cache_key(idp, CSJWT_CLIENT.client_id))
    assert proc.stdout == stored["access_token"] + "\n"
    info = introspect(idp, stored["access_token"], ClientSecretJWT(CSJWT_CLIENT.client_id, CSJWT_SECRET))
    assert info["active"] is True and info["client_id"] == CSJWT_CLIENT.client_id


def test_client_secret_jwt_hs512_and_logout(idp: LocalIdP, cli: Cli) -> None:
    env = {"TOKENSMITH_CLIENT_SECRET": CSJWT_SECRET}
    flags = [*args(idp, CSJWT_CLIENT.client_id), "--auth-method", "client_secret_jwt", "--assertion-alg", "HS512"]
    proc = cli.run("token", *flags, env=env)
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    out = cli.run("logout", *flags, env=env)
    assert out.returncode == 0 and "revoked at the server and deleted" in one_line(out.stderr)
    assert introspect(idp, token, ClientSecretJWT(CSJWT_CLIENT.client_id, CSJWT_SECRET))["active"] is False


# -- the IdP's verdict on a key it does not know -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa-pem", "ec-jwk"])
def test_a_wrong_key_is_rejected_by_the_idp_exit_5_without_key_material(
    kind: str, idp: LocalIdP, cli: Cli, tmp_path: Path
) -> None:
    if kind == "rsa-pem":
        client_id, data = PKJWT_RSA.client_id, pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    else:
        client_id, data = PKJWT_EC.client_id, json.dumps(private_jwk(ec.generate_private_key(ec.SECP256R1()))).encode()
    path = write_key(tmp_path / "stranger.key", data)
    for verbose in ([], ["--verbose"]):
        proc = cli.run("token", *args(idp, client_id), "--private-key-file", str(path), *verbose)
        assert proc.returncode == 5 and proc.stdout == ""
        last = proc.stderr.splitlines()[-1]
        assert "invalid_client" in last and "--private-key-file" in last and "Traceback" not in proc.stderr
        assert_no_key_material(data, proc.stderr)
    assert cli.token_files() == []


# -- a configuration that cannot work: exit 2, one line, nothing sent ---------------------------------------------


def _unusable(tmp_path: Path, idp: LocalIdP) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """(extra flags, environment, what the line says) for each way a private_key_jwt setup cannot work."""
    rsa_key = idp.private_keys[PKJWT_RSA.client_id]
    good = write_key(tmp_path / "good.pem", pem(rsa_key))
    encrypted = write_key(tmp_path / "encrypted.pem", pem(rsa_key, password=b"correct horse"))
    body = pem(rsa_key).decode().splitlines()
    truncated = write_key(tmp_path / "truncated.pem", "\n".join([*body[:5], body[-1]]) + "\n")
    public_jwk_file = write_key(tmp_path / "public.jwk", json.dumps(public_jwk(rsa_key)))
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    dsa_pem = (
        "-----BEGIN PRIVATE KEY-----\n"  # a DSA key: parsed by cryptography, not a JWS key type
        + base64.encodebytes(_dsa_der()).decode()
        + "-----END PRIVATE KEY-----\n"
    )
    return {
        "missing": (["--private-key-file", str(tmp_path / "nope.pem")], {}, "cannot read the private key file"),
        "directory": (["--private-key-file", str(tmp_path)], {}, "is a directory"),
        "empty": (["--private-key-file", str(write_key(tmp_path / "empty.pem", ""))], {}, "is empty"),
        "garbage": (
            ["--private-key-file", str(write_key(tmp_path / "garbage", "not a key at all\n"))],
            {},
            "neither PEM nor a JWK",
        ),
        "bad-json": (
            ["--private-key-file", str(write_key(tmp_path / "bad.json", '{"kty": "RSA", "d": '))],
            {},
            "neither PEM nor valid JWK JSON",
        ),
        "public-pem": (
            ["--private-key-file", str(write_key(tmp_path / "public.pem", public_pem))],
            {},
            "holds no private key",
        ),
        "public-jwk": (["--private-key-file", str(public_jwk_file)], {}, "no private part"),
        "truncated-pem": (["--private-key-file", str(truncated)], {}, "holds no usable PEM private key"),
        "unsupported-key-type": (
            ["--private-key-file", str(write_key(tmp_path / "dsa.pem", dsa_pem))],
            {},
            "not a private key tokensmith can sign with",
        ),
        "openssh-format": (
            [
                "--private-key-file",
                str(write_key(tmp_path / "id_rsa", pem(rsa_key, serialization.PrivateFormat.OpenSSH))),
            ],
            {},
            "ssh-keygen -p -m PKCS8",
        ),
        "encrypted-without-password": (["--private-key-file", str(encrypted)], {}, "--private-key-password-env"),
        "wrong-password": (
            ["--private-key-file", str(encrypted), "--private-key-password-env", "KEY_PASSWORD"],
            {"KEY_PASSWORD": "wrong horse"},
            "wrong password in KEY_PASSWORD",
        ),
        "password-variable-unset": (
            ["--private-key-file", str(encrypted), "--private-key-password-env", "KEY_PASSWORD"],
            {},
            "KEY_PASSWORD",
        ),
        "alg-none": (["--private-key-file", str(good), "--assertion-alg", "none"], {}, "alg none"),
        "alg-does-not-fit-the-key": (
            ["--private-key-file", str(good), "--assertion-alg", "ES256"],
            {},
            "does not fit the private key",
        ),
        "alg-unknown": (["--private-key-file", str(good), "--assertion-alg", "RS1"], {}, "is not one of"),
        "method-without-key": (["--auth-method", "private_key_jwt"], {}, "--private-key-file"),
        "key-with-another-method": (
            ["--private-key-file", str(good), "--auth-method", "post"],
            {"TOKENSMITH_CLIENT_SECRET": "not-this-secret-123"},
            "only used by private_key_jwt",
        ),
        "csjwt-without-secret": (["--auth-method", "client_secret_jwt"], {}, "needs the client secret"),
    }


def _dsa_der() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import dsa

    key = dsa.generate_private_key(key_size=1024)
    return bytes(
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


UNUSABLE = [
    "missing",
    "directory",
    "empty",
    "garbage",
    "bad-json",
    "public-pem",
    "public-jwk",
    "truncated-pem",
    "unsupported-key-type",
    "openssh-format",
    "encrypted-without-password",
    "wrong-password",
    "password-variable-unset",
    "alg-none",
    "alg-does-not-fit-the-key",
    "alg-unknown",
    "method-without-key",
    "key-with-another-method",
    "csjwt-without-secret",
]


@pytest.mark.parametrize("case", UNUSABLE)
def test_an_unusable_key_setup_is_exit_2_in_one_line_and_nothing_is_sent(
    case: str, idp: LocalIdP, idp_proxy: CountingProxy, cli: Cli, tmp_path: Path
) -> None:
    cases = _unusable(tmp_path, idp)
    assert sorted(cases) == sorted(UNUSABLE)
    extra, env, says = cases[case]
    flags = ["--token-endpoint", idp_proxy.url("/token"), "--client-id", PKJWT_RSA.client_id, "--scope", SCOPE]
    for command in (["token"], ["login"], ["token", "--verbose"]):
        proc = cli.run(*command, *flags, *extra, env=env)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        line = one_line(proc.stderr)
        assert line.startswith("tokensmith: ") and says in line and "Traceback" not in line
        for value in env.values():
            assert value not in line
        for name in ("good.pem", "encrypted.pem", "truncated.pem"):
            assert_no_key_material((tmp_path / name).read_bytes(), line)
    assert idp_proxy.seen() == []  # refused before any request
    assert cli.token_files() == []


# -- encrypted PEM, permissions, --verbose --------------------------------------------------------------------------


def test_an_encrypted_pem_with_its_password_from_env(idp: LocalIdP, cli: Cli, tmp_path: Path) -> None:
    key = idp.private_keys[PKJWT_EC.client_id]
    data = pem(key, password=b"correct horse battery")
    path = write_key(tmp_path / "encrypted.pem", data)
    assert b"ENCRYPTED" in data
    flags = [*args(idp, PKJWT_EC.client_id), "--private-key-file", str(path)]
    proc = cli.run("token", *flags, "--private-key-password-env", "EC_PW", env={"EC_PW": "correct horse battery"})
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    stored = cli.stored(cache_key(idp, PKJWT_EC.client_id))
    assert proc.stdout == stored["access_token"] + "\n"
    assert introspect(idp, stored["access_token"], PrivateKeyJWT(PKJWT_EC.client_id, pem(key)))["active"] is True


def test_a_key_file_readable_by_others_is_used_with_one_warning(idp: LocalIdP, cli: Cli, tmp_path: Path) -> None:
    path = write_key(tmp_path / "shared.pem", pem(idp.private_keys[PKJWT_RSA.client_id]), mode=0o644)
    proc = cli.run("token", *args(idp, PKJWT_RSA.client_id), "--private-key-file", str(path))
    assert proc.returncode == 0 and proc.stdout.strip()
    assert one_line(proc.stderr) == (
        f"tokensmith: warning: the private key file {path} is accessible by group or others (mode 0644); chmod 600 it"
    )
    path.chmod(0o600)
    again = cli.run("token", *args(idp, PKJWT_RSA.client_id), "--private-key-file", str(path), "--force-refresh")
    assert again.returncode == 0 and again.stderr == ""


def test_no_key_material_password_or_assertion_on_stderr_even_with_verbose(
    idp: LocalIdP, cli: Cli, tmp_path: Path
) -> None:
    key = idp.private_keys[PKJWT_RSA.client_id]
    data = pem(key, password=b"pw-for-the-test")
    path = write_key(tmp_path / "rsa.pem", data)
    flags = [*args(idp, PKJWT_RSA.client_id), "--private-key-file", str(path), "--private-key-password-env", "RSA_PW"]
    proc = cli.run("token", *flags, "--verbose", env={"RSA_PW": "pw-for-the-test"})
    assert proc.returncode == 0, proc.stderr
    assert "DEBUG" in proc.stderr and "POST" in proc.stderr  # --verbose did log the token request
    assert_no_key_material(data, proc.stderr)
    assert_no_key_material(pem(key), proc.stderr)  # nor the decrypted key
    assert "pw-for-the-test" not in proc.stderr
    assert not re.search(r"eyJ[A-Za-z0-9_-]{8,}", proc.stderr)  # no JWT (the assertion) at all
    assert proc.stdout.strip() not in proc.stderr


# -- settings from a profile and from the environment ---------------------------------------------------------------


@pytest.mark.parametrize("source", ["profile", "environment"])
def test_private_key_file_from_a_profile_or_the_environment_then_logout(
    source: str, idp: LocalIdP, cli: Cli, tmp_path: Path
) -> None:
    key = idp.private_keys[PKJWT_ES384.client_id]
    path = write_key(tmp_path / "es384.pem", pem(key, password=b"s3cret-pw"))
    env = {"ES384_PW": "s3cret-pw"}
    if source == "profile":
        cli.write_config(
            'default_profile = "ci"\n[profiles.ci]\n'
            f'issuer = "{idp.issuer}"\nclient_id = "{PKJWT_ES384.client_id}"\nscope = "{SCOPE}"\n'
            f'flow = "client-credentials"\nprivate_key_file = "{path}"\nprivate_key_password_env = "ES384_PW"\n'
            'assertion_alg = "ES384"\n'
        )
    else:
        env |= {
            "TOKENSMITH_ISSUER": idp.issuer,
            "TOKENSMITH_CLIENT_ID": PKJWT_ES384.client_id,
            "TOKENSMITH_SCOPE": SCOPE,
            "TOKENSMITH_PRIVATE_KEY_FILE": str(path),
            "TOKENSMITH_PRIVATE_KEY_PASSWORD_ENV": "ES384_PW",
            "TOKENSMITH_ASSERTION_ALG": "ES384",
        }
    # No --flow: a private key alone makes a confidential client, hence client credentials.
    proc = cli.run("token", env=env)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    stored = cli.stored(cache_key(idp, PKJWT_ES384.client_id))
    assert proc.stdout == stored["access_token"] + "\n"
    auth = PrivateKeyJWT(PKJWT_ES384.client_id, pem(key))
    assert introspect(idp, stored["access_token"], auth)["active"] is True

    status = cli.run("status", env=env)
    assert status.returncode == 0 and PKJWT_ES384.client_id in status.stdout

    out = cli.run("logout", env=env)
    assert out.returncode == 0, out.stderr
    assert "revoked at the server and deleted" in one_line(out.stderr)
    assert cli.token_files() == []
    assert introspect(idp, stored["access_token"], auth)["active"] is False


@pytest.mark.parametrize("key", ["private_key", "private_key_password"])
def test_a_private_key_or_its_password_in_the_profile_is_a_usage_error(key: str, idp: LocalIdP, cli: Cli) -> None:
    cli.write_config(
        f'default_profile = "leaky"\n[profiles.leaky]\nissuer = "{idp.issuer}"\nclient_id = "pkjwt-rsa"\n'
        f'{key} = "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBg"\n'
    )
    for command in ("token", "login", "status"):
        proc = cli.run(command)
        assert proc.returncode == 2 and proc.stdout == ""
        line = one_line(proc.stderr)
        assert f"holds a secret ({key})" in line and ("private_key_file" in line or "private_key_password_env" in line)
        assert "MIIEvQIBADANBg" not in line


def test_help_config_documents_the_key_settings(cli: Cli) -> None:
    proc = cli.run("help", "config")
    assert proc.returncode == 0
    for name in ("private_key_file", "private_key_password_env", "key_id", "assertion_alg", "client_secret_jwt"):
        assert name in proc.stdout
    assert "``" not in proc.stdout and "this module" not in proc.stdout  # for the person, not the developer
    usage = cli.run("token", "--help")
    for flag in ("--private-key-file", "--private-key-password-env", "--key-id", "--assertion-alg"):
        assert flag in usage.stdout


def test_the_key_file_is_not_a_secret_source_for_basic(idp: LocalIdP, cli: Cli, tmp_path: Path) -> None:
    """A key file with the secret methods' other settings left alone still authenticates with the key, not with
    TOKENSMITH_CLIENT_SECRET (which private_key_jwt never reads)."""
    path = write_key(tmp_path / "ec.pem", pem(idp.private_keys[PKJWT_EC.client_id]))
    proc = cli.run(
        "token",
        *args(idp, PKJWT_EC.client_id),
        "--private-key-file",
        str(path),
        env={"TOKENSMITH_CLIENT_SECRET": CC_CLIENT.client_secret or ""},
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(cli.token_file(cache_key(idp, PKJWT_EC.client_id)).stat().st_mode) == 0o600


def test_the_assertion_audience_reaches_the_assertion(idp: LocalIdP, cli: Cli, tmp_path: Path) -> None:
    """``--assertion-audience``: ``issuer`` (Auth0 wants the tenant URL) is accepted by the IdP, which takes the
    issuer or the endpoint (RFC 7523 §3); an audience that is neither is refused by it (exit 5), so the flag
    really is the assertion's ``aud``; ``issuer`` without an issuer is a usage error before anything is sent."""
    key = write_key(tmp_path / "key.pem", pem(idp.private_keys[PKJWT_RSA.client_id]))
    flags = [*args(idp, PKJWT_RSA.client_id), "--private-key-file", str(key)]
    as_issuer = cli.run("token", *flags, "--assertion-audience", "issuer", "--force-refresh")
    assert (as_issuer.returncode, as_issuer.stderr) == (0, ""), as_issuer.stderr
    elsewhere = cli.run("token", *flags, "--assertion-audience", "https://elsewhere.example/", "--force-refresh")
    assert elsewhere.returncode == 5 and "invalid_client" in one_line(elsewhere.stderr)
    explicit = [a if a != "--issuer" else "--token-endpoint" for a in flags]
    explicit[explicit.index("--token-endpoint") + 1] = idp.token_endpoint
    no_issuer = cli.run("token", *explicit, "--assertion-audience", "issuer")
    assert no_issuer.returncode == 2 and "no issuer" in one_line(no_issuer.stderr)
    basic = cli.run("token", *args(idp, CC_CLIENT.client_id), "--assertion-audience", "issuer")
    assert basic.returncode == 2 and "only used by private_key_jwt" in one_line(basic.stderr)
