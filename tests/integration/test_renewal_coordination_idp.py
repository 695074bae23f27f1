"""Issue 7 item 10 against the real IdP: another process's interactive login holds a lease, not the lock.
A caller that may not log in gets ``LoginInProgress`` at once (naming the other process); one that may waits for
that login's token instead of starting a second login; nobody's request reaches the IdP meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import tokensmith
from counting_session import CountingSession
from idp_harness import DEVICE_PUBLIC, LocalIdP

WORKER = Path(__file__).resolve().parents[1] / "helpers" / "login_worker.py"
SCOPE = "openid offline_access"


def _client(idp: LocalIdP, store_dir: Path, session: CountingSession) -> tokensmith.TokenClient:
    return tokensmith.TokenClient(
        idp.token_endpoint,
        auth=tokensmith.NoClientAuth(DEVICE_PUBLIC.client_id),
        device_authorization_endpoint=idp.device_authorization_endpoint,
        scope=SCOPE,
        store=tokensmith.FileStore(str(store_dir)),
        session=session,
        on_prompt=lambda prompt: pytest.fail("this client must not start a login of its own"),
    )


def test_a_login_in_another_process_is_a_typed_outcome_not_a_lock(idp: LocalIdP, tmp_path: Path) -> None:
    store_dir = tmp_path / "tokens"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            idp.token_endpoint,
            idp.device_authorization_endpoint,
            DEVICE_PUBLIC.client_id,
            SCOPE,
            str(store_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("CODE "), proc.stderr.read() if proc.stderr else line
        user_code = line.split()[1]

        # A caller that may not log in: told at once who is logging in, no request made.
        session = CountingSession()
        impatient = _client(idp, store_dir, session)
        with pytest.raises(tokensmith.LoginInProgress) as info:
            impatient.get_token(interactive=False)
        assert info.value.pid == proc.pid and "finish it there" in str(info.value)
        assert isinstance(info.value, tokensmith.LoginRequired)
        # The store's lock is free meanwhile (a person's login never holds it).
        with tokensmith.FileStore(str(store_dir), lock_timeout=0.5).lock(impatient.cache_key):
            pass

        # A caller that may log in waits for that login's token rather than starting a second login.
        patient = _client(idp, store_dir, session)
        result: list[object] = []
        waiter = threading.Thread(target=lambda: result.append(patient.get_token(interactive=True)))
        waiter.start()
        idp.approve(user_code)
        out, err = proc.communicate(timeout=60)
        assert json.loads(out.strip().splitlines()[-1]) == {"logins": 1}, err
        waiter.join(30)
        (token,) = result
        assert isinstance(token, tokensmith.Token) and token.refresh_token
        assert patient.stats.logins == 0 and patient.stats.lease_waits >= 1
        assert session.count() == 0  # neither client sent anything to the IdP

        # And the impatient one now simply finds it in the store.
        assert impatient.get_token(interactive=False).access_token == token.access_token
        assert session.count() == 0
    finally:
        proc.kill()
        proc.wait()
