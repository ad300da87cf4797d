"""`twinflow run FLOW`: one dataflow in this process or a local cluster (also `twinflow twin run`,
`twinflow alerts run`)."""

from __future__ import annotations

import logging
import sys

import typer

from twinflow.cli.support import err_console, settings_or_exit, setup_logging

FLOWS = {
    "pipeline": "ingest, reconciliation and models in one flow, telemetry.raw read once (docs/performance.md)",
    "telemetry": "validate telemetry.raw, rows to PostgreSQL, rejects to the DLQ",
    "twin": "reconcile reported/desired state, event-time windows (docs/reconciliation.md)",
    "models": "online anomaly scores and forecasts per twin (docs/ml.md)",
    "alerts": "alert lifecycle, database and webhook (docs/alerts.md)",
}


def run(
    flow: str = typer.Argument("telemetry", help="Which flow: " + ", ".join(FLOWS) + "."),
    workers: int = typer.Option(1, "-w", "--workers", min=1, help="Worker threads per process."),
    processes: int = typer.Option(1, "-p", "--processes", min=1, help="Start a local cluster of N processes."),
    process_id: int = typer.Option(None, "-i", "--process-id", min=0, help="This process' index in a cluster."),
    addresses: str = typer.Option(None, "-a", "--addresses", help="host:port;… of all cluster processes."),
    recovery: bool = typer.Option(True, help="Snapshot state for crash recovery."),
    tail: bool = typer.Option(True, help="Keep running at the end of the topics."),
    metrics_port: int = typer.Option(
        None,
        "--metrics-port",
        min=1,
        max=65535,
        help="Serve the flow's Prometheus metrics on http://HOST:PORT/metrics (all interfaces; process i of a "
        "cluster on PORT+i): each step's durations, snapshots, recovery writes (docs/operations.md).",
    ),
) -> None:
    """Run a dataflow until stopped: SIGTERM or Ctrl-C writes and commits everything read, exits 0.

    A stop takes about a second for a few hundred twins: it snapshots every twin the process holds
    (about 0.4 ms each) and waits for sinks whose database is slow (docs/operations.md).

    Same as python -m bytewax.run "twinflow.dataflows:<flow>()"; recovery state is kept in
    <stack dir>/recovery/<flow> unless flow.recovery_dir is set (then <dir>/<flow>).
    """
    run_flow(flow, workers, processes, process_id, addresses, recovery, tail, metrics_port)


def run_flow(
    flow: str,
    workers: int = 1,
    processes: int = 1,
    process_id: int | None = None,
    addresses: str | None = None,
    recovery: bool = True,
    tail: bool = True,
    metrics_port: int | None = None,
) -> None:
    """`twinflow run FLOW …` with plain defaults (also `twinflow twin run`, `twinflow alerts run`); ends
    with ``typer.Exit`` (the flow's exit code)."""
    import importlib

    from connectors.overlap import SLOTS
    from connectors.stopping import check_stop, stop_on_signals
    from twinflow.runner import ensure_recovery_dir, run_in_process, run_local_cluster
    from twinflow.stack.process import port_open

    stop_on_signals()  # from the start: a stop during start-up is clean too

    if flow not in FLOWS:
        err_console.print(f"[red]unknown flow {flow!r}: choose one of {', '.join(FLOWS)}[/red]")
        raise typer.Exit(2)
    s = settings_or_exit()
    check_stop("starting the flow")
    if processes > 1 and process_id is None:
        child = [sys.executable, "-m", "twinflow.cli.main", "run", flow, "-w", str(workers)]
        child += ["--recovery" if recovery else "--no-recovery", "--tail" if tail else "--no-tail"]
        child += ["--metrics-port", str(metrics_port)] if metrics_port else []
        raise typer.Exit(run_local_cluster(child, processes))
    setup_logging()
    peers = addresses.split(";") if addresses else None
    if (process_id is None) != (peers is None):
        err_console.print("[red]-i/--process-id and -a/--addresses go together (docs/performance.md)[/red]")
        raise typer.Exit(2)
    port = None
    if metrics_port:
        port = metrics_port + (process_id or 0)
        if port > 65535 or port_open(port):
            err_console.print(
                f"[red]--metrics-port {metrics_port}: port {port} is not free (or out of range) for this "
                f"process' metrics; pick another port[/red]"
            )
            raise typer.Exit(2)
    rdir = None
    if recovery:
        base = s.flow.recovery_dir or (s.stack.dir / "recovery")
        try:
            rdir = ensure_recovery_dir(base / flow, process_id=process_id or 0, processes=len(peers or [None]))
        except ValueError as exc:
            err_console.print(f"[red]-i {process_id}: {exc} (-a lists {len(peers or [])} addresses)[/red]")
            raise typer.Exit(2) from exc
    if s.flow.sink_partitions is None:  # one PostgreSQL writer per worker of the run
        partitions = min(workers * len(peers or [None]), SLOTS)
        s = s.model_copy(update={"flow": s.flow.model_copy(update={"sink_partitions": partitions})})
    module = importlib.import_module(f"flows.{flow}")
    check_stop("starting the flow")
    logging.getLogger("twinflow.run").info("flow %s starting (recovery: %s)", flow, rdir or "off")
    code = run_in_process(
        lambda: module.build_flow(s, tail=tail),
        workers=workers,
        process_id=process_id,
        addresses=peers,
        recovery_dir=rdir,
        snapshot_interval_s=s.flow.snapshot_interval_s,
        gc_gen0_threshold=s.flow.gc_gen0_threshold,
        switch_interval_s=s.flow.gil_switch_interval_ms / 1000,
        epoch_without_recovery_s=s.flow.epoch_without_recovery_s,
        metrics_port=port,
    )
    raise typer.Exit(code)
