"""A second process that renews a DPoP-bound token it did not obtain, with the key the first process stored.

Usage: dpop_refresh_worker.py TOKEN_ENDPOINT CLIENT_ID SCOPE STORE_DIR
Prints one JSON line: the new token's type, its jkt, the refresh count, or the error.
"""

from __future__ import annotations

import json
import sys

import tokensmith


def main() -> None:
    token_endpoint, client_id, scope, store_dir = sys.argv[1:5]
    client = tokensmith.TokenClient(
        token_endpoint,
        auth=tokensmith.NoClientAuth(client_id),
        grant="device_code",
        scope=scope,
        store=tokensmith.FileStore(store_dir),
        dpop=True,
        background_refresh=False,
    )
    result: dict[str, object] = {}
    try:
        token = client.refresh()
        result.update(token_type=token.token_type, jkt=token.jkt, refreshes=client.stats.refreshes)
    except tokensmith.TokensmithError as error:
        result["error"] = f"{type(error).__name__}: {error}"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
