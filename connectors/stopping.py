"""Stopping long-running commands: SIGTERM and SIGINT, however the process was started.

A shell without job control starts background jobs (``nohup twinflow run &`` in a script) with
SIGINT ignored, and Python then never raises KeyboardInterrupt; supervisors (systemd, Kubernetes,
``docker stop``) send SIGTERM. Every long-running command therefore installs its own handler for
both signals (:func:`stop_on_signals`) and treats them alike: the first asks the command to stop
and commit what it has; a second one (an impatient user) asks it to stop now.

A handler only sets flags: it never raises into the code that happens to be running (in a
Bytewax worker that would be a Rust panic). What the command does with the request is its own
business: bridges flush their buffer, flows end their input and commit what they read
(:mod:`twinflow.runner`, the Kafka source in :mod:`connectors.kafka.source`).

Time budget: a command stops within :data:`STOP_WITHIN_S` seconds of the first signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# Seconds from the first SIGTERM/SIGINT until a command has exited, whatever it is doing.
STOP_WITHIN_S = 9.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Seconds a stopping bridge waits for Kafka to take its buffer (the rest is kept in its spill file).
STOP_FLUSH_S = 5.0


class StopRequest:
    """The process-wide stop request.

    ``requested``: stop taking new work (first signal). ``forced``: stop now, skip the drain
    (second signal). ``abort_sources``: the flow's sources abort the dataflow at their next poll
    (set by :mod:`twinflow.flow_stop` when a stop cannot wait for the run to complete).
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.forced = threading.Event()
        self.abort_sources = threading.Event()
        self.aborted = False  # a source ended the run with AbortExecution (not at the end of its input)
        self.signals = 0

    def signal(self, signum: int) -> None:
        """What a handler does: the first signal requests a stop, the next ones force it."""
        self.signals += 1
        if self.requested.is_set():
            self.forced.set()
            log.warning("%s again: stopping now", signal.Signals(signum).name)
        else:
            self.requested.set()
            log.info("%s received: stopping (send it again to stop now)", signal.Signals(signum).name)

    def reset(self) -> None:
        """Forget a stop (tests that run several commands in one process)."""
        for event in (self.requested, self.forced, self.abort_sources):
            event.clear()
        self.aborted = False
        self.signals = 0


STOP = StopRequest()


def stop_on_signals(handler: Callable[[int], None] | None = None) -> threading.Event:
    """Handle SIGTERM and SIGINT in this process (also when SIGINT was ignored at start-up); returns
    the event the first of them sets. ``handler(signum)`` replaces :meth:`StopRequest.signal` (it
    runs in the main thread and should call it).

    A bridge's main loop: ``stop = stop_on_signals(); start(); stop.wait(); flush_and_close()``.
    """
    on_signal = handler or STOP.signal

    def handle(signum: int, _frame: object) -> None:
        on_signal(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handle)
    return STOP.requested


def stop_with_parent() -> None:
    """``preexec_fn`` of a child process: it gets SIGTERM when its parent dies (Linux), so a
    killed ``twinflow run -p N`` or ``twinflow demo`` leaves no orphans behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
