"""flytekit's own unit tests of its auth clients (``tests/flytekit/unit/clients/``) pass on tokensmith.

flytekit's test files are not ours to copy into this repository and CI cannot fetch GitHub, so this runs only
when ``FLYTEKIT_TESTS_DIR`` points at an extracted copy of flytekit's tests at the pinned version, e.g.::

    git -C <flytekit clone> archive v1.16.24 tests/__init__.py tests/flytekit/__init__.py \\
        tests/flytekit/conftest.py tests/flytekit/unit/__init__.py tests/flytekit/unit/conftest.py \\
        tests/flytekit/unit/clients | tar -x -C /tmp/flytekit-tests
    FLYTEKIT_TESTS_DIR=/tmp/flytekit-tests .venv/bin/python -m pytest -m flytekit_upstream

It runs them twice in clean interpreters: as they are (the baseline), and with the bridge installed by
``tests/flytekit_bridge_plugin.py`` before anything imports flytekit. The bridged run must collect the same
tests, fail none, and report that flytekit's ``token_client`` and exception classes really were tokensmith's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from flytekit_bridge_plugin import SUMMARY_PREFIX

pytestmark = pytest.mark.flytekit_upstream

TESTS_DIR = Path(__file__).resolve().parents[1]
CLIENTS_TESTS = Path("tests") / "flytekit" / "unit" / "clients"


@dataclass(frozen=True)
class Outcome:
    tests: int
    failures: int
    errors: int
    skipped: int
    stdout: str

    @property
    def passed(self) -> int:
        return self.tests - self.failures - self.errors - self.skipped


def _upstream_dir() -> Path:
    value = os.environ.get("FLYTEKIT_TESTS_DIR")
    if not value:
        pytest.skip(
            "FLYTEKIT_TESTS_DIR is not set: point it at an extracted copy of flytekit's tests (v1.16.24) to run "
            "flytekit's tests/flytekit/unit/clients with the bridge (see this module's docstring)"
        )
    root = Path(value).resolve()
    if not (root / CLIENTS_TESTS).is_dir():
        pytest.fail(f"FLYTEKIT_TESTS_DIR={value!r} has no {CLIENTS_TESTS}/ (extract flytekit's tests there)")
    return root


def _run(root: Path, tmp_path: Path, name: str, *, bridged: bool) -> Outcome:
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")  # flytekit's tests, not this project's pytest settings
    junit = tmp_path / f"{name}.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-c", str(ini), "--rootdir", str(root)]
    command += ["-p", "no:cacheprovider", f"--junitxml={junit}", str(CLIENTS_TESTS)]
    if bridged:
        command[3:3] = ["-p", "flytekit_bridge_plugin"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert junit.is_file(), f"{name}: pytest wrote no report (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")  # type: ignore[assignment]
    assert suite is not None
    return Outcome(
        tests=int(suite.get("tests", "0")),
        failures=int(suite.get("failures", "0")),
        errors=int(suite.get("errors", "0")),
        skipped=int(suite.get("skipped", "0")),
        stdout=done.stdout + done.stderr,
    )


def test_flytekit_clients_tests_pass_with_the_bridge(tmp_path: Path) -> None:
    root = _upstream_dir()
    pytest.importorskip("flytekit", reason="flytekit is not installed (it is in the dev extra)")
    pytest.importorskip("mock", reason="flytekit's tests/flytekit/unit/clients/test_friendly.py imports `mock`")

    baseline = _run(root, tmp_path, "baseline", bridged=False)
    assert baseline.tests > 0 and baseline.errors == 0, baseline.stdout

    bridged = _run(root, tmp_path, "bridged", bridged=True)
    summary = [line for line in bridged.stdout.splitlines() if line.startswith(SUMMARY_PREFIX)]
    assert summary == [f"{SUMMARY_PREFIX} installed=True token_client=True exceptions=True"], bridged.stdout
    assert (bridged.failures, bridged.errors) == (0, 0), bridged.stdout
    assert (bridged.tests, bridged.skipped) == (baseline.tests, baseline.skipped), (baseline, bridged)
    assert bridged.passed == baseline.passed + baseline.failures  # at v1.16.24: 49 and 49
