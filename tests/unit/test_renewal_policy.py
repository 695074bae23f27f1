"""Issue 10 item 1, in the sans-IO core: a token's two deadlines, the jitter on the first, the server's
``refresh_in``, the renewal state over a given clock, and the back-off steps. Pure functions on injected times and
draws: no clock, no sleeping."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tokensmith
from tokensmith._protocol.messages import HttpResponse
from tokensmith._protocol.renewal import (
    DEFAULT_POLICY,
    RenewalPolicy,
    RenewalState,
    backoff_step,
    deadlines,
    renewal_state,
)
from tokensmith._protocol.token import parse_token_response

T0 = 1_000_000.0


@pytest.mark.parametrize(
    ("lifetime", "refresh_after", "must_after"),
    [
        (5, 3.75, 4.5),  # a quarter / a tenth of the lifetime
        (60, 45, 54),
        (600, 450, 540),
        (3600, 3300, 3540),  # the caps: 300 s advisory, 60 s mandatory
        (7200, 3600, 7140),  # long-lived: half the lifetime
        (86400, 43200, 86340),
    ],
)
def test_windows_scale_with_the_lifetime(lifetime: float, refresh_after: float, must_after: float) -> None:
    due = deadlines(T0 + lifetime, T0)
    assert due.refresh_at == pytest.approx(T0 + refresh_after)
    assert due.must_refresh_at == pytest.approx(T0 + must_after)


def test_unknown_lifetime_uses_the_caps() -> None:
    due = deadlines(T0, None)
    assert due.must_refresh_at == T0 - 60 and due.refresh_at == T0 - 300


def test_the_servers_refresh_in_wins_but_never_past_the_mandatory_point() -> None:
    assert deadlines(T0 + 3600, T0, refresh_in=1000).refresh_at == T0 + 1000
    assert deadlines(T0 + 86400, T0, refresh_in=600).refresh_at == T0 + 600  # also for long-lived tokens
    assert deadlines(T0 + 3600, T0, refresh_in=5000).refresh_at == T0 + 3540  # clamped to must_refresh_at
    assert deadlines(T0 + 3600, T0, refresh_in=0).refresh_at == T0 + 3300  # 0: ignored
    assert deadlines(T0 + 3600, None, refresh_in=1000).refresh_at == T0 + 3600 - 300  # no receipt time: ignored


def test_refresh_in_is_parsed_leniently_and_reaches_the_token() -> None:
    def parse(extra: dict[str, object]) -> tokensmith.Token:
        body = {"access_token": "at", "token_type": "Bearer", "expires_in": 3600, **extra}
        import json

        response = parse_token_response(HttpResponse(200, {}, json.dumps(body).encode(), received_at=T0))
        return tokensmith.Token.from_response(response)

    assert parse({"refresh_in": 1800}).refresh_at == T0 + 1800
    assert parse({"refresh_in": "1800"}).refresh_at == T0 + 1800  # numeric strings, as for expires_in
    assert parse({"refresh_in": "soon"}).refresh_at == T0 + 3300  # malformed: ignored, never an error
    assert parse({"refresh_in": -5}).refresh_at == T0 + 3300


@given(
    lifetime=st.floats(0, 10 * 86400),
    draw=st.floats(0, 1, exclude_max=True),
    refresh_in=st.one_of(st.none(), st.floats(0, 20 * 86400)),
    jitter=st.floats(0, 1),
)
def test_deadlines_are_ordered_and_jitter_only_moves_renewal_earlier(
    lifetime: float, draw: float, refresh_in: float | None, jitter: float
) -> None:
    policy = RenewalPolicy(jitter=jitter)
    due = deadlines(T0 + lifetime, T0, refresh_in=refresh_in, policy=policy, draw=draw)
    nominal = deadlines(T0 + lifetime, T0, refresh_in=refresh_in, policy=policy, draw=0.0)
    assert T0 <= due.refresh_at <= due.must_refresh_at <= T0 + lifetime
    # Jitter bounds: never later than nominal, never earlier than nominal minus jitter x (nominal - receipt).
    assert due.refresh_at <= nominal.refresh_at
    assert due.refresh_at >= nominal.refresh_at - jitter * (nominal.refresh_at - T0) - 1e-6
    assert due.must_refresh_at == nominal.must_refresh_at  # the mandatory deadline is never jittered


def test_jitter_spreads_a_fleet() -> None:
    """Ten clients that got a 60 s token in the same second renew at ten different moments within 4.5 s."""
    moments = {deadlines(T0 + 60, T0, draw=i / 10).refresh_at for i in range(10)}
    assert len(moments) == 10 and max(moments) == T0 + 45 and min(moments) == pytest.approx(T0 + 45 - 0.9 * 4.5)


@pytest.mark.parametrize(
    ("now", "state"),
    [
        (T0, RenewalState.FRESH),
        (T0 + 44.9, RenewalState.FRESH),
        (T0 + 45, RenewalState.REFRESH_SOON),
        (T0 + 53.9, RenewalState.REFRESH_SOON),
        (T0 + 54, RenewalState.MUST_REFRESH),
        (T0 + 59.9, RenewalState.MUST_REFRESH),
        (T0 + 60, RenewalState.EXPIRED),
        (math.nan, RenewalState.EXPIRED),
    ],
)
def test_renewal_state_over_an_injected_clock(now: float, state: RenewalState) -> None:
    token = tokensmith.Token("at", expires_at=T0 + 60, issued_at=T0)
    assert token.state(now) is state
    assert renewal_state(now, token.refresh_at, token.must_refresh_at, token.expires_at) is state
    assert token.is_fresh(now) is (state is RenewalState.FRESH)


def test_a_token_without_expiry_is_always_fresh() -> None:
    token = tokensmith.Token("at")
    assert token.refresh_at is None and token.must_refresh_at is None and token.state(1e12) is RenewalState.FRESH


def test_deadlines_survive_a_store_round_trip_and_old_documents_get_defaults() -> None:
    token = tokensmith.Token("at", expires_at=T0 + 60, issued_at=T0, refresh_at=T0 + 41.5, must_refresh_at=T0 + 54)
    assert tokensmith.Token.from_dict(token.to_dict()) == token
    old = {k: v for k, v in token.to_dict().items() if k not in ("refresh_at", "must_refresh_at")}
    restored = tokensmith.Token.from_dict(old)
    assert restored.refresh_at == T0 + 45 and restored.must_refresh_at == T0 + 54


def test_policy_validation() -> None:
    for bad in (
        {"advisory": -1},
        {"jitter": 1.5},
        {"min_gap": math.inf},
        {"mandatory": 400},
        {"mandatory_fraction": 0.5},
        {"advisory": True},
    ):
        with pytest.raises(ValueError, match="RenewalPolicy"):
            RenewalPolicy(**bad)  # type: ignore[arg-type]


# --- back-off -------------------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_equal_jitter() -> None:
    steps = [backoff_step(n, base=1.0, cap=30.0, draw=1.0) for n in range(1, 9)]
    assert steps == [1, 2, 4, 8, 16, 30, 30, 30]
    low = [backoff_step(n, base=1.0, cap=30.0, draw=0.0) for n in range(1, 9)]
    assert low == [0.5, 1, 2, 4, 8, 15, 15, 15]  # never below half the step: the pace still backs off


@given(
    failures=st.integers(1, 10_000),
    draw=st.floats(0, 1),
    base=st.floats(0, 10),
    cap=st.floats(0, 300),
    min_gap=st.floats(0, 5),
    retry_after=st.one_of(st.none(), st.floats(0, 86400)),
)
def test_backoff_bounds(
    failures: int, draw: float, base: float, cap: float, min_gap: float, retry_after: float | None
) -> None:
    step = backoff_step(failures, base=base, cap=cap, retry_after=retry_after, min_gap=min_gap, draw=draw)
    nominal = min(cap, base * 2.0 ** min(failures - 1, 64))
    assert math.isfinite(step)
    assert step >= min_gap and step >= nominal / 2 - 1e-9
    assert step <= max(nominal, min_gap, retry_after or 0.0) + 1e-9
    if retry_after is not None:
        assert step >= retry_after  # the server's Retry-After is honoured, even beyond the cap


def test_the_default_policy_is_the_documented_one() -> None:
    assert RenewalPolicy(300.0, 0.25, 60.0, 0.1, 7200.0, 0.1, 1.0) == DEFAULT_POLICY
