"""End-to-end demo of the ``tokensmith`` command against the bundled local IdP (node oidc-provider, tests/idp).

    make demo                            # you approve the device login in a browser (any user and password)
    make demo DEMO_ARGS=--auto-approve   # non-interactive smoke run: the script approves it itself

It starts the IdP on a free loopback port and runs, as a user would (tokens and config in a temporary home):

1. ``tokensmith login --flow client-credentials`` (a service, secret from the environment);
2. ``tokensmith login`` with the device flow (link, code and QR code on stderr; waits for approval);
3. ``tokensmith token`` (the cached token, no request) and ``tokensmith token --force-refresh``;
4. ``tokensmith status``;
5. ``tokensmith token --format exec-credential`` as kubectl runs it (``KUBERNETES_EXEC_INFO``);
6. ``tokensmith logout`` (revokes the refresh token at the IdP, then deletes it).

Tokens are never shown: only their length (the demo masks what the commands print on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from idp_harness import CC_CLIENT, DEVICE_PUBLIC, LocalIdP

TOKENSMITH = [sys.executable, "-m", "tokensmith"]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: list[str], env: dict[str, str], *, approve: LocalIdP | None = None) -> str:
    """Run ``tokensmith args``; its stderr (prompts, messages) passes through, its stdout is returned. With
    ``approve``, the device code shown on stderr is approved on the IdP's pages, as the person would."""
    say(f"\n$ tokensmith {shlex.join(args)}")
    proc = subprocess.Popen([*TOKENSMITH, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None

    def relay() -> None:
        assert proc.stderr is not None
        code_next = False
        for line in proc.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            if approve is not None and code_next and line.strip():
                say("  (--auto-approve: approving on the IdP's pages as user 'alice')")
                threading.Thread(target=approve.approve, args=(line.strip(),), daemon=True).start()
                code_next = False
            code_next = code_next or "enter the code" in line

    relay_thread = threading.Thread(target=relay, daemon=True)
    relay_thread.start()
    assert proc.stdout is not None
    stdout = proc.stdout.read()  # not communicate(): the relay thread owns stderr
    proc.wait()
    relay_thread.join(10)
    if proc.returncode != 0:
        raise SystemExit(f"tokensmith {args[0]} failed with exit code {proc.returncode}")
    return stdout


def masked(text: str, token: str) -> str:
    return text.replace(token, f"<token: {len(token)} chars>") if token else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--auto-approve",
        action="store_true",
        help="approve the device login automatically (drives the IdP's pages over HTTP)",
    )
    args = parser.parse_args(argv)
    # kill or a closed terminal ends the demo as Ctrl-C does: the node IdP is stopped on the way out, not orphaned.
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.default_int_handler)

    say("Starting the local IdP (node oidc-provider) ...")
    with LocalIdP() as idp, tempfile.TemporaryDirectory() as home:
        say(f"  issuer: {idp.issuer}")
        assert CC_CLIENT.client_secret is not None
        env = {
            **os.environ,
            "XDG_CACHE_HOME": str(Path(home) / "cache"),
            "XDG_CONFIG_HOME": str(Path(home) / "config"),
            "NO_COLOR": "1",
        }
        service = ["--issuer", idp.issuer, "--client-id", CC_CLIENT.client_id]
        person = ["--issuer", idp.issuer, "--client-id", DEVICE_PUBLIC.client_id, "--scope", "openid offline_access"]

        say("\n[1/6] a service logs in with client credentials (the secret comes from TOKENSMITH_CLIENT_SECRET)")
        run(
            ["login", "--flow", "client-credentials", *service],
            {**env, "TOKENSMITH_CLIENT_SECRET": CC_CLIENT.client_secret},
        )

        say(
            "\n[2/6] a person logs in with the device flow" + ("" if args.auto_approve else ": approve it in a browser")
        )
        # The command's stderr reaches this terminal through a pipe, so it cannot see the terminal: say so.
        terminal = ["--qr"] if sys.stderr.isatty() else []
        columns = {"COLUMNS": str(os.get_terminal_size(sys.stderr.fileno()).columns)} if terminal else {}
        run(
            ["login", *person, "--no-browser", *terminal],
            {**env, **columns},
            approve=idp if args.auto_approve else None,
        )

        say("\n[3/6] every later call gets the token from the store (no request), or renews it silently")
        token = run(["token", *person], env).strip()
        say(f"  stdout: <token: {len(token)} chars>")
        renewed = run(["token", *person, "--force-refresh"], env).strip()
        say(f"  stdout: <token: {len(renewed)} chars>; renewed: {renewed != token}")

        say("\n[4/6] what is stored (never a token)")
        say("  " + run(["status", "--json"], env).strip().replace("\n", "\n  "))

        say("\n[5/6] kubectl's exec plugin call (KUBERNETES_EXEC_INFO)")
        exec_info = {
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "spec": {"interactive": False},
        }
        credential = run(
            ["token", *person, "--format", "exec-credential"], {**env, "KUBERNETES_EXEC_INFO": json.dumps(exec_info)}
        )
        say("  stdout: " + masked(credential.strip(), renewed))

        say("\n[6/6] logout: the refresh token is revoked at the IdP, then deleted")
        run(["logout", *person], env)
    say("\nDone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
