"""Per-call cost of applying a bearer-token ``requests`` auth handler to a prepared request, cached token.

What is timed is ``auth(prepared_request)``, the work ``requests`` does in ``PreparedRequest.prepare_auth``
for every request. No network: the token is already cached, as it is for all but a few requests in practice.

Variants, all timed in the same run:

(a) ``no auth``                       a no-op callable (``lambda r: r``): the loop and call cost. **Baseline.**
(b) ``tokensmith TokenAuth``          ``tokensmith.integrations.requests_auth.TokenAuth`` over a source whose
                                      ``get_token()`` mimics ``TokenClient``'s fast path: read the cached
                                      ``Token``, ``Token.is_fresh(time.time())``, compare with ``stale``, return.
(b2) ``tokensmith + TokenClient``     the same handler over a real ``tokensmith.client.TokenClient`` whose
                                      memory cache holds a fresh token (skipped if it cannot be built).
(c) ``requests-oauth2client CC auth`` ``OAuth2ClientCredentialsAuth(client, token=BearerToken(..., expires_in=
                                      3600))``: a renewing auth with a cached token, like (b). It checks
                                      expiry with ``datetime.now()`` twice and sets the header.
(c2) ``requests-oauth2client BearerToken`` ``BearerToken`` used directly as auth (static token, one expiry
                                      check), for reference.
(d) ``minimal AuthBase``              sets a precomputed ``Authorization`` header and nothing else: the floor.
(p) ``Request.prepare() (scale)``     ``requests.Request("GET", url, headers=...).prepare()`` with no auth, to
                                      put the figures in proportion. Not an auth variant.

Method: each request gets a fresh ``PreparedRequest`` (copied from a template outside the timed region, with
its own hook list), so handlers that register a response hook do not grow a shared list. One *round* times
every variant over a batch of K requests (``perf_counter_ns`` around the whole batch, GC disabled), in a
shuffled order; R rounds are interleaved so machine noise hits all variants alike. Per variant: min and median
µs per call over the rounds. Overhead vs (a) is the median over rounds of the *paired* per-round difference
(variant − baseline in the same round). Verdict: ``PASS`` if tokensmith's overhead (b) ≤ 2 µs per call.
Absolute figures depend on the machine; compare rows within one run. Always exits 0 (a report, not a test).

Usage: ``python benchmarks/bench_auth_overhead.py [--rounds R] [--batch K] [--seed S] [--json PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import requests
from requests.auth import AuthBase
from requests.hooks import default_hooks
from requests.models import PreparedRequest

from tokensmith.integrations.requests_auth import TokenAuth
from tokensmith.token import Token

URL = "https://api.example.com/v1/items?page=2"
ACCESS_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl"  # b64token-shaped, 3 JWT segments
TARGET_US = 2.0

Auth = Callable[[PreparedRequest], PreparedRequest]


# --- the variants ------------------------------------------------------------------------------------------


def noop(r: PreparedRequest) -> PreparedRequest:
    return r


class CachedSource:
    """A ``TokenSource`` with the shape of ``TokenClient.get_token``'s fast path (cached, fresh token)."""

    def __init__(self, token: Token) -> None:
        self._token: Token | None = token
        self._clock = time.time

    def get_token(self, *, stale: Token | None = None) -> Token:
        token = self._token
        if (
            token is not None
            and token.is_fresh(self._clock())
            and (stale is None or stale.access_token != token.access_token)
        ):
            return token
        raise RuntimeError("the benchmark never renews")


class MinimalAuth(AuthBase):
    """The floor: one header assignment with a precomputed value."""

    def __init__(self, header: str) -> None:
        self._header = header

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        r.headers["Authorization"] = self._header
        return r


def fresh_token() -> Token:
    now = time.time()
    return Token(access_token=ACCESS_TOKEN, expires_at=now + 3600, issued_at=now)


def real_client_auth() -> tuple[Auth | None, str]:
    """(b2): TokenAuth over a real TokenClient with a fresh token in its store (loaded once into memory)."""
    try:
        from tokensmith.client import TokenClient

        client = TokenClient("https://as.example.com/token", "bench-client", "bench-secret")
        client.store.save(client.cache_key, fresh_token())
        client.get_token()  # store hit: now cached in memory, the path every later call takes
        return TokenAuth(client), ""
    except Exception as exc:  # the client is developed concurrently; report, don't fail
        return None, f"{type(exc).__name__}: {exc}"


