"""A process that runs an interactive device login into a FileStore and waits for the test to approve it.

Usage: login_worker.py TOKEN_ENDPOINT DEVICE_ENDPOINT CLIENT_ID SCOPE STORE_DIR
Prints ``CODE <user code>`` when the prompt is shown, then one JSON line when the login ends.
"""

from __future__ import annotations

import json
import sys

import tokensmith


def main() -> None:
    token_endpoint, device_endpoint, client_id, scope, store_dir = sys.argv[1:6]

    def on_prompt(prompt: tokensmith.DevicePrompt) -> None:
        print(f"CODE {prompt.user_code}", flush=True)

    client = tokensmith.TokenClient(
        token_endpoint,
        auth=tokensmith.NoClientAuth(client_id),
        device_authorization_endpoint=device_endpoint,
        scope=scope,
        store=tokensmith.FileStore(store_dir),
        on_prompt=on_prompt,
    )
    try:
        client.login()
        print(json.dumps({"logins": client.stats.logins}), flush=True)
    except tokensmith.TokensmithError as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)


if __name__ == "__main__":
    main()
