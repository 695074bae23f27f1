"""Latency of ``TokenClient.get_token()`` across many token lifetimes: background renewal on vs off vs the cached path.

The local IdP (node oidc-provider, tests/idp) issues client-credentials tokens that live ``--ttl`` seconds (4 by
default), so over the run (``--lifetimes`` lifetimes) every client renews its token several times. Three clients
are called side by side, by the same threads, in the same rounds (shuffled order each round):

- ``cached path``      a client whose token is fresh for the whole run (stored up front; never renewed): the
                       floor, what a call costs when nothing is due. **Baseline.**
- ``background on``    the default: past ``refresh_at`` a call returns the cached token and a worker thread renews.
- ``background off``   ``background_refresh=False``: the first call past ``refresh_at`` renews inline (it waits for
                       the IdP); the others keep the valid token meanwhile (the behaviour before issue 10).

Every call is timed (``perf_counter_ns``). Reported per client: calls, p50/p99/p99.9/max in µs, p50 and p99 as
ratios of the cached path's, and the calls that waited for a token request (counted by the transport, which
records the thread each request is sent from; the very first fetch is not counted). Targets: with background
renewal on, p99 equals the cached path's (ratio ≤ 1.10) and no call waits for the network.

Usage: python benchmarks/bench_background_renewal.py [--ttl 4] [--lifetimes 8] [--threads 4] [--per-round 20]
       [--pause 0.001] [--seed S] [--json PATH]
Exits 0 once it has run (a report, not a test); 2 if the local IdP cannot start.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import tokensmith
from _report import headline, machine, verdict, write_report
from counting_session import ThreadCountingTransport
from idp_harness import CC_CLIENT, IdPStartError, LocalIdP

VARIANTS = ("cached path", "background on", "background off")
TARGET_P99_RATIO = 1.10


def percentile(values: Sequence[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def make_clients(idp: LocalIdP) -> tuple[dict[str, tokensmith.TokenClient], dict[str, ThreadCountingTransport]]:
    transports = {name: ThreadCountingTransport() for name in VARIANTS}
    clients = {
        name: tokensmith.TokenClient(
            idp.token_endpoint,
            CC_CLIENT.client_id,
            CC_CLIENT.client_secret,
            transport=transports[name],
            background_refresh=name != "background off",
        )
        for name in VARIANTS
    }
    cached = clients["cached path"]
    now = time.time()
    cached.store.save(cached.cache_key, tokensmith.Token("c" * 43, expires_at=now + 3600, issued_at=now))
    for client in clients.values():
        client.get_token()  # the first fetch (or the stored token): not timed, not counted
    return clients, transports


def measure(
    clients: dict[str, tokensmith.TokenClient], seconds: float, threads: int, per_round: int, pause: float, seed: int
) -> dict[str, array[int]]:
    samples: dict[str, array[int]] = {name: array("q") for name in VARIANTS}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def caller(index: int) -> None:
        rng = random.Random(seed + index)
        mine: dict[str, array[int]] = {name: array("q") for name in VARIANTS}
        calls: dict[str, Callable[[], tokensmith.Token]] = {name: clients[name].get_token for name in VARIANTS}
        order = list(VARIANTS)
        clock = time.perf_counter_ns
        while time.monotonic() < deadline:
            rng.shuffle(order)
            for name in order:
                call, out = calls[name], mine[name]
                for _ in range(per_round):
                    start = clock()
                    call()
                    out.append(clock() - start)
            time.sleep(pause)
        with lock:
            for name in VARIANTS:
                samples[name].extend(mine[name])

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ttl", type=int, default=4, help="access-token lifetime at the IdP, seconds (default 4)")
    parser.add_argument("--lifetimes", type=float, default=8, help="run this many lifetimes (default 8)")
    parser.add_argument("--threads", type=int, default=4, help="caller threads (default 4)")
    parser.add_argument("--per-round", type=int, default=20, help="calls per client per round (default 20)")
    parser.add_argument("--pause", type=float, default=0.001, help="pause between rounds, seconds (default 0.001)")
    parser.add_argument("--seed", type=int, default=6749)
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args(argv)
    logging.getLogger("tokensmith").setLevel(logging.ERROR)

    try:
        idp = LocalIdP(access_ttl=args.ttl).start()
    except IdPStartError as error:
        print(f"cannot start the local IdP: {error}", file=sys.stderr)
        return 2
    try:
        clients, transports = make_clients(idp)
        started = time.monotonic()
        samples = measure(clients, args.ttl * args.lifetimes, args.threads, args.per_round, args.pause, args.seed)
        elapsed = time.monotonic() - started
    finally:
        idp.stop()

    info = machine()
    print(headline(info))
    print(
        f"{elapsed:.1f} s = {elapsed / args.ttl:.1f} lifetimes of a {args.ttl} s token; {args.threads} threads, "
        f"{args.per_round} calls per client per round"
    )
    base = samples["cached path"]
    base_p50, base_p99 = percentile(base, 0.5), percentile(base, 0.99)
    header = (
        f"{'client':<16}{'calls':>9}{'p50 µs':>9}{'p99 µs':>9}{'p99.9 µs':>10}{'max µs':>10}"
        f"{'p50 ×':>8}{'p99 ×':>8}{'renewals':>10}{'waited':>8}"
    )
    print(header)
    report: dict[str, dict[str, float]] = {}
    for name in VARIANTS:
        values = samples[name]
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        row = {
            "calls": len(values),
            "p50_us": p50 / 1000,
            "p99_us": p99 / 1000,
            "p999_us": percentile(values, 0.999) / 1000,
            "max_us": max(values) / 1000,
            "p50_ratio": p50 / base_p50,
            "p99_ratio": p99 / base_p99,
            "renewals": clients[name].stats.renewals_succeeded - (0 if name == "cached path" else 1),
            "waited": transports[name].by_callers() - (0 if name == "cached path" else 1),
        }
        report[name] = row
        print(
            f"{name:<16}{row['calls']:>9}{row['p50_us']:>9.2f}{row['p99_us']:>9.2f}{row['p999_us']:>10.1f}"
            f"{row['max_us']:>10.0f}{row['p50_ratio']:>7.2f}×{row['p99_ratio']:>7.2f}×{row['renewals']:>10}"
            f"{row['waited']:>8}"
        )
    on = report["background on"]
    ok_p99 = on["p99_ratio"] <= TARGET_P99_RATIO
    ok_wait = on["waited"] == 0 and on["renewals"] >= 1
    print(
        f"[{verdict(ok_p99)}] background on: p99 / cached path p99 = {on['p99_ratio']:.2f}× "
        f"(target ≤ {TARGET_P99_RATIO:.2f}×)"
    )
    print(
        f"[{verdict(ok_wait)}] background on: calls that waited for a token request = {on['waited']:.0f} over "
        f"{on['renewals']:.0f} renewals (target 0); background off: {report['background off']['waited']:.0f}"
    )
    write_report(args.json, info, args, {"variants": report, "verdicts": {"p99": ok_p99, "no_wait": ok_wait}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
