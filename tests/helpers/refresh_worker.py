"""One of N processes sharing a FileStore: waits for a start signal, asks for a token, reports what it did.

Usage: refresh_worker.py TOKEN_ENDPOINT CLIENT_ID SCOPE STORE_DIR GO_FILE
Prints one JSON line: refreshes, invalid_grants, store_hits, a hash of the access token, or the error.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

from tokensmith import NoClientAuth, TokenClient
from tokensmith.exceptions import TokensmithError
from tokensmith.stores.file import FileStore


def main() -> None:
    token_endpoint, client_id, scope, store_dir, go_file = sys.argv[1:6]
    client = TokenClient(
        token_endpoint, auth=NoClientAuth(client_id), grant="device_code", scope=scope, store=FileStore(store_dir)
    )
    deadline = time.monotonic() + 30
    while not os.path.exists(go_file) and time.monotonic() < deadline:
        time.sleep(0.005)
    result: dict[str, object] = {"pid": os.getpid()}
    try:
        token = client.get_token(interactive=False)
        result["access_sha"] = hashlib.sha256(token.access_token.encode()).hexdigest()[:16]
    except TokensmithError as error:
        result["error"] = f"{type(error).__name__}: {error}"
    result.update(
        refreshes=client.stats.refreshes, invalid_grants=client.stats.invalid_grants, store_hits=client.stats.store_hits
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
