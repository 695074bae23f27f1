"""``tokensmith.integrations.flytekit``: flytekit's ``token_client`` and auth exceptions become tokensmith's.

Every scenario runs in a clean interpreter (a subprocess): the bridge changes process-wide state, and the point
is to show both import orders (flytekit first, then ``install()``; ``install()`` first, then flytekit).
Patching ``flytekit.clients.auth.token_client.*`` is how flytekit's own tests and its users' tests drive the
authenticators, so it is the contract here; the real flows against the IdP are in
``tests/integration/test_flytekit_bridge_idp.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("flytekit", reason="flytekit is not installed (it is in the dev extra)")

NAMES = ("AuthenticationError", "AuthenticationPending", "AccessTokenNotFoundError")

#: Prints one JSON line: where flytekit's names point. ``bridged`` is everything the bridge must achieve.
FACTS = """
import json, sys
import tokensmith, tokensmith.token_client as ts_tc
import flytekit.clients.auth as pkg
import flytekit.clients.auth.exceptions as E
import flytekit.clients.auth.authenticator as A
import flytekit.clients.auth.auth_client as AC
from flytekit.clients.auth import token_client as via_from
import flytekit.clients.auth.token_client as via_import
names = ("AuthenticationError", "AuthenticationPending", "AccessTokenNotFoundError")
facts = {
    "sys_modules": sys.modules["flytekit.clients.auth.token_client"] is ts_tc,
    "package_attribute": pkg.token_client is ts_tc,
    "authenticator_binding": A.token_client is ts_tc,
    "import_statements": via_from is ts_tc and via_import is ts_tc,
    "exceptions_module": all(getattr(E, n) is getattr(tokensmith, n) for n in names),
    "authenticator_exceptions": all(getattr(A, n) is getattr(tokensmith, n) for n in names),
    "auth_client_exception": AC.AccessTokenNotFoundError is tokensmith.AccessTokenNotFoundError,
}
facts = {"bridged": facts, "all": all(facts.values()), "any": any(facts.values()),
         "token_client_name": ts_tc.__name__, "token_client_spec": ts_tc.__spec__.name,
         "finders": sum(type(f).__name__ == "_Finder" for f in sys.meta_path)}
"""


def _run(*parts: str) -> dict[str, object]:
    """Run the code ``parts`` (each dedented on its own) in a fresh interpreter; it must end by printing one
    JSON object."""
    code = "\n".join(textwrap.dedent(part) for part in parts)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


BRIDGED = {
    "sys_modules": True,
    "package_attribute": True,
    "authenticator_binding": True,
    "import_statements": True,
    "exceptions_module": True,
    "authenticator_exceptions": True,
    "auth_client_exception": True,
}


def test_importing_the_bridge_imports_neither_flytekit_nor_requests() -> None:
    out = _run(
        """
        import json, sys
        import tokensmith.integrations.flytekit as bridge
        print(json.dumps({"loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("flytekit", "requests")),
                          "installed": bridge.installed(),
                          "finders": sum(type(f).__name__ == "_Finder" for f in sys.meta_path)}))
        """
    )
    assert out == {"loaded": [], "installed": False, "finders": 0}


def test_without_the_bridge_flytekit_keeps_its_own_module_and_classes() -> None:
    """The control for the two tests below: the facts are all False when nothing is installed."""
    out = _run(FACTS, "print(json.dumps(facts))")
    assert out["any"] is False and out["finders"] == 0


def test_flytekit_imported_then_install() -> None:
    out = _run(
        """
        import json, sys
        import flytekit
        import flytekit.clients.auth.token_client as flytekit_tc
        from flytekit.clients.auth.exceptions import AuthenticationError as flytekit_error
        assert "flytekit.clients.auth.authenticator" in sys.modules
        import tokensmith.integrations.flytekit as bridge
        bridge.install()
        bridge.install()  # idempotent
        displaced = flytekit_tc.AuthenticationError.__module__  # flytekit's old module, still held here
        """,
        FACTS,
        """
        facts["displaced_module_raises"] = displaced
        facts["old_class_still_flytekits"] = flytekit_error is not tokensmith.AuthenticationError
        print(json.dumps(facts))
        """,
    )
    assert out["bridged"] == BRIDGED
    assert out["finders"] == 1
    # tokensmith's module keeps its own identity: it is only *also* known under flytekit's name.
    assert (out["token_client_name"], out["token_client_spec"]) == ("tokensmith.token_client",) * 2
    # Whoever still holds flytekit's displaced token_client gets tokensmith's exception classes from it.
    assert out["displaced_module_raises"] == "tokensmith"
    # A name imported by *this* (non-flytekit) script before install() is not rebound: documented limitation.
    assert out["old_class_still_flytekits"] is True


def test_install_then_flytekit_imported() -> None:
    out = _run(
        """
        import json, sys
        import tokensmith.integrations.flytekit as bridge
        bridge.install()
        assert not any(m.split(".")[0] == "flytekit" for m in sys.modules)
        import flytekit
        import flytekit.clients.auth.exceptions as E
        loader_is_real = type(E.__loader__).__name__ == "SourceFileLoader" and E.__spec__.loader is E.__loader__
        """,
        FACTS,
        """
        facts["loader_is_real"] = loader_is_real
        print(json.dumps(facts))
        """,
    )
    assert out["bridged"] == BRIDGED
    assert (out["token_client_name"], out["token_client_spec"]) == ("tokensmith.token_client",) * 2
    assert out["finders"] == 1 and out["loader_is_real"] is True


@pytest.mark.parametrize("order", ["flytekit-first", "install-first"])
def test_uninstall_restores_flytekit_and_install_works_again(order: str) -> None:
    first = "import flytekit\nbridge.install()" if order == "flytekit-first" else "bridge.install()\nimport flytekit"
    out = _run(
        "import tokensmith.integrations.flytekit as bridge\n" + first + "\nbridge.uninstall()\nbridge.uninstall()\n",
        FACTS,
        """
