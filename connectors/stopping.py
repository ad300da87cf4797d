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

The ``twinflow`` command records a stop from the moment its own code starts (``twinflow.cli``), before
its imports; a start-up step that waits for a service raises :class:`Stopped` when a stop comes
(:func:`wait_unless_stopped`), and the command exits 0.

Time budget: a command stops within :data:`STOP_WITHIN_S` seconds of the first signal.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

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
        self.first: int | None = None  # the first signal's number

    def signal(self, signum: int) -> None:
        """What a handler does: the first signal requests a stop, the next ones force it."""
        self.signals += 1
        self.first = self.first or signum
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
        self.first = None


STOP = StopRequest()


class Stopped(Exception):
    """A stop came while a command was starting (it waited for a service): the command ends, exit 0."""

    def __init__(self, during: str) -> None:
        super().__init__(f"stopped by signal while {during}")


def check_stop(during: str) -> None:
    """Raise :class:`Stopped` when a stop has been requested (between the steps of a command's start-up)."""
    if STOP.requested.is_set():
        raise Stopped(during)


def wait_unless_stopped(
    attempt: Callable[[float], T | None], timeout: float, during: str, step: float = 1.0
) -> T | None:
    """Call ``attempt(seconds)`` (a wait of at most that long: None when it found nothing yet) until it
    returns something or ``timeout`` seconds have passed (then None); raises :class:`Stopped` as soon
    as a stop is requested, so a start-up that waits for a service that does not answer stops in time.

    >>> wait_unless_stopped(lambda s: "up", 5, "waiting")
    'up'
    """
    deadline = time.monotonic() + timeout
    while not STOP.requested.is_set():
        left = deadline - time.monotonic()
        found = attempt(max(0.0, min(step, left)))
        if found is not None or left <= step:
            return found
    raise Stopped(during)


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
        previous = signal.signal(sig, handle)
        _ORIGINAL.setdefault(sig, previous)
    return STOP.requested


# The handlers the process had before the first stop_on_signals (Python's, or SIG_IGN in a script's job).
_ORIGINAL: dict[int, object] = {}


def default_signals() -> None:
    """Hand SIGTERM and SIGINT back to the handlers the process started with (a command that ends by
    itself: a signal ends it at once). A stop recorded so far ends the process now, by its signal, as
    it would have without :func:`stop_on_signals` (minus a KeyboardInterrupt traceback)."""
    for sig, previous in _ORIGINAL.items():
        signal.signal(sig, previous)  # type: ignore[arg-type]
    if STOP.first is not None:
        signal.signal(STOP.first, signal.SIG_DFL)
        signal.raise_signal(STOP.first)


def stop_with_parent() -> None:
    """``preexec_fn`` of a child process: it gets SIGTERM when its parent dies (Linux), so a
    killed ``twinflow run -p N`` or ``twinflow demo`` leaves no orphans behind."""
    import ctypes  # here: the module is imported before every command's imports, and should be quick

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
