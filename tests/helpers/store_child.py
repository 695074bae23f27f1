"""Child processes for the store tests (run as ``python store_child.py MODE ...``).

- ``lock DIR KEY LOG START ITERATIONS``: print ``ready``, wait until START exists, then ITERATIONS times take
  ``FileStore(DIR).lock(KEY)`` and append ``begin``/``end`` lines to LOG while holding it.
- ``hold DIR KEY``: take the lock, print ``locked``, hold it until stdin closes.
- ``claim DIR KEY START``: print ``ready``, wait until START exists (``-``: no wait), claim a 600 s renewal lease on
  KEY as owner ``child-<pid>``, print the owner of the lease ``claim`` returned (itself if it won), then stay
  alive (a dead claimant's lease is void) until stdin closes.
- ``crash DIR KEY RUN``: print ``started``, then save tokens of random sizes to KEY as fast as possible, forever.
  Each access token is ``<sha256(payload)[:32]>.<payload>`` and its refresh token ``rt-<same checksum>``,
  so a reader can tell an intact token from a torn one.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import sys
import time

from tokensmith.stores.file import FileStore
from tokensmith.token import Token


def checksum(payload: str) -> str:
    return hashlib.sha256(payload.encode("ascii")).hexdigest()[:32]


def make_token(run: str, n: int, size: int) -> Token:
    payload = f"{run}-{n}-" + secrets.token_urlsafe(size)
    digest = checksum(payload)
    return Token(
        access_token=f"{digest}.{payload}",
        refresh_token=f"rt-{digest}",
        expires_at=time.time() + 3600,
        issued_at=time.time(),
        scope=f"run-{run}",
    )


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "lock":
        directory, key, log, start, iterations = argv[1:6]
        store = FileStore(directory, lock_timeout=60)
        print("ready", flush=True)
        while not os.path.exists(start):
            time.sleep(0.001)
        me = f"{os.getpid()}"
        for i in range(int(iterations)):
            with store.lock(key):
                with open(log, "a") as handle:
                    handle.write(f"begin {me} {i}\n")
                    handle.flush()
                time.sleep(0.003)
                with open(log, "a") as handle:
                    handle.write(f"end {me} {i}\n")
                    handle.flush()
        return 0
    if mode == "hold":
        directory, key = argv[1:3]
        store = FileStore(directory)
        with store.lock(key):
            print("locked", flush=True)
            sys.stdin.read()
        return 0
    if mode == "claim":
        directory, key, start = argv[1:4]
        store = FileStore(directory, lock_timeout=60)
        print("ready", flush=True)
        while start != "-" and not os.path.exists(start):
            time.sleep(0.001)
        lease = store.claim(key, f"child-{os.getpid()}", "renew", 600)
        print(lease.owner, flush=True)
        sys.stdin.read()
        return 0
    if mode == "crash":
        directory, key, run = argv[1:4]
        store = FileStore(directory)
        rng = random.Random(run)
        print("started", flush=True)
        n = 0
        while True:
            size = rng.choice((10, 1_000, 30_000, 150_000, 300_000))
            store.save(key, make_token(run, n, rng.randint(1, size)))
            n += 1
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
