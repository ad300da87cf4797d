"""The processes a benchmark starts and measures: flow command lines, CPU time and RSS; stopping
them, and the benchmark itself, on Ctrl-C or SIGTERM.

>>> flow_command("twin", tail=False)[-4:]
['run', 'twin', '--no-tail', '--no-recovery']

A benchmark runs on the shared development stack: its topics, rows, databases and temporary folders
are its own and go again in ``finally`` blocks, also when it is interrupted. So its ``main`` runs in
:func:`interruptible` (SIGTERM, from ``timeout`` or a supervisor, and SIGINT, also where a background
job ignores it, raise ``KeyboardInterrupt``, which runs those blocks; then it exits with a message,
records nothing, shows no traceback), and every child process it starts is stopped in a ``finally``
with :func:`stop` (a child killed instead, as ``subprocess.run`` does 0.25 s after the interrupt,
never runs its own clean-up).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import psutil

from connectors.stopping import STOP_SIGNALS, STOP_WITHIN_S

# A second signal within this many seconds of the first is the same request (``timeout`` signals the
# command and then its whole process group, the command again): it must not break off the clean-up.
SAME_STOP_S = 1.0
T = TypeVar("T")


def checkout_python(checkout: Path) -> str:
    """The interpreter to run another checkout's code with: its own ``.venv`` when it has one (made
    by ``make setup`` there), else this one (a ``git archive`` of a recent commit needs no venv of its
    own; run it with ``PYTHONPATH`` set to the checkout)."""
    own = checkout / ".venv" / "bin" / "python"
    return str(own) if own.exists() else sys.executable


def flow_command(flow: str, *, tail: bool, checkout: Path | None = None, recovery: bool = False) -> list[str]:
    """``twinflow run FLOW`` without recovery (``recovery``: with it, as deployed; its directory is
    ``flow.recovery_dir``), tailing the topics or stopping at their end.

    ``checkout``: another checkout of the project (a baseline); one from before the CLI became a
    package (``twinflow/cli.py``) is started as ``twinflow.cli``.
    """
    old_layout = checkout is not None and (checkout / "twinflow" / "cli.py").exists()
    cli = "twinflow.cli" if old_layout else "twinflow.cli.main"
    return [
        sys.executable,
        "-m",
        cli,
        "run",
        flow,
        "--tail" if tail else "--no-tail",
        *([] if recovery else ["--no-recovery"]),
    ]


def stop(*procs: subprocess.Popen, within_s: float = STOP_WITHIN_S + 1) -> None:
    """SIGTERM to each process still running (a flow stops cleanly within ``STOP_WITHIN_S``; one that a
    Ctrl-C reached already takes this second signal as "stop now"), then wait for all of them; one
    still running after ``within_s`` is killed. For ``finally`` blocks (it is a :func:`cleaning_up`): a
    process that ended is left as it is."""
    with cleaning_up():
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        deadline = time.monotonic() + within_s
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class _Interrupts:
    """What :func:`interruptible` has seen: when the last stop signal came, one held back by a
    :func:`cleaning_up` block, and how deep such blocks are nested."""

    last: float | None = None
    held = False
    cleaning = 0


def _on_signal(_signum: int, _frame: object) -> None:
    now = time.monotonic()
    if _Interrupts.last is not None and now - _Interrupts.last < SAME_STOP_S:
        return  # the same request (``timeout`` sends it to the command and then to its process group)
    seen, _Interrupts.last = _Interrupts.last is not None, now
    if _Interrupts.cleaning and not seen:
        _Interrupts.held = True  # raised when the clean-up is done
        return
    raise KeyboardInterrupt  # (in a clean-up after an earlier signal: the user insists, it is broken off)


@contextlib.contextmanager
def cleaning_up() -> Iterator[None]:
    """A clean-up (deleting a run's rows, topics, folders; stopping its children) that the first
    Ctrl-C or SIGTERM does not break off: the interrupt is raised when the block is done. A signal
    after an earlier one breaks it off (the user insists)."""
    _Interrupts.cleaning += 1
    try:
        yield
    finally:
        _Interrupts.cleaning -= 1
    if _Interrupts.held and not _Interrupts.cleaning:
        _Interrupts.held = False
        raise KeyboardInterrupt


def run_flow_here(flow: object) -> None:
    """Run a Bytewax dataflow in this process (``bytewax.testing.run_main``) to the end of its input;
    Ctrl-C or SIGTERM meanwhile stops it as ``twinflow run`` does (:mod:`connectors.stopping`: the
    sources end their input, nothing raises inside an operator, which Bytewax would turn into a panic),
    then raises ``KeyboardInterrupt`` here for the run's clean-up (:func:`interruptible`)."""
    from bytewax.testing import run_main

    from connectors.stopping import STOP, stop_on_signals

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    STOP.reset()
    stop_on_signals()
    try:
        run_main(flow)  # type: ignore[arg-type]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if STOP.requested.is_set():
        STOP.reset()
        _Interrupts.last = time.monotonic()
        raise KeyboardInterrupt


@contextlib.contextmanager
def exiting_cleanly(cm: contextlib.AbstractContextManager[T]) -> Iterator[T]:
    """``with exiting_cleanly(PrivateStack()) as stack:`` — ``cm``'s exit (stopping a private stack,
    removing its folder) runs as a :func:`cleaning_up` block: an interrupt that comes meanwhile waits."""
    value = cm.__enter__()
    try:
        yield value
    except BaseException as exc:
        with cleaning_up():
            if not cm.__exit__(type(exc), exc, exc.__traceback__):
                raise
    else:
        with cleaning_up():
            cm.__exit__(None, None, None)


@contextlib.contextmanager
def interruptible(cleaned: str = "the run's topics, rows and processes are removed") -> Iterator[None]:
    """Run a benchmark's ``main`` so that Ctrl-C and SIGTERM stop it cleanly: the signal raises
    ``KeyboardInterrupt`` (once: a repeat within :data:`SAME_STOP_S` is the same request; one during
    a :func:`cleaning_up` block waits for its end), the ``finally`` blocks remove what the run made,
    and the command exits with status 1 and ``interrupted: nothing recorded (<cleaned>)``, without a
    traceback."""
    previous = {sig: signal.signal(sig, _on_signal) for sig in STOP_SIGNALS}
    try:
        yield
    except KeyboardInterrupt:
        sys.exit(f"interrupted: nothing recorded ({cleaned})")
    except Exception:
        if _Interrupts.last is None:
            raise
        # what the interrupt became on its way out (a flow run in this process, Bytewax's run_main,
        # raises its own error for a KeyboardInterrupt in an operator)
        sys.exit(f"interrupted: nothing recorded ({cleaned})")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def usage(pid: int, *, children: bool = True) -> tuple[float, int]:
    """CPU seconds (user + system) and RSS bytes of a process and, by default, its children;
    processes that are gone count as nothing."""
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)] if children else [p]
    except psutil.Error:
        return 0.0, 0
    cpu, rss = 0.0, 0
    for q in procs:
        try:
            t = q.cpu_times()
            cpu += t.user + t.system
            rss += q.memory_info().rss
        except psutil.Error:
            pass
    return cpu, rss


