"""How a running Bytewax flow stops on SIGTERM/SIGINT: drain, commit, end, never a panic.

Bytewax 0.21 offers two ways out of a running dataflow: an exception in the main thread while it
waits for the worker threads (multi-worker and cluster runs: ``cluster_main`` checks for signals
every millisecond and stops the workers), or ``AbortExecution`` raised by a source's
``next_batch``. Any other exception inside a worker, KeyboardInterrupt included, is a Rust
panic with a ~160-line trace (``src/inputs.rs:446``); in a single-worker run the worker *is* the
main thread, so Python's default Ctrl-C handling raised it inside the Kafka source.

So the handler only sets flags (:mod:`connectors.stopping`), and then:

1. the Kafka sources stop reading (:mod:`connectors.kafka.source`);
2. with recovery, the epoch in progress completes: every step snapshots, the sinks have written
   everything read, and Bytewax commits it. A helper *process* watches the recovery partitions
   for that commit (at most ``flow.snapshot_interval_s``, bounded by ``DRAIN_S``): Bytewax links
   its own copy of SQLite, and a second copy in the same process would break SQLite's POSIX
   locks on the files Bytewax has open (a SIGBUS, or a corrupt partition). Without recovery
   there is nothing to commit and a short grace lets the sinks write what is in flight (a restart
   without recovery reads the topics from the beginning anyway);
3. the run ends: single worker, the sources raise ``AbortExecution``; otherwise the main thread
   raises :class:`FlowStopped`. Bytewax drops the dataflow, which closes every sink (producers
   flushed, connections closed), and the command exits 0.

A second signal skips the drain. If the flow is stuck (a sink retrying against a database that
is down), it exits with status 1 after :data:`~connectors.stopping.STOP_WITHIN_S` seconds: the
recovery snapshot is the last committed one and the sinks are idempotent, so nothing is lost.
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

# Longest wait for the epoch in progress to be committed; the default epoch is 5 s.
DRAIN_S = 6.5
# Time for the sinks to write what the last steps emitted once no input flows (no recovery,
# and after the final commit).
SINK_GRACE_S = 0.3


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
    whose main thread is free to raise :class:`FlowStopped`.
    """

    def __init__(self, recovery_dir: Path | None, *, multi_worker: bool) -> None:
        self.recovery_dir = recovery_dir
        self.multi_worker = multi_worker
        self.finished = threading.Event()
        self.clean = True
        self._in_flow = False
        self._watcher: threading.Thread | None = None

    def install(self) -> None:
        stop_on_signals(self._on_signal)

    def _on_signal(self, signum: int) -> None:
        if self.finished.is_set():
            if self.multi_worker and self._in_flow:
                self._in_flow = False
                raise FlowStopped
            return
        STOP.signal(signum)
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="flow-stop", daemon=True)
            self._watcher.start()

    def running(self, value: bool) -> None:
        """Mark the span during which Bytewax runs (only then may the handler raise)."""
        self._in_flow = value

    # ------------------------------------------------------------------ the stop, in its own thread
    def _watch(self) -> None:
        t0 = time.monotonic()
        self._drain(t0)
        self.finished.set()
        if self.multi_worker:
            _thread.interrupt_main(signal.SIGTERM)  # runs _on_signal in the main thread: FlowStopped
        else:
            STOP.abort_sources.set()
        time.sleep(max(0.0, t0 + STOP_WITHIN_S - time.monotonic()))
        msg = (
            f"flow did not stop within {STOP_WITHIN_S:.0f} s (a sink waiting for its database or Kafka?); "
            "exiting: a restart resumes from the last recovery snapshot"
        )
        log.error(msg)
        print(msg, file=sys.stderr, flush=True)
        os._exit(1)

    def _drain(self, t0: float) -> None:
        if self.recovery_dir is None:
            STOP.forced.wait(SINK_GRACE_S)
            return
        watcher = subprocess.Popen(
            [sys.executable, "-m", "twinflow.flow_stop", str(self.recovery_dir), str(DRAIN_S)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # a second Ctrl-C in the terminal is for the flow, not for it
            preexec_fn=stop_with_parent,
        )
        assert watcher.stdout is not None
        try:
            before: int | None = None
            for i, line in enumerate(watcher.stdout):
                epoch = None if line.strip() == "-" else int(line)
                if i == 0:
                    before = epoch
                elif epoch is not None and (before is None or epoch > before):
                    log.info("stop: epoch %d committed with everything read", epoch)
                    STOP.forced.wait(SINK_GRACE_S)
                    return
                if STOP.forced.is_set() or time.monotonic() - t0 > DRAIN_S:
                    break
        finally:
            watcher.kill()
            watcher.wait()
        self.clean = False
        log.warning("stop: the epoch in progress was not committed; a restart resumes from the last snapshot")


def _print_commits(recovery_dir: Path, seconds: float) -> None:
    """The watcher process: the newest committed epoch ("-" for none), ten times a second."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        epoch = committed_epoch(recovery_dir)
        print("-" if epoch is None else epoch, flush=True)
        time.sleep(0.1)


if __name__ == "__main__":
    _print_commits(Path(sys.argv[1]), float(sys.argv[2]))
