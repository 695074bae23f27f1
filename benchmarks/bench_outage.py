"""Token requests an IdP receives during an outage while 50 threads keep asking for a token.

The token endpoint is the fault server (tests/fault_server.py): it answers the first request with a token valid
for 180 s whose ``refresh_in`` is 1 s (so renewal is due at once), then ``503 temporarily_unavailable`` for
``--outage`` seconds (60 by default), then tokens again. Three setups run side by side, each against its own path
on the same server, each with ``--threads`` threads (50) calling ``get_token()`` every ``--interval`` seconds:

- ``background on``   one shared ``TokenClient`` (the default): callers keep the valid token, one worker thread
                      tries once per back-off step (capped, jittered exponential, shared by all callers).
- ``background off``  one shared ``TokenClient(background_refresh=False)``: the first caller after each step renews
                      inline, with ``RetryPolicy``'s attempts inside the step (3 by default).
- ``client per thread`` 50 ``TokenClient``s, one per thread, nothing shared (what code that builds a client per
                      request or per worker gets; the seed module was worse: a POST per call).

Reported per setup: requests the server saw during the outage, back-off steps (failed renewal rounds of a
client), requests per step, calls that raised (none should: the token stays valid throughout) and requests after
the outage until the token was renewed. Target: with background renewal, one request per back-off step, and one
renewal when the IdP is back.

Usage: python benchmarks/bench_outage.py [--outage 60] [--threads 50] [--interval 0.01] [--json PATH]
Exits 0 once it has run (a report, not a test).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import requests

import tokensmith
from _report import headline, machine, verdict, write_report
from fault_server import FaultServer, Reply
from token_replies import DOWN

SETUPS = ("background on", "background off", "client per thread")


class Setup:
    def __init__(self, server: FaultServer, name: str, threads: int) -> None:
        self.name = name
        self.path = f"/{name.replace(' ', '-')}/token"
        self.errors = 0
        shared = name != "client per thread"
        count = 1 if shared else threads
        self.clients = [
            tokensmith.TokenClient(
                server.url(self.path),
                "svc",
                "svc-secret",
                session=requests.Session(),
                background_refresh=name != "background off",
            )
            for _ in range(count)
        ]

    def client_for(self, thread: int) -> tokensmith.TokenClient:
        return self.clients[thread % len(self.clients)]

    def steps(self) -> int:
        """Back-off steps so far: failed renewal rounds of one client (they all keep the same pace)."""
        return max(client.stats.renewals_failed for client in self.clients)

    def renewed(self) -> bool:
        return all(client.stats.renewals_succeeded >= 2 for client in self.clients)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=60.0, help="outage length, seconds (default 60)")
    parser.add_argument("--threads", type=int, default=50, help="caller threads per setup (default 50)")
    parser.add_argument("--interval", type=float, default=0.01, help="pause between a thread's calls (default 0.01)")
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args(argv)
    logging.getLogger("tokensmith").setLevel(logging.ERROR)  # the warnings of every failed step are the point

    token = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 180, "refresh_in": 1}
    renewed = {"access_token": "at-2", "token_type": "Bearer", "expires_in": 180}
    with FaultServer() as server:
        setups = [Setup(server, name, args.threads) for name in SETUPS]
        for setup in setups:
            server.default(setup.path, Reply(json=token))
            for client in setup.clients:
                client.get_token()
            server.default(setup.path, DOWN)
        before = {s.name: server.count(s.path) for s in setups}
        stop = threading.Event()

        def caller(setup: Setup, index: int) -> None:
            client = setup.client_for(index)
            while not stop.is_set():
                try:
                    client.get_token()
                except tokensmith.TokensmithError:
                    setup.errors += 1
                stop.wait(args.interval)

        workers = [
            threading.Thread(target=caller, args=(setup, i), daemon=True)
            for setup in setups
            for i in range(args.threads)
        ]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        time.sleep(args.outage)
        during = {s.name: server.count(s.path) - before[s.name] for s in setups}
        steps = {s.name: s.steps() for s in setups}
        for setup in setups:
            server.default(setup.path, Reply(json=renewed))
        recovered = time.monotonic()
        deadline = recovered + 120
        while not all(s.renewed() for s in setups) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for worker in workers:
            worker.join(10)
        after = {s.name: server.count(s.path) - before[s.name] - during[s.name] for s in setups}

    info = machine()
    print(headline(info))
    print(
        f"{args.outage:g} s outage (503), {args.threads} threads per setup calling every {args.interval:g} s; "
        f"run {recovered - started:.1f} s"
    )
    print(f"{'setup':<20}{'requests':>10}{'steps':>8}{'per step':>10}{'errors':>8}{'after':>8}")
    report: dict[str, dict[str, float]] = {}
    for setup in setups:
        row = {
            "requests": during[setup.name],
            "steps": steps[setup.name],
            "per_step": during[setup.name] / max(1, steps[setup.name]),
            "errors": setup.errors,
            "after": after[setup.name],
        }
        report[setup.name] = row
        print(
            f"{setup.name:<20}{row['requests']:>10}{row['steps']:>8}{row['per_step']:>10.2f}{row['errors']:>8}"
            f"{row['after']:>8}"
        )
    on = report["background on"]
    ok_steps = on["requests"] <= on["steps"] + 1  # the step in progress when the outage ended may have begun
    ok_after = on["after"] == 1 and on["errors"] == 0
    print(
        f"[{verdict(ok_steps)}] background on: {on['requests']:.0f} requests in {on['steps']:.0f} back-off steps "
        "(target: one per step)"
    )
    print(
        f"[{verdict(ok_after)}] background on: {on['after']:.0f} request(s) after the outage, {on['errors']:.0f} "
        "failed calls (target: one renewal, no failed call)"
    )
    write_report(
        args.json, info, args, {"setups": report, "verdicts": {"one_per_step": ok_steps, "one_renewal_after": ok_after}}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
