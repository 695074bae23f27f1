"""Per-request cost of DPoP (RFC 9449): a fresh ES256 proof on every request, against the cached-Bearer path.

What is timed is ``auth(prepared_request)`` (what ``requests`` does in ``prepare_auth`` for every request) with
a cached token: no network. DPoP has to sign a new proof per request (new ``jti``, ``iat``, ``htu``, ``ath``),
so it cannot be cached the way a Bearer header is; this measures what that costs.

Variants, all timed in the same run:

(a) ``no auth``                   a no-op callable: the loop and call cost. **Baseline.**
(b) ``Bearer, cached``            ``tokensmith.integrations.requests_auth.TokenAuth`` over a real ``TokenClient``
                                  holding a fresh Bearer token in memory (the path every request takes).
(c) ``DPoP ES256, cached``        the same handler over a ``TokenClient(dpop=DPoPKey.generate())`` holding a
                                  fresh DPoP token: ``Authorization: DPoP …`` plus a new proof with ``ath``.
(s) ``proof only``                ``DPoPKey.proof("GET", url, access_token=…)``: the signature and JSON alone.

Method as in ``bench_auth_overhead.py``: a fresh ``PreparedRequest`` per call, one round times every variant
over a batch (GC disabled, ``perf_counter_ns``), in a shuffled order, R rounds interleaved. Per variant: median
µs per call; overhead vs (a) is the median of the paired per-round differences. The headline is the ratio of
the DPoP overhead to the Bearer overhead (and the absolute µs). Always exits 0 (a report, not a test).

Usage: ``python benchmarks/bench_dpop.py [--rounds R] [--batch K] [--seed S] [--json PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.hooks import default_hooks
from requests.models import PreparedRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_json
from tokensmith import DPoPKey, Token, TokenClient
from tokensmith.integrations.requests_auth import TokenAuth

URL = "https://api.example.com/v1/items?page=2"
ACCESS_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl"

Call = Callable[[PreparedRequest], Any]


@dataclass
class Variant:
    key: str
    name: str
    call: Call
    per_call_us: list[float] = field(default_factory=list)


def _client(token: Token, key: DPoPKey | None) -> TokenClient:
    client = TokenClient("https://as.example.com/token", "bench-client", "bench-secret", dpop=key)
    client.store.save(client.cache_key, token)
    client.get_token()  # a store hit: now cached in memory, the path every later call takes
    return client


def variants() -> list[Variant]:
    now = time.time()
    bearer = Token(ACCESS_TOKEN, expires_at=now + 3600, issued_at=now)
    key = DPoPKey.generate("ES256")
    bound = Token(ACCESS_TOKEN, token_type="DPoP", expires_at=now + 3600, issued_at=now, jkt=key.thumbprint)
    return [
        Variant("a", "(a) no auth (no-op)", lambda r: r),
        Variant("b", "(b) Bearer, cached token", TokenAuth(_client(bearer, None))),
        Variant("c", "(c) DPoP ES256, cached token", TokenAuth(_client(bound, key))),
        Variant("s", "(s) DPoPKey.proof() only", lambda r: key.proof("GET", URL, access_token=ACCESS_TOKEN)),
    ]


def check(vs: list[Variant]) -> None:
    """(b) and (c) must really do their jobs (so the figures compare like with like)."""
    by = {v.key: v for v in vs}
    r = batch(1)[0]
    by["b"].call(r)
    assert r.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}" and "DPoP" not in r.headers
    r = batch(1)[0]
    by["c"].call(r)
    assert r.headers["Authorization"] == f"DPoP {ACCESS_TOKEN}" and r.headers["DPoP"].count(".") == 2


def batch(k: int) -> list[PreparedRequest]:
    tmpl = requests.Request("GET", URL, headers={"Accept": "application/json"}).prepare()
    out = []
    for _ in range(k):
        p = tmpl.copy()
        p.hooks = default_hooks()
        out.append(p)
    return out


def time_calls(call: Call, requests_: list[PreparedRequest]) -> float:
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for r in requests_:
            call(r)
        t1 = time.perf_counter_ns()
    finally:
        gc.enable()
    return (t1 - t0) / 1000 / len(requests_)


def run(rounds: int, k: int, seed: int, warmup: int) -> list[Variant]:
    vs = variants()
    check(vs)
    rng = random.Random(seed)
    for i in range(warmup + rounds):
        order = vs[:]
        rng.shuffle(order)
        batches = {v.key: batch(k) for v in order}
        gc.collect()
        for v in order:
            us = time_calls(v.call, batches[v.key])
            if i >= warmup:
                v.per_call_us.append(us)
    return vs


def paired(v: Variant, base: Variant) -> float:
    return statistics.median(x - b for x, b in zip(v.per_call_us, base.per_call_us, strict=True))


def report(vs: list[Variant], args: argparse.Namespace, elapsed: float) -> dict[str, Any]:
    by = {v.key: v for v in vs}
    base = by["a"]
    info = machine()
    print(
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {info['cpu']} ({info['cores']} cores), "
        f"Python {info['python']}, tokensmith {info['tokensmith']}; {args.rounds} rounds × {args.batch} calls "
        f"per variant, seed {args.seed}, {elapsed:.1f} s"
    )
    print()
    print(f"{'variant':34} {'min µs':>8} {'median µs':>10} {'overhead vs (a) µs':>19}")
    rows = []
    for v in vs:
        over = None if v.key == "a" else paired(v, base)
        print(
            f"{v.name:34} {min(v.per_call_us):8.2f} {statistics.median(v.per_call_us):10.2f} "
            f"{'—' if over is None else f'{over:+.2f}':>19}"
        )
        rows.append({"key": v.key, "name": v.name, "median_us": statistics.median(v.per_call_us), "overhead_us": over})
    bearer, dpop, proof = paired(by["b"], base), paired(by["c"], base), paired(by["s"], base)
    ratio = dpop / bearer if bearer > 0 else float("nan")
    print()
    print(
        f"DPoP (c) / Bearer (b): {ratio:.1f}× the per-request overhead ({dpop:.1f} µs vs {bearer:.2f} µs); "
        f"DPoP adds {dpop - bearer:.1f} µs per request, of which the proof itself is {proof:.1f} µs"
    )
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(),
        "machine": info,
        "config": {"rounds": args.rounds, "batch": args.batch, "seed": args.seed},
        "variants": rows,
        "headline": {"bearer_us": bearer, "dpop_us": dpop, "proof_us": proof, "ratio": ratio},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds (default 40)")
    parser.add_argument("--batch", type=int, default=300, help="calls per variant per round (default 300)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up rounds (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="shuffle seed (default 1)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this path")
    args = parser.parse_args(argv)
    started = time.monotonic()
    vs = run(args.rounds, args.batch, args.seed, args.warmup)
    result = report(vs, args, time.monotonic() - started)
    if args.json is not None:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
