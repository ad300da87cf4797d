"""How a running Bytewax flow stops on SIGTERM/SIGINT: drain, commit, end, never a panic.

Bytewax 0.21 offers three ways out of a running dataflow: the end of its input (every source
partition raises ``StopIteration``), an exception in the main thread while it waits for the
worker threads (multi-worker and cluster runs: ``cluster_main`` checks for signals every
millisecond and stops the workers), or ``AbortExecution`` raised by a source's ``next_batch``.
Any other exception inside a worker, KeyboardInterrupt included, is a Rust panic with a ~160-line
trace (``src/inputs.rs:446``); in a single-worker run the worker *is* the main thread, so
Python's default Ctrl-C handling raised it inside the Kafka source.

So the handler only sets flags (:mod:`connectors.stopping`), and then:

1. the Kafka sources end the input at their next poll, within 50 ms, as if the topics ended
   there (:mod:`connectors.kafka.source`): Bytewax snapshots each partition at its next offset
   and ends the epoch in progress at once, whatever ``flow.snapshot_interval_s`` is;
2. the dataflow completes: every step finishes what it was given (stateful steps keep what they
   hold for a restart instead of flushing it as at the end of the data: ``on_eof`` in
   :mod:`flows.twin` and :mod:`flows.alerts`), snapshots its keys, the sinks write everything,
   Bytewax commits the last epoch and closes every sink (producers flushed, connections closed).
   A restart resumes exactly there. With recovery, a helper *process* then reads the committed
   epoch for the log: Bytewax links its own copy of SQLite, and a second copy in a process where
   Bytewax has the files open would break SQLite's POSIX locks on them (a SIGBUS, or a corrupt
   partition);
3. the command exits 0.

A second signal, or a run that has not completed within :data:`DRAIN_S`, ends it now: the main
thread raises :class:`FlowStopped` (multi-worker runs), or the sources still polled raise
``AbortExecution``; the recovery snapshot is then the last committed one and the sinks are
idempotent, so nothing is lost (a restart replays since that commit). If the flow is stuck (a sink
waiting for a database that does not answer), it exits with status 1 :data:`FORCED_GRACE_S` after
the second signal, or :data:`~connectors.stopping.STOP_WITHIN_S` after the first.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

from connectors.stopping import STOP, STOP_WITHIN_S, stop_on_signals, stop_with_parent

log = logging.getLogger(__name__)

# Longest wait for the run to complete after the first signal (it needs well under a second unless
# a sink waits for its database or Kafka).
DRAIN_S = 6.5
# After a second signal: the time the flow gets to end by itself before the process exits.
FORCED_GRACE_S = 1.0


class FlowStopped(Exception):
    """Ends a multi-worker run from the main thread (Bytewax then stops every worker)."""


def committed_epoch(recovery_dir: Path) -> int | None:
    """The newest epoch Bytewax committed in the recovery partitions of ``recovery_dir``.

    Never call it in a process where Bytewax has these files open (see the module doc).

    >>> import tempfile
    >>> from bytewax.recovery import init_db_dir
    >>> d = Path(tempfile.mkdtemp())
    >>> init_db_dir(d, 1)
    >>> committed_epoch(d) is None
    True
    """
    newest = None
    for part in recovery_dir.glob("part-*.sqlite3"):
        try:
            with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=1.0)) as db:
                row = db.execute("SELECT max(commit_epoch) FROM commits").fetchone()
        except sqlite3.Error:
            continue
        if row and row[0] is not None:
            newest = row[0] if newest is None else max(newest, row[0])
    return newest


class FlowStopper:
    """Installs the signal handlers of a flow process and carries out the stop (see module doc).

    ``multi_worker``: the run uses Bytewax's cluster entry point (several workers or processes),
    whose main thread is free to raise :class:`FlowStopped`. The runner marks the span during which
    Bytewax runs (:meth:`running`) and waits for the stop's report before it exits (:meth:`settle`).
    """

    def __init__(self, recovery_dir: Path | None, *, multi_worker: bool) -> None:
        self.recovery_dir = recovery_dir
        self.multi_worker = multi_worker
        self.finished = threading.Event()  # the stop's outcome is known and logged
        self._completed = threading.Event()  # Bytewax returned
        self._interrupting = False  # the watcher's own SIGTERM to the main thread (it ends the run)
        self._in_flow = False
        self._watcher: threading.Thread | None = None

    def install(self) -> None:
        stop_on_signals(self._on_signal)

    def _on_signal(self, signum: int) -> None:
        if self._interrupting:
            self._interrupting = False
            if self._in_flow:
                self._in_flow = False
                raise FlowStopped
            return
        STOP.signal(signum)
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="flow-stop", daemon=True)
            self._watcher.start()

    def running(self, value: bool) -> None:
        """Mark the span during which Bytewax runs (only then may the handler raise); ``False``
        once Bytewax has returned by itself."""
        self._in_flow = value
        if not value:
            self._completed.set()

    @property
    def clean(self) -> bool:
        """The run completed by itself (not ended by the stop): everything read is written (and
        committed)."""
        return self._completed.is_set() and not STOP.aborted

    def settle(self) -> None:
        """After the run: wait until the stop in progress, if any, has logged how it ended."""
        if self._watcher is not None:
            self.finished.wait(STOP_WITHIN_S)

    # ------------------------------------------------------------------ the stop, in its own thread
    def _watch(self) -> None:
        t0 = time.monotonic()
        ended = False  # the stop no longer waits for the run to complete
        forced_at: float | None = None  # when a signal came again
        while not self._completed.wait(0.05):
            now = time.monotonic()
            if STOP.forced.is_set() and forced_at is None:
                forced_at = now
            if not ended and (forced_at is not None or now > t0 + DRAIN_S):
                ended = True
                self._end_run("signal again" if forced_at is not None else f"not completed within {DRAIN_S} s")
            if now > t0 + STOP_WITHIN_S or (forced_at is not None and now > forced_at + FORCED_GRACE_S):
                why = (
                    "stopped now (signal again) before the flow completed"
                    if forced_at is not None
                    else f"flow did not stop within {STOP_WITHIN_S:.0f} s (a sink waiting for its database or Kafka?)"
                )
                msg = f"{why}; exiting: a restart resumes from the last recovery snapshot"
                log.error(msg)
                print(msg, file=sys.stderr, flush=True)
                os._exit(1)
        self._report()  # a one-worker run may complete by itself after its end was asked for
        self.finished.set()  # the process exits as the run has ended (this thread is a daemon)

    def _end_run(self, why: str) -> None:
        """Stop waiting for the run to complete: end it (see the module doc)."""
        log.warning("stop: ending the flow before it has written everything it read (%s)", why)
        if self.multi_worker:
            self._interrupting = True
            _thread.interrupt_main(signal.SIGTERM)  # runs _on_signal in the main thread: FlowStopped
        else:
            STOP.abort_sources.set()  # the sources still polled end the run

    def _report(self) -> None:
        if not self.clean:
            where = "reads the topics again" if self.recovery_dir is None else "resumes from the last snapshot"
            log.warning("stop: the flow ended before it wrote everything it read; a restart %s", where)
            return
        if self.recovery_dir is None:
            log.info("stop: everything read was written")
            return
        try:
            epoch = subprocess.run(
                [sys.executable, "-m", "twinflow.flow_stop", str(self.recovery_dir)],
                capture_output=True,
                text=True,
                timeout=5.0,
                preexec_fn=stop_with_parent,
                start_new_session=True,  # a second Ctrl-C in the terminal is for the flow, not for it
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            epoch = ""
        log.info("stop: epoch %s committed with everything read", epoch or "?")


def _print_commit(recovery_dir: Path) -> None:
    """The helper process: the newest committed epoch ("-" for none)."""
    epoch = committed_epoch(recovery_dir)
    print("-" if epoch is None else epoch, flush=True)


if __name__ == "__main__":
    _print_commit(Path(sys.argv[1]))