import flytekit.clients.auth.token_client as restored
facts["restored"] = {
    "token_client_is_flytekits": restored.__name__ == "flytekit.clients.auth.token_client",
    "everyone_has_it": pkg.token_client is restored and A.token_client is restored,
    "same_classes_everywhere": all(getattr(A, n) is getattr(E, n) for n in names)
    and restored.AuthenticationError is E.AuthenticationError,
    "classes_are_flytekits": all(getattr(E, n).__module__ == "flytekit.clients.auth.exceptions" for n in names),
    "installed": bridge.installed(),
}
after_uninstall = facts
bridge.install()
""",
        FACTS,
        """
print(json.dumps({"after_uninstall": after_uninstall, "reinstalled": facts}))
""",
    )
    after, again = out["after_uninstall"], out["reinstalled"]
    assert isinstance(after, dict) and isinstance(again, dict)
    assert after["any"] is False and after["finders"] == 0
    assert after["restored"] == {
        "token_client_is_flytekits": True,
        "everyone_has_it": True,
        "same_classes_everywhere": True,
        "classes_are_flytekits": True,
        "installed": False,
    }
    assert again["bridged"] == BRIDGED and again["finders"] == 1


def test_install_without_flytekit_registers_only_the_hook() -> None:
    out = _run(
        """
        import json, sys
        sys.modules["flytekit"] = None  # as if flytekit were not installed: `import flytekit` raises ImportError
        import tokensmith.integrations.flytekit as bridge
        bridge.install()
        try:
            import flytekit
        except ImportError:
            importable = False
        else:
            importable = True
        print(json.dumps({"installed": bridge.installed(), "importable": importable,
                          "finders": sum(type(f).__name__ == "_Finder" for f in sys.meta_path),
                          "flytekit_modules": sorted(m for m in sys.modules if m.startswith("flytekit."))}))
        """
    )
    assert out == {"installed": True, "importable": False, "finders": 1, "flytekit_modules": []}


def test_concurrent_installs_register_one_hook() -> None:
    out = _run(
        """
        import json, sys, threading
        import tokensmith.integrations.flytekit as bridge
        barrier = threading.Barrier(16)
        def go():
            barrier.wait()
            bridge.install()
        threads = [threading.Thread(target=go) for _ in range(16)]
        for t in threads: t.start()
        for t in threads: t.join()
        installed = sum(type(f).__name__ == "_Finder" for f in sys.meta_path)
        threads = [threading.Thread(target=bridge.uninstall) for _ in range(16)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(json.dumps({"installed": installed,
                          "after": sum(type(f).__name__ == "_Finder" for f in sys.meta_path)}))
        """
    )
    assert out == {"installed": 1, "after": 0}


def test_flytekit_plugins_are_rebound_but_not_user_modules() -> None:
    """``flytekitplugins.*`` (the IAP plugin imports ``AccessTokenNotFoundError``) are rebound like flytekit's
    own modules; an application module that imported the names before ``install()`` keeps flytekit's (call
    ``install()`` first)."""
    out = _run(
        """
        import json, sys, types
        import flytekit.clients.auth.exceptions as E
        import flytekit.clients.auth.token_client as flytekit_tc
        for name in ("flytekitplugins.fake", "myapp"):
            module = types.ModuleType(name)
            module.AccessTokenNotFoundError = E.AccessTokenNotFoundError
            module.get_token = flytekit_tc.get_token
            sys.modules[name] = module
        import tokensmith, tokensmith.token_client
        import tokensmith.integrations.flytekit as bridge
        bridge.install()
        def bridged(name):
            module = sys.modules[name]
            return (module.AccessTokenNotFoundError is tokensmith.AccessTokenNotFoundError,
                    module.get_token is tokensmith.token_client.get_token)
        print(json.dumps({"plugin": bridged("flytekitplugins.fake"), "app": bridged("myapp")}))
        """
    )
    assert out == {"plugin": [True, True], "app": [False, False]}


@pytest.mark.parametrize("order", ["flytekit-first", "install-first"])
def test_flytekit_authenticator_tells_verdicts_from_failures(order: str) -> None:
    """With ``flytekit.clients.auth.token_client.get_token`` patched (as flytekit's own tests do), its
    ``DeviceCodeAuthenticator.refresh_credentials`` falls back to a device login on tokensmith's ``InvalidGrant``
    (its ``except AuthenticationError`` catches it), but lets tokensmith's ``ConnectError`` (a
    ``requests.ConnectionError``) through without starting a login or deleting the stored credentials."""
    first = "import flytekit\nbridge.install()" if order == "flytekit-first" else "bridge.install()\nimport flytekit"
    out = _run(
        "import tokensmith.integrations.flytekit as bridge\n"
        + first
        + """
