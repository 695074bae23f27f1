"""What every benchmark report carries: the machine, JSON-friendly figures, verdict words."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

import tokensmith


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        node = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "requests": requests.__version__,
        "tokensmith": getattr(tokensmith, "__version__", "?"),
        "node": node,
    }


def rounded(value: Any) -> Any:
    """``value`` with every float rounded to 4 decimals, for the JSON report."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def write_json(path: Path, report: dict[str, Any]) -> None:
    """The figures as JSON (floats rounded), for ``--json PATH``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rounded(report), indent=2, ensure_ascii=False) + "\n")
    print(f"figures written to {path}")


def headline(info: dict[str, Any]) -> str:
    """The first line of a report: when and on what it ran."""
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {info['cpu']}, {info['cores']} cores, {info['os']}; "
        f"Python {info['python']}, tokensmith {info['tokensmith']}, node {info['node']}"
    )


def write_report(path: Path | None, info: dict[str, Any], args: Any, figures: dict[str, Any]) -> None:
    """``--json PATH``: the date, machine, configuration and ``figures`` (nothing without a path)."""
    if path is None:
        return
    config = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    write_json(
        path,
        {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": info, "config": config, **figures},
    )
