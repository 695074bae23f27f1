"""Browser login (authorization code + PKCE, RFC 8252 loopback redirect) against the local test IdP: how long after
the redirect reaches the loopback listener does ``browser_login`` return the token, and how many token requests
does it make?

Each login is one real ``tokensmith.browser.browser_login`` (public client ``browser-public``, scope
``openid offline_access``, ``prompt=consent``, RFC 9207 ``iss`` required) against the ``oidc-provider`` server on
127.0.0.1 started via ``tests/idp_harness.py``. The person is played over HTTP by ``LocalIdP.authorize`` (the
server's own login and consent pages, no Chromium), which stops at the redirect to the listener. The benchmark then
delivers that redirect itself, as the browser would, and measures on ``time.monotonic()``:

- **listener → token**: from the moment the listener starts checking the redirect (its ``state`` check, recorded by
  wrapping the parser the listener calls) to the moment ``browser_login`` returns the ``Token``;
- **GET → token**: the same from the moment the benchmark starts sending the GET (connecting included);
- **token request**: the one POST to the token endpoint, send to answer (a ``requests.Session`` subclass passed
  through ``Transport(session)`` records it);
- **overhead**: listener → token minus that token request: waking the login, building the request, parsing the
  answer, serving the page and closing the listener.

Target: exactly one token request per login (no polling, no retry) and the median reported. This is a report, not a
test: it exits 0 once it has run (2 only if the IdP cannot start), printing PASS/FAIL against the target.

Usage: ``python benchmarks/bench_browser_redirect.py [--logins N] [--warmup N] [--json PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import requests

import tokensmith.browser as browser_module
from _report import machine, verdict, write_json
from counting_session import CountingSession
from idp_harness import BROWSER_PUBLIC, IdPError, LocalIdP
from tokensmith._protocol.client_auth import NoClientAuth
from tokensmith._transport import Transport
from tokensmith.browser import BrowserPrompt, browser_login

SCOPE = "openid offline_access"
LOGIN_TIMEOUT = 60.0


@dataclass
class Login:
    index: int
    ok: bool = False
    error: str | None = None
    listener_to_token_ms: float = 0.0
    get_to_token_ms: float = 0.0
    token_request_ms: float = 0.0
    overhead_ms: float = 0.0
    page_ms: float = 0.0
    token_requests: int = 0


class ArrivalClock:
    """Wraps the parser the listener calls on every redirect, to record when the redirect arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self._original = browser_module.parse_authorization_response

    def __enter__(self) -> ArrivalClock:
        original = self._original

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.arrivals.append(time.monotonic())
            return original(*args, **kwargs)

        browser_module.parse_authorization_response = timed  # type: ignore[assignment]
        return self

    def __exit__(self, *exc_info: object) -> None:
        browser_module.parse_authorization_response = self._original  # type: ignore[assignment]


