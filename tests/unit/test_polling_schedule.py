"""The device polling schedule (RFC 8628 §3.5, C17): never early, +5 s per slow_down, backoff on errors,
never past the deadline; checked by example and as properties over random server answer sequences."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokensmith._protocol.polling import DEFAULT_MARGIN, FIRST_POLL_LEAD, PollOutcome, PollSchedule
from tokensmith.exceptions import DeviceFlowTimeout, ExpiredToken, PersistentSlowDown

M = DEFAULT_MARGIN


def test_first_poll_waits_one_interval() -> None:
    s = PollSchedule.start(5, 600, now=100.0)
    assert s.next_wait(100.0) == pytest.approx(5 + M)


def test_slow_down_adds_five_seconds_for_this_and_all_later_polls() -> None:
    s = PollSchedule.start(5, 600, now=0.0)
    s.record(PollOutcome.SLOW_DOWN, 10.0)
    assert s.interval == 10 and s.next_wait(10.0) == pytest.approx(10 + M)
    s.record(PollOutcome.PENDING, 30.0)
    assert s.next_wait(30.0) == pytest.approx(10 + M)  # the increase sticks
    s.record(PollOutcome.SLOW_DOWN, 50.0, new_interval=30)
    assert s.interval == 30  # a larger server-sent interval wins


def test_persistent_slow_down_names_the_likely_cause() -> None:
    s = PollSchedule.start(5, 10_000, now=0.0, max_slow_downs=3)
    s.record(PollOutcome.SLOW_DOWN, 1.0)
    s.record(PollOutcome.SLOW_DOWN, 2.0)
    with pytest.raises(PersistentSlowDown, match="clock"):
        s.record(PollOutcome.SLOW_DOWN, 3.0)


def test_transient_errors_back_off_exponentially_then_reset() -> None:
    s = PollSchedule.start(5, 10_000, now=0.0)
    waits = []
    for i in range(5):
        s.record(PollOutcome.TRANSIENT, float(i))
        waits.append(s.next_wait(float(i)) - M)
    assert waits == pytest.approx([10, 20, 40, 60, 60])
    s.record(PollOutcome.PENDING, 100.0)
    assert s.next_wait(100.0) == pytest.approx(5 + M)


def test_retry_after_is_honoured() -> None:
    s = PollSchedule.start(5, 10_000, now=0.0)
    s.record(PollOutcome.TRANSIENT, 0.0, retry_after=120)
    assert s.next_wait(0.0) == pytest.approx(120 + M)


def test_no_poll_at_or_after_the_deadline() -> None:
    s = PollSchedule.start(5, 12, now=0.0)
    assert s.next_wait(0.0) == pytest.approx(5 + M)
    s.record(PollOutcome.PENDING, 5.1)
    assert s.next_wait(5.1) == pytest.approx(5 + M)
    s.record(PollOutcome.PENDING, 10.2)  # next would be at 15.25 > 12
    with pytest.raises(ExpiredToken):
        s.next_wait(10.2)


def test_an_interval_as_long_as_the_code_life_leaves_one_poll_just_before_expiry() -> None:
    s = PollSchedule.start(600, 600, now=0.0)
    assert s.next_wait(0.0) == pytest.approx(600 - FIRST_POLL_LEAD)
    s.record(PollOutcome.PENDING, 599.5)
    with pytest.raises(ExpiredToken):
        s.next_wait(599.5)
    assert PollSchedule.start(5, 0, now=0.0).time_left(0.0) == 0
    with pytest.raises(ExpiredToken):  # a code that arrived dead: no poll
        PollSchedule.start(5, 0, now=0.0).next_wait(0.0)


def test_caller_timeout_is_its_own_error() -> None:
    s = PollSchedule.start(5, 600, now=0.0, timeout=3)
    with pytest.raises(DeviceFlowTimeout):
        s.next_wait(0.0)


answers = st.lists(
    st.tuples(
        st.sampled_from(list(PollOutcome)),
        st.none() | st.integers(0, 40),  # server interval sent with slow_down
        st.none() | st.floats(0, 90),  # Retry-After
        st.floats(0, 3),  # response latency
    ),
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(interval=st.integers(0, 30), expires_in=st.integers(0, 1800), seq=answers, timeout=st.none() | st.floats(0, 900))
def test_schedule_properties(
    interval: int,
    expires_in: int,
    seq: list[tuple[PollOutcome, int | None, float | None, float]],
    timeout: float | None,
) -> None:
    now = 0.0
    s = PollSchedule.start(interval, expires_in, now, timeout=timeout, max_slow_downs=10**6)
    last_answer_at = now
    # The first poll waits the server's interval, unless that leaves no poll before the code expires: then it
    # goes out FIRST_POLL_LEAD before expiry.
    required_gap = float(interval) if interval + M < expires_in else max(0.0, expires_in - FIRST_POLL_LEAD)
    prev_interval = s.interval
    for outcome, new_interval, retry_after, latency in seq:
        try:
            wait = s.next_wait(now)
        except (ExpiredToken, DeviceFlowTimeout):
            # Stopped only because the earliest allowed poll would be at or past a deadline.
            end = s.deadline if s.caller_deadline is None else min(s.deadline, s.caller_deadline)
            assert max(now, s.not_before) >= end - 1e-9
            return
        send_at = now + wait
        assert wait >= 0
        assert send_at - last_answer_at >= required_gap - 1e-9  # never earlier than the current interval
        assert send_at < s.deadline  # never at or after the device code expires
        if s.caller_deadline is not None:
            assert send_at < s.caller_deadline
        now = send_at + latency
        s.record(outcome, now, new_interval=new_interval, retry_after=retry_after)
        assert s.interval >= prev_interval  # intervals never shrink
        if outcome is PollOutcome.SLOW_DOWN:
            assert s.interval >= prev_interval + 5
        prev_interval = s.interval
        required_gap = max(s.interval, retry_after or 0.0)
        last_answer_at = now
