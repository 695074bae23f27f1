"""pytest plugin: run a test suite (flytekit's own) with the tokensmith flytekit bridge installed.

Load it with ``-p flytekit_bridge_plugin`` (this directory on ``PYTHONPATH``). It calls
``tokensmith.integrations.flytekit.install()`` before any conftest is loaded, i.e. before anything imports
flytekit, and at the end of the run prints one line saying whether flytekit's ``token_client`` and exception
classes really were tokensmith's, so that a caller can tell "passed on tokensmith" from "passed on flytekit".
"""

from __future__ import annotations

import sys

import pytest

from tokensmith.integrations import flytekit as bridge

#: Printed in the terminal summary, followed by ``key=value`` facts about the bridge.
SUMMARY_PREFIX = "tokensmith-flytekit-bridge:"


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests() -> None:
    bridge.install()


def bridge_facts() -> dict[str, bool]:
    import tokensmith
    import tokensmith.token_client

    auth = sys.modules.get("flytekit.clients.auth")
    exceptions = sys.modules.get("flytekit.clients.auth.exceptions")
    authenticator = sys.modules.get("flytekit.clients.auth.authenticator")
    return {
        "installed": bridge.installed(),
        "token_client": sys.modules.get("flytekit.clients.auth.token_client") is tokensmith.token_client
        and getattr(auth, "token_client", None) is tokensmith.token_client
        and getattr(authenticator, "token_client", None) is tokensmith.token_client,
        "exceptions": all(
            getattr(module, name, None) is getattr(tokensmith, name)
            for module in (exceptions, authenticator)
            for name in ("AuthenticationError", "AuthenticationPending", "AccessTokenNotFoundError")
        ),
    }


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    facts = " ".join(f"{key}={value}" for key, value in bridge_facts().items())
    terminalreporter.write_line(f"{SUMMARY_PREFIX} {facts}")
