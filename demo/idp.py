"""Run the bundled local IdP (node oidc-provider, a test fixture) on a fixed port, for trying tokensmith by hand.

    make idp            # or: .venv/bin/python demo/idp.py [--port 9400]

It prints the issuer, the endpoints and the registered clients, then serves until Ctrl-C. Device logins are
approved in a browser on this machine: open the link, enter the code, sign in with any user name and password.
Loopback only, in-memory, ephemeral keys: never expose it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from idp_harness import ALL_CLIENTS, ClientInfo, IdPStartError, LocalIdP

DEFAULT_PORT = 9400


def _no_secret(client: ClientInfo, keys: Path) -> str:
    return (
        f"(private_key_jwt: --private-key-file {keys / client.client_id}.pem)" if client.private_key_jwt else "(public)"
    )


def _write_keys(idp: LocalIdP, keys: Path) -> None:
    """The private_key_jwt clients' keys (made for this run), so they can be tried with --private-key-file."""
    for client in ALL_CLIENTS:
        if client.private_key_jwt:
            fd = os.open(keys / f"{client.client_id}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(idp.private_key_pem(client.client_id))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    # kill, a closed terminal, and Ctrl-C even where a shell started this in the background with SIGINT ignored:
    # each stops the server the way Ctrl-C does, so the node process and the key files go with it (the default
    # SIGTERM would end Python at once and leave node running on the port).
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.default_int_handler)
    try:
        with LocalIdP(port=args.port) as idp, tempfile.TemporaryDirectory(prefix="tokensmith-idp-") as keys_dir:
            keys = Path(keys_dir)
            _write_keys(idp, keys)
            lines = [
                f"issuer:                        {idp.issuer}",
                f"token endpoint:                {idp.token_endpoint}",
                f"device authorization endpoint: {idp.device_authorization_endpoint}",
                f"authorization endpoint:        {idp.discovery['authorization_endpoint']}",
                f"revocation endpoint:           {idp.revocation_endpoint}",
                "",
                "clients (id / secret):",
                *(
                    f"  {c.client_id:<24} {c.client_secret if c.client_secret is not None else _no_secret(c, keys)}"
                    for c in ALL_CLIENTS
                ),
                "",
                "Device logins: open the link, enter the code, sign in with any user name and password",
                "(approve in a browser on this machine). Browser logins: browser-public on any",
                "http://127.0.0.1:<port>/callback or http://[::1]:<port>/callback; flytekit-public on",
                "http://localhost:53593/callback only. Ctrl-C stops the server.",
            ]
            print("\n".join(lines), flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:  # at any point, even while starting or printing: the server is stopped
        print("\nstopped", file=sys.stderr)
    except IdPStartError as error:  # e.g. the port is taken: say why (node's own line is in it), no traceback
        print(f"idp.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
