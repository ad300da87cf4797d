"""Run a Bytewax dataflow: one process, or a local cluster of processes, with recovery.

Bytewax 0.21 scales across processes with ``-i/-a`` (process id, addresses of all
processes); threads do not scale under the GIL. ``run_local_cluster`` starts N
processes of the same command on this machine, each with its id and the shared
address list, and stops them together. A Ctrl-C or SIGTERM ends the flow cleanly
(exit 0): progress is kept in the recovery snapshots, and the sinks are idempotent.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow

log = logging.getLogger(__name__)


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def ensure_recovery_dir(path: Path, partitions: int = 1) -> Path:
    """Create Bytewax's recovery partitions once (they persist across runs)."""
    from bytewax.recovery import init_db_dir

    if not any(path.glob("part-*.sqlite3")):
        path.mkdir(parents=True, exist_ok=True)
        init_db_dir(path, partitions)
    return path


def _interrupted(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def run_in_process(
    build: Callable[[], Dataflow],
    *,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    recovery_dir: Path | None = None,
    snapshot_interval_s: float = 5.0,
    gc_gen0_threshold: int = 0,
) -> int:
    """Run the flow here until it ends (or is interrupted); returns an exit code.

    ``gc_gen0_threshold`` > 0 tunes the garbage collector for the flow (see :func:`tune_gc`)."""
    from bytewax._bytewax import cli_main
    from bytewax.recovery import RecoveryConfig

    # SIGTERM behaves like Ctrl-C, so container stops are clean too.
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    recovery = RecoveryConfig(str(recovery_dir), timedelta(0)) if recovery_dir else None
    try:
        flow = build()
        if gc_gen0_threshold:
            tune_gc(gc_gen0_threshold)
        cli_main(
            flow,
            workers_per_process=workers,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=timedelta(seconds=snapshot_interval_s),
            recovery_config=recovery,
        )
    except BaseException as exc:
        if _interrupted(exc):
            log.info("flow stopped by signal; state is in the last recovery snapshot")
            return 0
        raise
    return 0


def tune_gc(gen0_threshold: int) -> None:
    """Freeze what start-up allocated (modules, settings, the dataflow: never garbage, never scanned
    again) and collect the youngest generation every ``gen0_threshold`` allocations instead of 700.

    A flow allocates a few objects per reading and keeps large per-twin state; with Python's default
    the collector runs every few dozen readings and its older generations rescan that state."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def run_local_cluster(child_args: list[str], processes: int) -> int:
    """Start ``processes`` copies of ``child_args`` + ``-i k -a addrs``; wait for all."""
    addrs = ";".join(f"127.0.0.1:{p}" for p in free_ports(processes))
    children = [
        subprocess.Popen([*child_args, "-i", str(i), "-a", addrs], start_new_session=True) for i in range(processes)
    ]

    def forward(signum, _frame):
        for c in children:
            if c.poll() is None:
                os.killpg(c.pid, signal.SIGINT)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = [c.wait() for c in children]
    failed = [i for i, code in enumerate(codes) if code != 0]
    if failed:
        print(f"processes {failed} exited with {[codes[i] for i in failed]}", file=sys.stderr)
        return 1
    return 0