def run_login(idp: LocalIdP, index: int, clock: ArrivalClock) -> Login:
    result = Login(index)
    session = CountingSession()
    prompted = threading.Event()
    prompts: list[BrowserPrompt] = []
    outcome: dict[str, Any] = {}

    def on_prompt(prompt: BrowserPrompt) -> None:
        prompts.append(prompt)
        prompted.set()

    def login() -> None:
        try:
            outcome["token"] = browser_login(
                idp.discovery["authorization_endpoint"],
                idp.token_endpoint,
                NoClientAuth(BROWSER_PUBLIC.client_id),
                on_prompt=on_prompt,
                scope=SCOPE,
                prompt="consent",
                issuer=idp.issuer,
                iss_required=True,
                open_browser=None,
                transport=Transport(session),
                login_timeout=LOGIN_TIMEOUT,
            )
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            outcome["returned"] = time.monotonic()

    thread = threading.Thread(target=login, name=f"browser-login-{index}", daemon=True)
    thread.start()
    try:
        if not prompted.wait(30):
            raise RuntimeError(f"no prompt: {outcome.get('error')!r}")
        arrival = idp.authorize(prompts[0].url, deliver=False)  # login and consent pages, stopped at the redirect
        before = len(clock.arrivals)
        with requests.Session() as browser:
            browser.trust_env = False
            sent = time.monotonic()
            page = browser.get(arrival.redirect_url, timeout=30, allow_redirects=False)
            paged = time.monotonic()
        thread.join(LOGIN_TIMEOUT)
        if "token" not in outcome:
            raise RuntimeError(f"browser_login failed: {outcome.get('error')!r}")
        if page.status_code != 200:
            raise RuntimeError(f"the listener answered HTTP {page.status_code}")
        arrived = clock.arrivals[before]
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    finally:
        session.close()
    posts = session.to(idp.token_endpoint)
    result.token_requests = len(posts)
    returned = outcome["returned"]
    result.listener_to_token_ms = (returned - arrived) * 1000
    result.get_to_token_ms = (returned - sent) * 1000
    result.page_ms = (paged - sent) * 1000
    if posts:
        result.token_request_ms = (posts[0].answered - posts[0].sent) * 1000
        result.overhead_ms = result.listener_to_token_ms - result.token_request_ms
    result.ok = True
    return result


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=50, help="timed logins, one after another (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed logins first (default 5)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args(argv)
    if args.logins < 1 or args.warmup < 0:
        parser.error("--logins must be >= 1 and --warmup >= 0")

    logging.getLogger("tokensmith").setLevel(logging.ERROR)  # no warnings in the report

    idp = LocalIdP()
    try:
        idp.start()
    except IdPError as exc:
        print(f"cannot start the local IdP: {exc}", file=sys.stderr)
        return 2
    logins: list[Login] = []
    try:
        print(f"{args.warmup} + {args.logins} browser logins, one after another, against {idp.issuer}", flush=True)
        started = time.monotonic()
        with ArrivalClock() as clock:
            for index in range(args.warmup):
                warm = run_login(idp, -index - 1, clock)
                if not warm.ok:
                    print(f"  warm-up login failed: {warm.error}", file=sys.stderr)
            for index in range(1, args.logins + 1):
                login = run_login(idp, index, clock)
                logins.append(login)
                if not login.ok:
                    print(f"  login {index}: ERROR {login.error}", file=sys.stderr)
        duration = time.monotonic() - started
    finally:
        idp.stop()

    info = machine()
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    good = [login for login in logins if login.ok]
    print()
    print(
        f"browser login, redirect → token, {when}, {info['cpu']} x{info['cores']}, Python {info['python']}, "
        f"requests {info['requests']}, node {info['node']}; {args.logins} logins (+{args.warmup} warm-up), "
        f"{duration:.0f} s"
    )
    figures: dict[str, dict[str, float]] = {}
    if good:
        print(f"{'ms':<28} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}")
        for label, name in (
            ("listener → token", "listener_to_token_ms"),
            ("GET sent → token", "get_to_token_ms"),
            ("  token request (1 POST)", "token_request_ms"),
            ("  overhead (the rest)", "overhead_ms"),
            ("GET sent → page received", "page_ms"),
        ):
            values = [getattr(login, name) for login in good]
            figures[name] = {
                "median": statistics.median(values),
                "p90": quantile(values, 0.9),
                "min": min(values),
                "max": max(values),
            }
            f = figures[name]
            print(f"{label:<28} {f['median']:>8.2f} {f['p90']:>8.2f} {f['min']:>8.2f} {f['max']:>8.2f}")
    print()
    errors = len(logins) - len(good)
    one_request = [login for login in good if login.token_requests == 1]
    requests_ok = bool(good) and errors == 0 and len(one_request) == len(logins)
    counts = sorted({login.token_requests for login in good})
    print(
        f"[{verdict(requests_ok)}] exactly one token request per login in {len(one_request)}/{len(logins)} logins"
        + (f" (counts seen: {counts})" if counts != [1] else "")
        + (f"; {errors} login(s) failed" if errors else "")
    )
    if "listener_to_token_ms" in figures:
        print(f"median listener → token: {figures['listener_to_token_ms']['median']:.2f} ms")

    if args.json is not None:
        report = {
            "date": when,
            "machine": info,
            "endpoint": "local oidc-provider on 127.0.0.1 (tests/idp)",
            "config": {
                "logins": args.logins,
                "warmup": args.warmup,
                "scope": SCOPE,
                "client": BROWSER_PUBLIC.client_id,
            },
            "duration_s": round(duration, 1),
            "figures_ms": figures,
            "logins": [asdict(login) for login in logins],
            "verdicts": {"token_requests": {"target": "== 1 per login", "verdict": verdict(requests_ok)}},
        }
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
