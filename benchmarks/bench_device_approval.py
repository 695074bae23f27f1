"""Device login (RFC 8628) against the local test IdP: how long after the user approves does the token arrive?

Each trial runs one real ``tokensmith.device.device_login`` (public client ``device-public``, scope
``openid offline_access``) against the ``oidc-provider`` server on 127.0.0.1 started via
``tests/idp_harness.py``. The server sends no ``interval``, so the client polls every 5 s (plus the
schedule's 50 ms margin, measured from the previous answer). A second thread plays the user: it calls
``LocalIdP.approve(user_code)``, which drives the server's own verification, login and consent pages over
HTTP like a browser. The approval is *complete* when ``approve`` returns; that ``time.monotonic()`` instant
is the start of the measurement, and the moment ``device_login`` returns the token is its end.

Trials approve at different points of the polling cycle:

- ``spread``: the approval starts at offsets spread evenly from 0 s to just under one interval after the
  prompt (``on_prompt`` is called right before polling starts), i.e. before the first poll;
- ``after poll k``: the approval starts as soon as the k-th poll's ``authorization_pending`` answer has
  arrived (signalled by ``on_progress``), the worst place in the cycle: the client has just been told to
  wait a whole interval.

Token-endpoint polls are counted by a ``requests.Session`` subclass passed in through
``tokensmith._transport.Transport(session)``. The *minimal* number of polls is what a client polling at
exactly every ``interval`` from the prompt would need: the number of interval boundaries (prompt +
k × interval, k ≥ 1) that passed before the approval completed, plus one poll to fetch the token.

Per trial the report gives the approval offset (after the prompt, and after the start of the current
cycle: the prompt or the latest poll answer), approval→token latency in ms, that latency minus the current
interval, and the polls made vs the minimal. Targets: max(approval→token) ≤ current interval + 100 ms, and
polls == minimal in every trial. This is a report, not a test: it always exits 0 once it has run (2 only
if the IdP cannot start), printing PASS/FAIL against the targets.

Usage: ``python benchmarks/bench_device_approval.py [--trials N] [--json PATH]``
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _report import machine, verdict, write_json
from counting_session import CountingSession
from idp_harness import DEVICE_PUBLIC, IdPError, LocalIdP
from tokensmith._protocol.client_auth import NoClientAuth
from tokensmith._transport import Transport
from tokensmith.device import DevicePrompt, PollProgress, device_login

SCOPE = ("openid", "offline_access")
#: approval→token may exceed the current interval by at most this much (seconds).
TARGET_SLACK = 0.100
#: ``spread`` trials start approving at most this long before the first interval boundary, so that the
#: approval (about 20–40 ms on loopback) completes before it.
SPREAD_GUARD = 0.15
#: Give up on a trial (cancel the poller) after this long.
TRIAL_TIMEOUT = 60.0


@dataclass(frozen=True)
class Plan:
    """When a trial approves: ``fraction`` × (interval − SPREAD_GUARD) after the prompt, or right after poll
    ``after_poll`` answers. The interval is the prompt's, known only once the login has started."""

    kind: str
    fraction: float | None = None
    after_poll: int | None = None


@dataclass
class Trial:
    index: int
    kind: str
    ok: bool = False
    error: str | None = None
    interval: float = 0.0
    approve_ms: float = 0.0
    #: Approval complete, seconds after the prompt.
    approved_at: float = 0.0
    #: Approval complete, seconds after the start of the current cycle (the prompt or the latest poll answer).
    phase: float = 0.0
    latency_ms: float = 0.0
    over_interval_ms: float = 0.0
    polls: int = 0
    minimal: int = 0
    slow_downs: int = 0
    #: Poll send times, seconds after the prompt.
    poll_times: list[float] = field(default_factory=list)


