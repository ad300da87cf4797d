"""Run a Bytewax dataflow: one process, or a local cluster of processes, with recovery.

Bytewax 0.21 scales across processes with ``-i/-a`` (process id, addresses of all
processes); threads do not scale under the GIL. ``run_local_cluster`` starts N
processes of the same command on this machine, each with its id and the shared
address list, and stops them together. SIGTERM or SIGINT ends the flow cleanly (exit 0) however
it was started: everything read is written and committed, the sinks closed (:mod:`twinflow.flow_stop`).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow

from connectors.kafka.source import StoppableKafkaSource

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


def _part_count(part: Path) -> int | None:
    """The size of the partition set a recovery partition belongs to (read-only look)."""
    try:
        with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT part_count FROM parts LIMIT 1").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else None


def ensure_recovery_dir(path: Path, *, process_id: int = 0, processes: int = 1) -> Path:
    """Create this process' Bytewax recovery partition when it is missing; return ``path``.

    Bytewax needs the cluster as a whole to hold every partition; a process need not hold any.
    Process ``process_id`` of a ``processes``-process cluster creates ``part-<id>`` of a set of
    ``processes`` partitions when the folder holds no partition yet, or holds others of the same set.
    So on N machines each keeps its own partition, and N processes sharing one folder complete the
    set between them. An existing set is never changed (a cluster may be rescaled later).

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = ensure_recovery_dir(d, process_id=1, processes=2)
    >>> sorted(p.name for p in d.glob("part-*"))
    ['part-1.sqlite3']
    """
    from bytewax.recovery import init_db_dir

    if not 0 <= process_id < processes:
        raise ValueError(f"process id {process_id} is outside a cluster of {processes} processes")
    path.mkdir(parents=True, exist_ok=True)
    own = path / f"part-{process_id}.sqlite3"
    if own.exists():
        return path
    if {_part_count(p) for p in path.glob("part-*.sqlite3")} - {processes}:
        return path  # a set made by a cluster of another size: Bytewax resumes from it as it is
    with tempfile.TemporaryDirectory(dir=path, prefix=".init-") as tmp:
        init_db_dir(Path(tmp), processes)
        os.replace(Path(tmp) / own.name, own)  # atomic: others never see a half-made partition
    return path


def _inputs(step: object) -> dict[str, list[str]]:
    """Step id → topics of every Kafka input of a flow (or of a step's substeps)."""
    found = {}
    for sub in getattr(step, "substeps", []):
        source = getattr(sub, "source", None)
        if isinstance(source, StoppableKafkaSource):
            found[sub.step_id] = source.topics
        found.update(_inputs(sub))
    return found


def forget_retired_inputs(recovery_dir: Path, flow: Dataflow) -> list[str]:
    """Forget the recovery positions of Kafka topics the flow no longer reads; returns those topics.

    Bytewax refuses to resume a Kafka input whose snapshot holds a partition of a topic the input
    no longer lists ("… is not in this worker's routing map"): a renamed input topic, or
    ``twin.alerts``, which the alerts flow read before it read ``twin.desync`` (docs/operations.md,
    Upgrading). Only those partitions' positions are dropped; the rest of the state resumes.
    """
    inputs = _inputs(flow)
    retired: set[str] = set()
    for part in sorted(recovery_dir.glob("part-*.sqlite3")):
        with closing(sqlite3.connect(part, timeout=30)) as db:
            for step_id, topics in inputs.items():
                keys = db.execute("SELECT DISTINCT state_key FROM snaps WHERE step_id = ?", (step_id,)).fetchall()
                topic_of = {key: key.split("-", 1)[-1] for (key,) in keys}  # state key: <partition>-<topic>
                stale = [key for key, topic in topic_of.items() if topic not in topics]
                db.executemany("DELETE FROM snaps WHERE step_id = ? AND state_key = ?", [(step_id, k) for k in stale])
                retired.update(topic_of[key] for key in stale)
            db.commit()
    for topic in sorted(retired):
        log.warning("%s is no longer an input of this flow: its recovery positions are forgotten", topic)
    return sorted(retired)


def run_in_process(
    build: Callable[[], Dataflow],
    *,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    recovery_dir: Path | None = None,
    snapshot_interval_s: float = 30.0,
    gc_gen0_threshold: int = 0,
    switch_interval_s: float | None = None,
    epoch_without_recovery_s: float | None = None,
    metrics_port: int | None = None,
) -> int:
    """Run the flow here until it ends or is stopped; returns an exit code.

    SIGTERM and SIGINT stop it cleanly, also when SIGINT is ignored (a background job of a
    script): the last epoch is committed, the sinks are closed, the exit code is 0
    (:mod:`twinflow.flow_stop`).

    The Bytewax epoch is ``snapshot_interval_s``; without recovery it is ``epoch_without_recovery_s``
    when that is longer (see :func:`epoch_interval`).

    ``gc_gen0_threshold`` > 0 tunes the garbage collector for the flow (see :func:`tune_gc`);
    ``switch_interval_s``: how long a thread may hold the GIL while another waits
    (:func:`sys.setswitchinterval`; None: Python's 5 ms).
    ``metrics_port``: Bytewax serves the flow's Prometheus metrics there (``/metrics``, all interfaces)."""
    from bytewax._bytewax import cli_main
    from bytewax.recovery import RecoveryConfig

    from connectors.cluster import Worker, set_this_worker
    from connectors.kafka.source import MissingTopics, missing_topics
    from connectors.stopping import STOP
    from twinflow.flow_stop import FlowStopped, FlowStopper

    # One worker per process: its index is the process id (connectors.cluster); with more, unknown.
    set_this_worker(Worker(process_id or 0, len(addresses or [None])) if workers == 1 else None)

    # Bytewax runs one worker in this thread, more in threads of their own (see flow_stop).
    stopper = FlowStopper(recovery_dir, multi_worker=workers > 1 or addresses is not None)
    stopper.install()
    recovery = RecoveryConfig(str(recovery_dir), timedelta(0)) if recovery_dir else None
    if metrics_port is not None:  # Bytewax's own web server, started by cli_main
        # It also writes dataflow.json to BYTEWAX_DATAFLOW_API_CACHE_PATH (default: the working
        # directory, maybe read-only or a checkout): a directory of this run's, removed at exit.
        api_cache = tempfile.TemporaryDirectory(prefix="twinflow-flow-api-")
        os.environ["BYTEWAX_DATAFLOW_API_ENABLED"] = "1"
        os.environ["BYTEWAX_DATAFLOW_API_PORT"] = str(metrics_port)
        os.environ["BYTEWAX_DATAFLOW_API_CACHE_PATH"] = api_cache.name
    try:
        flow = build()
        if recovery_dir is not None:
            forget_retired_inputs(recovery_dir, flow)
        if gc_gen0_threshold:
            tune_gc(gc_gen0_threshold)
        if switch_interval_s is not None:
            sys.setswitchinterval(switch_interval_s)
            log.info("GIL switch interval %g ms", sys.getswitchinterval() * 1000)
        missing = missing_topics(kafka_sources(flow))
        if missing:
            raise MissingTopics(
                f"Kafka topic(s) {', '.join(missing)} do not exist: create the topics with `twinflow kafka init` "
                "(the same settings as this flow), or point the topics.* settings at existing ones"
            )
        stopper.running(True)
        if not STOP.requested.is_set():
            cli_main(
                flow,
                workers_per_process=workers,
                process_id=process_id,
                addresses=addresses,
                epoch_interval=epoch_interval(recovery is not None, snapshot_interval_s, epoch_without_recovery_s),
                recovery_config=recovery,
            )
        stopper.running(False)
        stopper.settle()
    except FlowStopped:
        pass
    if STOP.requested.is_set():
        where = "in the last recovery snapshot" if recovery else "not kept (no recovery)"
        log.info("flow stopped by signal%s; state is %s", "" if stopper.clean else " (not drained)", where)
    return 0


def epoch_interval(recovery: bool, snapshot_interval_s: float, without_recovery_s: float | None) -> timedelta:
    """Bytewax's epoch: every stateful step snapshots each key it touched at the end of every epoch,
    with or without recovery. With recovery that is the snapshot interval; without, the snapshots
    are discarded, so a longer epoch only saves the per-epoch stall (outputs are written eagerly,
    timers do not depend on epochs).

    >>> epoch_interval(True, 5, 600).total_seconds(), epoch_interval(False, 5, 600).total_seconds()
    (5.0, 600.0)
    >>> epoch_interval(False, 5, None).total_seconds()
    5.0
    """
    if recovery or without_recovery_s is None:
        return timedelta(seconds=snapshot_interval_s)
    return timedelta(seconds=max(snapshot_interval_s, without_recovery_s))


def tune_gc(gen0_threshold: int) -> None:
    """Freeze what start-up allocated (modules, settings, the dataflow: never garbage, never scanned
    again) and collect the youngest generation every ``gen0_threshold`` allocations instead of 700.

    A flow allocates a few objects per reading and keeps large per-twin state; with Python's default
    the collector runs every few dozen readings and its older generations rescan that state."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def kafka_sources(flow: object) -> list[StoppableKafkaSource]:
    """The Kafka sources of a dataflow's input steps (nested steps included)."""
    found: list[StoppableKafkaSource] = []
    for step in getattr(flow, "substeps", ()):
        source = getattr(step, "source", None)
        if isinstance(source, StoppableKafkaSource):
            found.append(source)
        found += kafka_sources(step)
    return found


def run_local_cluster(child_args: list[str], processes: int) -> int:
    """Start ``processes`` copies of ``child_args`` + ``-i k -a addrs``; wait for all.

    SIGTERM/SIGINT to this process is passed on to every child as SIGTERM (a second one too, to
    stop them now); when one child fails, the others are stopped. Children still running
    :data:`~connectors.stopping.STOP_WITHIN_S` + 1 s after the stop are killed.
    """
    from connectors.stopping import STOP, STOP_WITHIN_S, stop_on_signals, stop_with_parent

    stop_on_signals()
    if STOP.requested.is_set():
        return 0  # stopped before any process started
    addrs = ";".join(f"127.0.0.1:{p}" for p in free_ports(processes))
    children = [
        subprocess.Popen([*child_args, "-i", str(i), "-a", addrs], start_new_session=True, preexec_fn=stop_with_parent)
        for i in range(processes)
    ]

    def signal_all(sig: int) -> None:
        for c in children:
            if c.poll() is None:
                os.killpg(c.pid, sig)

    signalled = 0
    deadline = None
    first_failure: int | None = None  # exit code of the first process that failed by itself
    while any(c.poll() is None for c in children):
        failed = [c.returncode for c in children if c.returncode not in (None, 0)]
        if failed and first_failure is None and not signalled:
            first_failure = failed[0]
        if signalled < STOP.signals or (failed and not signalled):
            signal_all(signal.SIGTERM)
            signalled = max(1, STOP.signals)
            deadline = deadline or time.monotonic() + STOP_WITHIN_S + 1
        if deadline is not None and time.monotonic() > deadline:
            print("cluster processes did not stop in time: killed", file=sys.stderr)
            signal_all(signal.SIGKILL)
        time.sleep(0.1)
    codes = [c.wait() for c in children]
    if first_failure is None and not signalled:
        first_failure = next((code for code in codes if code != 0), None)
    # A child ended by the SIGTERM passed on to it (-15, not 0) got it during its interpreter's start-up,
    # before it could handle it: it had read nothing, so that is a clean stop too.
    stopped_early = -signal.SIGTERM
    if first_failure is not None or (signalled and any(code not in (0, stopped_early) for code in codes)):
        print(f"cluster processes exited with {codes}", file=sys.stderr)
        return 2 if first_failure == 2 else 1  # 2: a configuration mistake, printed by the process
    return 0