def roc_auths() -> tuple[Auth | None, Auth | None, str]:
    """(c) and (c2): requests-oauth2client, if installed."""
    try:
        from requests_oauth2client import BearerToken, OAuth2Client, OAuth2ClientCredentialsAuth
    except ImportError as exc:
        return None, None, f"not installed ({exc}); pip install requests-oauth2client"
    client = OAuth2Client(token_endpoint="https://as.example.com/token", auth=("bench-client", "bench-secret"))
    cc = OAuth2ClientCredentialsAuth(client, token=BearerToken(ACCESS_TOKEN, expires_in=3600))
    return cc, BearerToken(ACCESS_TOKEN, expires_in=3600), ""


# --- measurement -------------------------------------------------------------------------------------------


@dataclass
class Variant:
    key: str
    name: str
    auth: Auth | None  # None: the "prepare()" scale row
    per_call_us: list[float] = field(default_factory=list)


def template() -> PreparedRequest:
    return requests.Request("GET", URL, headers={"Accept": "application/json", "User-Agent": "bench/1"}).prepare()


def batch_of(tmpl: PreparedRequest, k: int) -> list[PreparedRequest]:
    out = []
    for _ in range(k):
        p = tmpl.copy()
        p.hooks = default_hooks()  # copy() shares the hook dict; give each request its own
        out.append(p)
    return out


def time_auth(auth: Auth, batch: list[PreparedRequest]) -> float:
    """µs per call of ``auth(r)`` over the batch."""
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for r in batch:
            auth(r)
        t1 = time.perf_counter_ns()
    finally:
        gc.enable()
    return (t1 - t0) / 1000 / len(batch)


def time_prepare(k: int) -> float:
    headers = {"Accept": "application/json", "User-Agent": "bench/1"}
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for _ in range(k):
            requests.Request("GET", URL, headers=headers).prepare()
        t1 = time.perf_counter_ns()
    finally:
        gc.enable()
    return (t1 - t0) / 1000 / k


def check_variants(variants: list[Variant], tmpl: PreparedRequest) -> None:
    """Every auth variant must really set the same header (so all do the same job)."""
    for v in variants:
        if v.auth is None or v.key == "a":
            continue
        (r,) = batch_of(tmpl, 1)
        v.auth(r)
        got = r.headers.get("Authorization")
        if got != f"Bearer {ACCESS_TOKEN}":
            raise SystemExit(f"variant {v.name!r} set Authorization={got!r}")


def run(rounds: int, k: int, seed: int, warmup_batches: int) -> tuple[list[Variant], dict[str, str]]:
    token = fresh_token()
    notes: dict[str, str] = {}
    variants = [
        Variant("a", "(a) no auth (no-op)", noop),
        Variant("b", "(b) tokensmith TokenAuth", TokenAuth(CachedSource(token))),
    ]
    b2, why = real_client_auth()
    if b2 is not None:
        variants.append(Variant("b2", "(b2) tokensmith + real TokenClient", b2))
    else:
        notes["b2"] = f"skipped: {why}"
    cc, bt, why = roc_auths()
    if cc is not None and bt is not None:
        variants.append(Variant("c", "(c) requests-oauth2client CC auth", cc))
        variants.append(Variant("c2", "(c2) requests-oauth2client BearerToken", bt))
    else:
        notes["c"] = f"skipped: {why}"
    variants.append(Variant("d", "(d) minimal AuthBase (floor)", MinimalAuth(token.authorization)))
    variants.append(Variant("p", "(p) Request.prepare() (scale)", None))

    tmpl = template()
    check_variants(variants, tmpl)
    rng = random.Random(seed)
    for i in range(warmup_batches + rounds):
        order = variants[:]
        rng.shuffle(order)
        batches = {v.key: batch_of(tmpl, k) for v in order if v.auth is not None}
        gc.collect()
        for v in order:
            us = time_prepare(k) if v.auth is None else time_auth(v.auth, batches[v.key])
            if i >= warmup_batches:
                v.per_call_us.append(us)
    return variants, notes


# --- report ------------------------------------------------------------------------------------------------


