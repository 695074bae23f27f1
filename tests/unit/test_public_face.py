"""Issue 7 items 18 and 19: a public face users never look behind, and an honestly pure protocol core."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import requests

import tokensmith

PROTOCOL = Path(tokensmith.__file__).parent / "_protocol"


def test_every_public_class_is_importable_from_tokensmith_and_says_so() -> None:
    for name in tokensmith.__all__:
        obj = getattr(tokensmith, name)
        if isinstance(obj, type):
            assert obj.__module__ == "tokensmith", name
    for needed in (
        "TokenClient",
        "Token",
        "DevicePrompt",
        "PollProgress",
        "PollOutcome",
        "NoClientAuth",
        "ClientSecretBasic",
        "ClientSecretPost",
        "FileStore",
        "KeyringStore",
        "MemoryStore",
        "LoginRequired",
        "LoginInProgress",
        "NonJSONResponse",
        "StoreError",
        "device_login",
        "AsyncTokenClient",
        "AsyncTransport",
        "RenewalPolicy",
        "RenewalState",
        "RenewalStarted",
        "RenewalSucceeded",
        "RenewalFailed",
        "ServedStale",
    ):
        assert needed in tokensmith.__all__, needed


def test_every_error_class_is_exported() -> None:
    import tokensmith.exceptions as exceptions

    for name in dir(exceptions):
        obj = getattr(exceptions, name)
        if isinstance(obj, type) and issubclass(obj, tokensmith.TokensmithError) and not name.startswith("_"):
            assert getattr(tokensmith, name) is obj


def test_device_login_returns_a_token() -> None:
    import inspect

    from tokensmith.device import device_login, poll_device_token

    assert inspect.signature(device_login).return_annotation in ("Token", tokensmith.Token)
    assert inspect.signature(poll_device_token).return_annotation in ("Token", tokensmith.Token)
    # ``timeout`` is the HTTP timeout everywhere; the person's deadline has its own name.
    assert "login_timeout" in inspect.signature(device_login).parameters
    assert "login_timeout" in inspect.signature(tokensmith.TokenClient.login).parameters


def test_properties_never_touch_the_network() -> None:
    """No I/O in properties: before ``discover()``, an issuer-only client's endpoints are unknown (None)."""
    calls: list[str] = []

    class Spy(requests.Session):
        def request(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def, override]
            calls.append(url)
            raise AssertionError("no request expected")

    client = tokensmith.TokenClient.from_issuer("https://idp.example", "c", "s", session=Spy())
    assert client.metadata is None and client.token_endpoint is None
    assert client.device_authorization_endpoint is None
    assert isinstance(client.auth, tokensmith.ClientSecretBasic)
    assert client.peek() is None
    assert calls == []


def _protocol_modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text())) for path in sorted(PROTOCOL.glob("*.py"))]


def test_the_protocol_core_logs_nothing_and_reads_no_environment() -> None:
    for path, tree in _protocol_modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                banned = {"logging", "os", "time", "socket", "requests", "threading"}
                banned |= {"secrets", "random", "uuid", "selectors", "socketserver", "webbrowser", "http.server"}
                assert not banned & set(names), (path, names)  # randomness is passed in (PKCE, state, nonce)
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("environ", "getenv", "getLogger"), (path, node.attr)


def test_the_protocol_core_keeps_no_mutable_module_state() -> None:
    mutable = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
    for path, tree in _protocol_modules():
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, mutable):
                raise AssertionError(f"{path.name}:{node.lineno}: module-level mutable state")
            if isinstance(node, ast.FunctionDef):
                for deco in node.decorator_list:
                    assert "cache" not in ast.unparse(deco), f"{path.name}: {node.name} caches at module level"


def test_protocol_responses_are_bytes_only() -> None:
    from tokensmith._protocol.messages import HttpResponse

    assert [f.name for f in dataclasses.fields(HttpResponse)] == ["status_code", "headers", "body", "received_at"]
