"""Eight processes share a FileStore holding an expired token whose refresh token rotates (oidc-provider
revokes the whole grant when a spent refresh token is replayed): exactly one refresh, no invalid_grant,
everyone ends with the same fresh token, and the store keeps the live refresh token (C26)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from idp_harness import DEVICE_PUBLIC, LocalIdP
from tokensmith import DevicePrompt, FileStore, NoClientAuth, Token, TokenClient

pytestmark = pytest.mark.idp
SCOPE = "openid offline_access"
WORKER = Path(__file__).resolve().parent.parent / "helpers" / "refresh_worker.py"


def test_eight_processes_one_refresh_no_invalid_grant(idp: LocalIdP, tmp_path: Path) -> None:
    store_dir = tmp_path / "tokens"

    def approve(prompt: DevicePrompt) -> None:
        threading.Thread(target=idp.approve, args=(prompt.user_code,), daemon=True).start()

    client = TokenClient(
        idp.token_endpoint,
        auth=NoClientAuth(DEVICE_PUBLIC.client_id),
        scope=SCOPE,
        device_authorization_endpoint=idp.device_authorization_endpoint,
        on_prompt=approve,
        store=FileStore(store_dir),
    )
    token = client.login()
    assert token.refresh_token
    expired = Token(
        token.access_token, expires_at=time.time() - 10, issued_at=time.time() - 3610, refresh_token=token.refresh_token
    )
    client.store.save(client.cache_key, expired)

    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), idp.token_endpoint, DEVICE_PUBLIC.client_id, SCOPE, str(store_dir), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    time.sleep(1.0)  # let every interpreter start and wait at the line
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    assert [r.get("error") for r in results] == [None] * 8
    assert sum(r["refreshes"] for r in results) == 1
    assert sum(r["invalid_grants"] for r in results) == 0
    assert len({r["access_sha"] for r in results}) == 1
    assert sum(r["store_hits"] for r in results) == 7

    stored = FileStore(store_dir).load(client.cache_key)
    assert stored is not None and stored.refresh_token != token.refresh_token
    # The stored, rotated refresh token is alive: a new client on the store refreshes with it.
    fresh = TokenClient(
        idp.token_endpoint, auth=NoClientAuth(DEVICE_PUBLIC.client_id), scope=SCOPE, store=FileStore(store_dir)
    )
    assert fresh.refresh().refresh_token not in (None, stored.refresh_token)