def paired_overhead(v: Variant, base: Variant) -> float:
    return statistics.median(x - b for x, b in zip(v.per_call_us, base.per_call_us, strict=True))


def overhead_spread(v: Variant, base: Variant) -> tuple[float, float]:
    """p10 and p90 over rounds of the paired per-round overhead: how stable the figure is."""
    diffs = [x - b for x, b in zip(v.per_call_us, base.per_call_us, strict=True)]
    if len(diffs) < 2:
        return diffs[0], diffs[0]
    deciles = statistics.quantiles(diffs, n=10)
    return deciles[0], deciles[-1]


def report(variants: list[Variant], notes: dict[str, str], args: argparse.Namespace, elapsed: float) -> dict[str, Any]:
    by = {v.key: v for v in variants}
    base = by["a"]
    versions = {}
    for dist in ("requests", "requests-oauth2client", "tokensmith"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "-"
    print(
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; requests {versions['requests']}, "
        f"requests-oauth2client {versions['requests-oauth2client']}, tokensmith {versions['tokensmith']}; "
        f"{args.rounds} rounds × {args.batch} calls per variant, seed {args.seed}, {elapsed:.1f} s"
    )
    print()
    print(f"{'variant':42} {'min µs':>8} {'median µs':>10} {'overhead vs (a) µs':>19} {'rounds p10–p90':>15}")
    rows: list[dict[str, Any]] = []
    for v in variants:
        mn, med = min(v.per_call_us), statistics.median(v.per_call_us)
        over = None if v.key in ("a", "p") else paired_overhead(v, base)
        over_s = "—" if over is None else f"{over:+.3f}"
        lo, hi = (0.0, 0.0) if over is None else overhead_spread(v, base)
        spread_s = "" if over is None else f"{lo:.2f}–{hi:.2f}"
        print(f"{v.name:42} {mn:8.3f} {med:10.3f} {over_s:>19} {spread_s:>15}")
        rows.append({"key": v.key, "name": v.name, "min_us": mn, "median_us": med, "overhead_us": over})
    for key, note in notes.items():
        print(f"({key}) {note}")
    print()

    verdicts: dict[str, Any] = {}
    ts = paired_overhead(by["b"], base)
    if "c" in by:
        roc = paired_overhead(by["c"], base)
        ratio = ts / roc if roc > 0 else float("nan")
        raw_ratio = statistics.median(by["b"].per_call_us) / statistics.median(by["c"].per_call_us)
        print(
            f"tokensmith / requests-oauth2client (CC auth): overhead ratio {ratio:.2f}× "
            f"({ts:.3f} µs vs {roc:.3f} µs), per-call ratio {raw_ratio:.2f}×"
        )
        verdicts["ratio_vs_roc"] = ratio
    floor = paired_overhead(by["d"], base)
    print(f"tokensmith above the floor (d): {ts - floor:+.3f} µs per call")
    ok = ts <= TARGET_US
    print(
        f"[{'PASS' if ok else 'FAIL'}] tokensmith TokenAuth overhead = {ts:.3f} µs per call (target ≤ {TARGET_US} µs)"
    )
    verdicts["tokensmith_overhead_us"] = ts
    verdicts["pass"] = ok
    if "b2" in by:
        ts2 = paired_overhead(by["b2"], base)
        ok2 = ts2 <= TARGET_US
        print(f"[{'PASS' if ok2 else 'FAIL'}] with the real TokenClient = {ts2:.3f} µs per call (same target)")
        verdicts["tokensmith_real_client_overhead_us"] = ts2
        verdicts["pass_real_client"] = ok2
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "versions": versions,
        "config": {"rounds": args.rounds, "batch": args.batch, "seed": args.seed},
        "variants": rows,
        "notes": notes,
        "verdicts": verdicts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=100, help="interleaved rounds (default 100)")
    parser.add_argument("--batch", type=int, default=2000, help="calls per variant per round (default 2000)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed warm-up rounds (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="shuffle seed (default 1)")
    parser.add_argument("--json", type=Path, help="write the figures and verdicts as JSON to this path")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    variants, notes = run(args.rounds, args.batch, args.seed, args.warmup)
    result = report(variants, notes, args, time.perf_counter() - t0)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