def plans(trials: int) -> list[Plan]:
    """``trials`` approval points: a quarter (at least one, from 2 trials up) right after poll 1, 2, ...
    answers; the rest spread evenly over [0, interval - SPREAD_GUARD] after the prompt."""
    after = 0 if trials < 2 else max(1, trials // 4)
    spread = trials - after
    result = [Plan("spread", fraction=i / (spread - 1) if spread > 1 else 0.0) for i in range(spread)]
    result += [Plan(f"after poll {k}", after_poll=k) for k in range(1, after + 1)]
    return result


def run_trial(idp: LocalIdP, index: int, plan: Plan) -> Trial:
    trial = Trial(index, plan.kind)
    session = CountingSession()
    prompted = threading.Event()
    cancel = threading.Event()
    done = threading.Event()
    prompts: list[tuple[DevicePrompt, float]] = []
    progress: list[tuple[PollProgress, float]] = []
    answered: list[threading.Event] = [threading.Event() for _ in range(plan.after_poll or 0)]
    outcome: dict[str, Any] = {}

    def on_prompt(prompt: DevicePrompt) -> None:
        prompts.append((prompt, time.monotonic()))
        prompted.set()

    def on_progress(update: PollProgress) -> None:
        progress.append((update, time.monotonic()))
        if update.polls <= len(answered):
            answered[update.polls - 1].set()

    def poller() -> None:
        try:
            outcome["token"] = device_login(
                idp.device_authorization_endpoint,
                idp.token_endpoint,
                NoClientAuth(DEVICE_PUBLIC.client_id),
                on_prompt=on_prompt,
                on_progress=on_progress,
                scope=list(SCOPE),
                transport=Transport(session),
                cancel=cancel,
                timeout=TRIAL_TIMEOUT,
            )
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            outcome["at"] = time.monotonic()  # device_login returned (or failed)
            done.set()

    thread = threading.Thread(target=poller, name=f"device-login-{index}", daemon=True)
    thread.start()
    approved = 0.0
    try:
        if not prompted.wait(30):
            raise RuntimeError("no prompt within 30 s")
        prompt, prompt_at = prompts[0]
        if plan.fraction is not None:
            offset = plan.fraction * max(0.0, prompt.interval - SPREAD_GUARD)
            time.sleep(max(0.0, prompt_at + offset - time.monotonic()))
        elif answered and not answered[-1].wait(TRIAL_TIMEOUT):
            raise RuntimeError(f"poll {len(answered)} never answered")
        if done.is_set():
            raise RuntimeError(f"device_login ended before the approval: {outcome.get('error')!r}")
        started = time.monotonic()
        idp.approve(prompt.user_code)
        approved = time.monotonic()
        trial.approve_ms = (approved - started) * 1000
    except Exception as exc:
        trial.error = f"{type(exc).__name__}: {exc}"
        cancel.set()
    thread.join(TRIAL_TIMEOUT + 10)
    session.close()
    if trial.error is not None:
        return trial
    if "error" in outcome or "token" not in outcome:
        trial.error = f"device_login failed: {outcome.get('error')!r}"
        return trial
    if not outcome["token"].access_token:
        trial.error = "empty access token"
        return trial

    prompt, prompt_at = prompts[0]
    before = [(update, at) for update, at in progress if at <= approved]
    trial.interval = before[-1][0].interval if before else float(prompt.interval)
    cycle_start = before[-1][1] if before else prompt_at
    trial.approved_at = approved - prompt_at
    trial.phase = approved - cycle_start
    latency = outcome["at"] - approved
    trial.latency_ms = latency * 1000
    trial.over_interval_ms = (latency - trial.interval) * 1000
    polls = session.to(idp.token_endpoint)
    trial.polls = len(polls)
    trial.poll_times = [post.sent - prompt_at for post in polls]
    trial.slow_downs = sum(1 for update, _ in progress if update.outcome.value == "slow_down")
    # Interval boundaries prompt + k × interval (k ≥ 1) strictly before the approval completed, + 1.
    base = float(prompt.interval)
    boundaries = 0
    while base > 0 and (boundaries + 1) * base < trial.approved_at:
        boundaries += 1
    trial.minimal = boundaries + 1
    trial.ok = True
    return trial


# --------------------------------------------------------------------------- report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8, help="device logins, run one after another (default 8)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be >= 1")

    logging.getLogger("tokensmith").setLevel(logging.ERROR)  # no warnings in the report

    idp = LocalIdP()
    try:
        idp.start()
    except IdPError as exc:
        print(f"cannot start the local IdP: {exc}", file=sys.stderr)
        return 2
    trials: list[Trial] = []
    try:
        schedule = plans(args.trials)
        print(f"{len(schedule)} device logins, one after another, against {idp.token_endpoint}", flush=True)
        started = time.monotonic()
        for index, plan in enumerate(schedule, 1):
            trial = run_trial(idp, index, plan)
            trials.append(trial)
            state = f"{trial.latency_ms:.0f} ms, {trial.polls} polls" if trial.ok else f"ERROR {trial.error}"
            elapsed = time.monotonic() - started
            print(f"  trial {index}/{len(schedule)} {plan.kind}: {state}  ({elapsed:.0f} s)", file=sys.stderr)
        duration = time.monotonic() - started
    finally:
        idp.stop()

    info = machine()
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print()
    print(
        f"device login, approval → token, {when}, {info['cpu']} x{info['cores']}, Python {info['python']}, "
        f"requests {info['requests']}, node {info['node']}, {duration:.0f} s"
    )
    print(
        f"{'#':>2} {'approval':<12} {'after prompt':>12} {'in cycle':>9} {'interval':>8} "
        f"{'→ token ms':>10} {'− interval':>10} {'polls':>5} {'minimal':>7}"
    )
    for t in trials:
        if not t.ok:
            print(f"{t.index:>2} {t.kind:<12} ERROR {t.error}")
            continue
        print(
            f"{t.index:>2} {t.kind:<12} {t.approved_at:>11.3f}s {t.phase:>8.3f}s {t.interval:>7.0f}s "
            f"{t.latency_ms:>10.0f} {t.over_interval_ms:>+10.0f} {t.polls:>5} {t.minimal:>7}"
            + ("  slow_down!" if t.slow_downs else "")
        )
    good = [t for t in trials if t.ok]
    latencies = [t.latency_ms for t in good]
    summary: dict[str, Any] = {}
    if good:
        worst = max(good, key=lambda t: t.over_interval_ms)
        summary = {
            "median_latency_ms": statistics.median(latencies),
            "max_latency_ms": max(latencies),
            "max_over_interval_ms": worst.over_interval_ms,
            "median_approve_ms": statistics.median(t.approve_ms for t in good),
        }
        print(
            f"approval → token: median {summary['median_latency_ms']:.0f} ms, max {summary['max_latency_ms']:.0f} ms "
            f"(interval {worst.interval:.0f} s {worst.over_interval_ms:+.0f} ms); "
            f"approve() itself took {summary['median_approve_ms']:.0f} ms (median)"
        )
    print()

    errors = len(trials) - len(good)
    latency_ok = bool(good) and errors == 0 and all(t.over_interval_ms <= TARGET_SLACK * 1000 for t in good)
    polls_ok = bool(good) and errors == 0 and all(t.polls == t.minimal for t in good)
    max_over = summary.get("max_over_interval_ms", float("nan"))
    extra = f"; {errors} trial(s) failed" if errors else ""
    print(
        f"[{verdict(latency_ok)}] max(approval → token) − current interval = {max_over:+.0f} ms "
        f"(target ≤ +{TARGET_SLACK * 1000:.0f} ms){extra}"
    )
    mismatched = [f"#{t.index}: {t.polls} vs {t.minimal}" for t in good if t.polls != t.minimal]
    print(
        f"[{verdict(polls_ok)}] polls == minimal in {len(good) - len(mismatched)}/{len(trials)} trials"
        + (f" ({', '.join(mismatched)})" if mismatched else "")
        + extra
    )

    if args.json is not None:
        report = {
            "date": when,
            "machine": info,
            "endpoint": "local oidc-provider on 127.0.0.1 (tests/idp)",
            "config": {"trials": args.trials, "scope": " ".join(SCOPE), "client": DEVICE_PUBLIC.client_id},
            "duration_s": round(duration, 1),
            "trials": [asdict(t) for t in trials],
            "summary": summary,
            "verdicts": {
                "latency": {"target": f"<= interval + {TARGET_SLACK * 1000:.0f} ms", "verdict": verdict(latency_ok)},
                "polls": {"target": "== minimal in every trial", "verdict": verdict(polls_ok)},
            },
        }
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