def local_processes() -> dict[str, psutil.Process]:
    """The main process of each service of the local stack that runs here (``postgres``, ``kafka``, …)."""
    from twinflow.settings import load_settings
    from twinflow.stack import services

    found = {}
    for service in services(load_settings()):
        if (pid := service.pid()) is not None:
            with contextlib.suppress(psutil.Error):
                found[service.name] = psutil.Process(pid)
    return found


def server_cpu() -> tuple[float, float]:
    """CPU seconds of the local stack's PostgreSQL (postmaster, its live backends and the ended ones
    it reaped) and of its Kafka broker so far; 0 for a service that is not running here."""
    spent = {"postgres": 0.0, "kafka": 0.0}
    running = local_processes()
    for name in spent:
        if (proc := running.get(name)) is None:
            continue
        try:
            t = proc.cpu_times()
            spent[name] += t.user + t.system + t.children_user + t.children_system
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    spent[name] += c.user + c.system
        except psutil.Error:
            continue
    return spent["postgres"], spent["kafka"]


class WriterCpu:
    """CPU seconds of the local PostgreSQL's client backends per ``application_name`` while the ``with``
    block runs (the flows' sinks name theirs ``twinflow TelemetrySink``, …: which writer costs the
    server what), and of its autovacuum workers (``autovacuum``, with the tables they vacuumed: the
    server vacuums a table after inserts of a fifth of its rows, so a run's inserts bring vacuums on
    its clock). Sampled every ``interval_s`` from ``pg_stat_activity`` and ``/proc``: a backend that
    ends counts up to its last sample, one that started meanwhile from zero::

        with WriterCpu(load_settings().postgres.conninfo()) as cpu:
            run_flow(...)
        cpu.by_name()  # {'twinflow TwinSink': 1.31, 'twinflow TelemetrySink': 0.8, 'autovacuum': 0.2, ...}
    """

    QUERY = (
        "SELECT pid, application_name FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    # (pg_stat_activity hides the autovacuum workers from a role without pg_read_all_stats: they are
    # found among the local server's processes, their tables in pg_stat_user_tables.)
    VACUUMED = (
        "SELECT relname FROM pg_stat_user_tables WHERE greatest(last_autovacuum, last_autoanalyze) >= %s"
        " ORDER BY greatest(last_autovacuum, last_autoanalyze)"
    )

    def __init__(self, conninfo: str, interval_s: float = 0.2) -> None:
        self.conninfo, self.interval_s = conninfo, interval_s
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self.vacuumed: dict[str, None] = {}  # tables the autovacuum workers worked on, in order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer cpu", daemon=True)

    def __enter__(self) -> WriterCpu:
        import psycopg

        self._db = psycopg.connect(self.conninfo, autocommit=True)
        self._since = self._db.execute("SELECT now()").fetchone()[0]
        self._server = local_processes().get("postgres")
        self._sample(baseline=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        if "autovacuum" in self.by_name():
            self.vacuumed = dict.fromkeys(name for (name,) in self._db.execute(self.VACUUMED, (self._since,)))
        self._db.close()

    def by_name(self) -> dict[str, float]:
        """CPU seconds per application name, the most first."""
        spent: dict[str, float] = {}
        for pid, (name, cpu) in self._last.items():
            spent[name] = spent.get(name, 0.0) + cpu - self._first.get(pid, 0.0)
        return dict(sorted(spent.items(), key=lambda kv: -kv[1]))

    def split(self, total_s: float, readings: int) -> str:
        """The CPU per 1,000 readings of each named writer, the rest of ``total_s`` (PostgreSQL's in
        all) as ``other``: the server's background processes and unnamed connections.

        >>> w = WriterCpu("")
        >>> w._last = {1: ("twinflow TwinSink", 1.5), 2: ("twinflow TelemetrySink", 0.9), 3: ("twinflow", 0.1)}
        >>> w._first = {1: 0.2}
        >>> w.split(2.5, 50_000)
        'TwinSink 26.0, TelemetrySink 18.0, other 6.0'
        >>> w._last[4], w.vacuumed = ("autovacuum", 0.2), {"telemetry": None, "forecasts": None}
        >>> w.split(2.5, 50_000)
        'TwinSink 26.0, TelemetrySink 18.0, autovacuum 4.0 (telemetry, forecasts), other 2.0'
        """
        spent = self.by_name()
        writers = {name[9:]: cpu for name, cpu in spent.items() if name.startswith("twinflow ") and cpu > 0}
        if not writers:
            return ""
        per_1k = 1e6 / readings
        parts = [f"{name} {cpu * per_1k:.1f}" for name, cpu in writers.items()]
        vacuum = spent.get("autovacuum", 0.0)
        if vacuum > 0:
            parts.append(f"autovacuum {vacuum * per_1k:.1f} ({', '.join(self.vacuumed) or '?'})")
        return ", ".join([*parts, f"other {(total_s - sum(writers.values()) - vacuum) * per_1k:.1f}"])

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self, baseline: bool = False) -> None:
        named = list(self._db.execute(self.QUERY).fetchall())
        named += [(pid, "autovacuum") for pid in _autovacuum_workers(self._server)]
        for pid, name in named:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                cpu = t.user + t.system
                if baseline:
                    self._first[pid] = cpu
                self._last[pid] = (name or "", cpu)


def _autovacuum_workers(server: psutil.Process | None) -> list[int]:
    """The pids of ``server``'s autovacuum workers (``postgres: autovacuum worker …``)."""
    if server is None:
        return []
    pids = []
    with contextlib.suppress(psutil.Error):
        for child in server.children():
            with contextlib.suppress(psutil.Error):
                if "autovacuum worker" in " ".join(child.cmdline()):
                    pids.append(child.pid)
    return pids


def machine_cpu() -> tuple[float, float]:
    """CPU seconds the machine's cores were busy and in all so far (every core; idle and I/O wait
    count as not busy): the busy share over an interval is the ratio of the differences."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t)
    return total - idle, total


def wait_idle(
    procs: Sequence[subprocess.Popen],
    timeout_s: float,
    busy_share: float = 0.1,
    window_s: float = 1.0,
    check: Callable[[], None] | None = None,
) -> bool:
    """Wait until every process (children included) used < ``busy_share`` of a core over ``window_s``:
    a tailing flow that has read what there was polls for more at a few % of a core. False after
    ``timeout_s``; ``check`` runs before each window (e.g. raise if a flow died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check is not None:
            check()
        before = [usage(p.pid)[0] for p in procs]
        time.sleep(window_s)
        after = [usage(p.pid)[0] for p in procs]
        if all(a - b < busy_share * window_s for a, b in zip(after, before, strict=True)):
            return True
    return False
