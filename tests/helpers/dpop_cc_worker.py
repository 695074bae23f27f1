"""One of N processes sharing a FileStore with dpop=True and no key yet: waits for a start signal, asks for a
client-credentials token, reports the key thumbprint it ended up with.

Usage: dpop_cc_worker.py ISSUER CLIENT_ID CLIENT_SECRET STORE_DIR GO_FILE
Prints one JSON line: jkt, token_type, client_credentials, store_hits, a hash of the access token, or the error.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import tokensmith


def main() -> None:
    issuer, client_id, client_secret, store_dir, go_file = sys.argv[1:6]
    client = tokensmith.TokenClient.from_issuer(
        issuer, client_id, client_secret, store=tokensmith.FileStore(store_dir), dpop=True, background_refresh=False
    )
    client.discover()  # before the start line: the race is about the store, not discovery
    deadline = time.monotonic() + 30
    while not os.path.exists(go_file) and time.monotonic() < deadline:
        time.sleep(0.005)
    result: dict[str, object] = {}
    try:
        token = client.get_token()
        result.update(
            jkt=token.jkt,
            token_type=token.token_type,
            access_sha=hashlib.sha256(token.access_token.encode()).hexdigest()[:16],
        )
    except tokensmith.TokensmithError as error:
        result["error"] = f"{type(error).__name__}: {error}"
    result.update(client_credentials=client.stats.client_credentials, store_hits=client.stats.store_hits)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
