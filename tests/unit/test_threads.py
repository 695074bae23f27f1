"""Helper threads leave Ctrl-C to the main thread: a process-directed SIGINT that lands on a helper thread is not
seen by a main thread asleep on a lock (the browser login's wait, a request's deadline) until that wait ends.
The CLI-level proof is ``tests/integration/test_cli_browser_terminal.py::test_ctrl_c_while_waiting_...``."""

from __future__ import annotations

import signal
import threading

import pytest

from tokensmith._threads import start_daemon

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")


def _mask_in(start: object) -> set[int]:
    seen: list[set[int]] = []
    done = threading.Event()

    def probe() -> None:
        seen.append(set(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
        done.set()

    if start is start_daemon:
        start_daemon(probe, name="probe")
    else:
        threading.Thread(target=probe, daemon=True).start()
    assert done.wait(30)
    return seen[0]


def test_helper_threads_are_born_with_the_asynchronous_signals_blocked() -> None:
    blocked = _mask_in(start_daemon)
    assert {signal.SIGINT, signal.SIGTERM} <= blocked
    assert signal.SIGINT not in _mask_in(threading.Thread)  # the control: a plain thread would take Ctrl-C


def test_the_creating_threads_mask_is_restored() -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    start_daemon(lambda: None, name="probe").join(30)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def test_start_daemon_passes_arguments_and_makes_a_daemon() -> None:
    got: list[tuple[int, str]] = []
    thread = start_daemon(lambda a, b: got.append((a, b)), 1, "x", name="tokensmith-test")
    thread.join(30)
    assert got == [(1, "x")] and thread.daemon and thread.name == "tokensmith-test"
