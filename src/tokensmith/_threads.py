"""Helper threads that leave Ctrl-C to the main thread.

The kernel hands a process-directed signal (SIGINT from the terminal, SIGTERM from a supervisor) to any thread
that does not block it. When a helper thread gets it, CPython notes the signal but the main thread, asleep on a
lock or an event (waiting for a redirect, a token request, a login), is not woken: Ctrl-C would take effect only
when that wait ends, minutes later. Threads started here are born with those signals blocked (a new thread
inherits its creator's mask, so the creator blocks them around ``start()``), so the main thread receives them.

Not for threads that start other programs (a browser): a child inherits the mask and would ignore Ctrl-C.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

_ASYNC_SIGNALS = frozenset(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, name)
)


def start_daemon(target: Callable[..., object], *args: Any, name: str) -> threading.Thread:
    """Start ``target(*args)`` on a daemon thread that does not take the process's asynchronous signals."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    mask = getattr(signal, "pthread_sigmask", None)  # POSIX only; elsewhere signals go to the main thread anyway
    if mask is None:
        thread.start()
        return thread
    previous = mask(signal.SIG_BLOCK, _ASYNC_SIGNALS)
    try:
        thread.start()
    finally:
        mask(signal.SIG_SETMASK, previous)
    return thread
