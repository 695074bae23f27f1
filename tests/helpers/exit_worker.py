"""A one-shot process (like a CLI run): one get_token() in the refresh-soon window, print, exit at once.

Usage: exit_worker.py TOKEN_ENDPOINT STORE_DIR
The stored token is due for renewal, so the call returns it and starts the background worker; the process then
exits while the worker's refresh is still waiting for the server. Prints the access token it was given.
"""

from __future__ import annotations

import sys

from tokensmith import FileStore, NoClientAuth, TokenClient


def main() -> None:
    token_endpoint, store_dir = sys.argv[1:3]
    client = TokenClient(token_endpoint, auth=NoClientAuth("pub"), grant="device_code", store=FileStore(store_dir))
    print(client.get_token().access_token, flush=True)


if __name__ == "__main__":
    main()