import json
from unittest.mock import patch
import requests
import tokensmith
from tokensmith._requests_errors import connect_error
from flytekit.clients.auth.authenticator import ClientConfig, DeviceCodeAuthenticator, StaticClientConfigStore
from flytekit.clients.auth.keyring import Credentials
from flytekit.clients.auth.token_client import DeviceCodeResponse

cfg = StaticClientConfigStore(ClientConfig(token_endpoint="https://idp.example/token", authorization_endpoint="a",
    redirect_uri="r", client_id="c", device_authorization_endpoint="https://idp.example/device"))
results = {}
for name, error in (("verdict", tokensmith.InvalidGrant("invalid_grant", status_code=400)),
                    ("network", connect_error("connection refused", request_sent=False))):
    with patch("flytekit.clients.auth.authenticator.KeyringStore") as store, \\
         patch("flytekit.clients.auth.token_client.get_token", side_effect=error) as get_token, \\
         patch("flytekit.clients.auth.token_client.get_device_code") as get_device_code, \\
         patch("flytekit.clients.auth.token_client.poll_token_endpoint") as poll:
        assert tokensmith.token_client.get_token is get_token  # the patch acts on tokensmith's module
        store.retrieve.return_value = Credentials("old-access", "old-refresh", "dns:///flyte")
        get_device_code.return_value = DeviceCodeResponse("d", "U", "https://v", 600, 5)
        poll.return_value = ("new-access", "new-refresh", 60)
        authn = DeviceCodeAuthenticator("dns:///flyte", cfg)
        try:
            authn.refresh_credentials()
            raised = None
        except Exception as e:
            raised = [type(e).__name__, isinstance(e, requests.ConnectionError),
                      isinstance(e, tokensmith.ConnectError)]
        results[name] = {"raised": raised, "refresh_calls": get_token.call_count,
                         "device_logins": get_device_code.call_count, "deleted": store.delete.call_count,
                         "refresh_token": authn._creds.refresh_token}
print(json.dumps(results))
"""
    )
    assert out["verdict"] == {
        "raised": None,
        "refresh_calls": 1,
        "device_logins": 1,
        "deleted": 1,
        "refresh_token": "new-refresh",
    }
    assert out["network"] == {
        "raised": ["ConnectError", True, True],
        "refresh_calls": 1,
        "device_logins": 0,
        "deleted": 0,
        "refresh_token": "old-refresh",
    }


def test_the_names_match_flytekits_exception_module() -> None:
    """The bridge replaces exactly the classes flytekit's exceptions module defines."""
    import flytekit.clients.auth.exceptions as flytekit_exceptions

    from tokensmith.integrations import flytekit as bridge

    defined = sorted(
        name
        for name, value in vars(flytekit_exceptions).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    )
    assert defined == sorted(bridge.EXCEPTION_NAMES) == sorted(NAMES)
