"""Whole-process wall time of ``tokensmith token`` with a warm cache, against the interpreter's own start-up.

kubectl exec plugins, git credential helpers, flytekit's external-command authenticator and CI steps run the
token command on *every* call, so the cached path must cost about as much as starting Python. Side by side, in
one run, interleaved (each round runs every variant once, in a shuffled order):

- ``python -c pass``: the floor (the interpreter, site, nothing else);
- ``python -c "import requests"``: what any requests-based tool pays before doing anything;
- ``tokensmith token`` (the console script) with a valid token in the file store: the fast path;
- ``tokensmith token --format exec-credential`` and ``tokensmith git-credential get``: the same path, other outputs;
- ``tokensmith token --force-refresh``: the cold path (a real client-credentials request to the local IdP),
  for reference.

Figures: median and p90 milliseconds per process, and the ratio of medians against ``python -c pass``.
Target: warm ``tokensmith token`` <= 2.0x ``python -c pass``.

Usage: python benchmarks/bench_cli_token.py [--rounds 30] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _report import machine, verdict, write_json
from idp_harness import CC_CLIENT, LocalIdP

TARGET = 2.0


def _time(command: list[str], env: dict[str, str], stdin: str | None) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{command[:3]} failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    python = sys.executable
    script = str(Path(python).with_name("tokensmith"))
    # As installed packages are: byte-compiled once (pip does it at install; a checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would otherwise recompile every module of every process).
    import tokensmith

    subprocess.run([python, "-m", "compileall", "-q", str(Path(tokensmith.__file__).parent)], check=True)
    with LocalIdP() as idp, tempfile.TemporaryDirectory() as home:
        assert CC_CLIENT.client_secret is not None
        env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            "XDG_CACHE_HOME": str(Path(home) / "cache"),
            "XDG_CONFIG_HOME": str(Path(home) / "config"),
            "TOKENSMITH_CLIENT_SECRET": CC_CLIENT.client_secret,
        }
        identity = ["--issuer", idp.issuer, "--client-id", CC_CLIENT.client_id]
        subprocess.run([script, "login", *identity], env=env, check=True, capture_output=True)
        variants: dict[str, tuple[list[str], str | None]] = {
            "python -c pass": ([python, "-c", "pass"], None),
            'python -c "import requests"': ([python, "-c", "import requests"], None),
            "tokensmith token (warm)": ([script, "token", *identity], None),
            "tokensmith token --format exec-credential (warm)": (
                [script, "token", *identity, "--format", "exec-credential"],
                None,
            ),
            "tokensmith git-credential get (warm)": (
                [script, "git-credential", *identity, "get"],
                "protocol=https\nhost=git.example\n\n",
            ),
            "tokensmith token --force-refresh (cold)": ([script, "token", *identity, "--force-refresh"], None),
        }
        for command, stdin in variants.values():  # warm-up: page cache, .pyc files
            _time(command, env, stdin)
        samples: dict[str, list[float]] = {name: [] for name in variants}
        rng = random.Random(args.seed)
        started = time.monotonic()
        for n in range(args.rounds):
            order = list(variants)
            rng.shuffle(order)
            for name in order:
                command, stdin = variants[name]
                samples[name].append(_time(command, env, stdin))
            if (n + 1) % 10 == 0:
                print(f"  round {n + 1}/{args.rounds}  ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    base = statistics.median(samples["python -c pass"])
    info = machine()
    print(
        f"\ntokensmith token start-up, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {info['cpu']} "
        f"x{info['cores']}, Python {info['python']}, {args.rounds} rounds"
    )
    print(f"{'variant':<50} {'median ms':>10} {'p90 ms':>8} {'× python -c pass':>17}")
    figures = {}
    for name, values in samples.items():
        median = statistics.median(values)
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        figures[name] = {"median_ms": median * 1000, "p90_ms": p90 * 1000, "ratio": median / base}
        print(f"{name:<50} {median * 1000:>10.1f} {p90 * 1000:>8.1f} {median / base:>16.2f}×")
    warm = figures["tokensmith token (warm)"]["ratio"]
    ok = warm <= TARGET
    print(f"\n[{verdict(ok)}] warm tokensmith token = {warm:.2f}× python -c pass (target ≤ {TARGET:.1f}×)")
    if args.json:
        write_json(args.json, {"machine": info, "rounds": args.rounds, "figures": figures, "target": TARGET})
    return 0


if __name__ == "__main__":
    sys.exit(main())
