"""The ``twinflow`` command line."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from twinflow.settings import ConfigError, Settings, load_settings

app = typer.Typer(help="twinflow: keep digital twins in step with their machines.", no_args_is_help=True)
stack_app = typer.Typer(help="The local stack of real services (no Docker).", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
bridge_app = typer.Typer(help="Protocol bridges into Kafka.", no_args_is_help=True)
kafka_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(db_app, name="db")
app.add_typer(bridge_app, name="bridge")
app.add_typer(kafka_app, name="kafka")

console = Console()
err_console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# ----------------------------------------------------------------------------- stack
@stack_app.command("up")
def stack_up(
    with_timescale_wasm: bool = typer.Option(
        False, "--with-timescale-wasm", help="Also serve TimescaleDB-in-WASM (used by the tests)."
    ),
    secure: bool = typer.Option(
        False, "--secure", help="TLS, authentication and ACLs everywhere (docs/security.md)."
    ),
) -> None:
    """Install (when missing) and start Kafka, PostgreSQL and Mosquitto; idempotent."""
    from twinflow.stack import StackError, services

    s = _settings()
    if secure:
        from twinflow.stack.secure import prepare

        material = prepare(s)
    for svc in services(s, with_timescale_wasm, secure=secure or None):
        with console.status(f"{svc.name}: starting on port {svc.port} …"):
            try:
                svc.up()
            except StackError as exc:
                err_console.print(f"[red]{exc}[/red]")
                raise typer.Exit(1) from None
        console.print(f"[green]✓[/green] {svc.name} healthy on 127.0.0.1:{svc.port}")
    console.print(f"state in {s.stack.dir}")
    if secure:
        app_toml, admin_toml = material.write_client_configs(s)
        console.print(f"clients: TWINFLOW_CONFIG={app_toml} (admin: {admin_toml})")


@stack_app.command("down")
def stack_down(purge: bool = typer.Option(False, help="Also delete all stack data.")) -> None:
    """Stop every stack service (data is kept unless --purge)."""
    import shutil

    from twinflow.stack import services

    s = _settings()
    for svc in reversed(services(s, with_timescale_wasm=True)):
        svc.down()
        console.print(f"stopped {svc.name}")
    if purge and s.stack.dir.exists():
        shutil.rmtree(s.stack.dir)
        console.print(f"removed {s.stack.dir}")


@stack_app.command("status")
def stack_status() -> None:
    """Show each service, its port, pid and health; exit 1 if a core service is down."""
    from twinflow.stack import services

    s = _settings()
    table = Table("service", "port", "pid", "health")
    core_ok = True
    for svc in services(s, with_timescale_wasm=True):
        st = svc.status()
        if svc.name != "timescale-wasm":
            core_ok &= st.healthy
        table.add_row(
            st.name,
            str(st.port),
            str(st.pid or "-"),
            "[green]healthy[/green]" if st.healthy else f"[red]{st.detail}[/red]",
        )
    console.print(table)
    raise typer.Exit(0 if core_ok else 1)


# ----------------------------------------------------------------------------- db
@db_app.command("migrate")
def db_migrate(
    conninfo: str = typer.Option(None, help="libpq connection string (default: from settings)."),
) -> None:
    """Apply pending migrations from sql/migrations (safe to re-run)."""
    from connectors.postgres.migrate import MigrationError, migrate

    s = _settings()
    try:
        applied = migrate(conninfo or s.postgres.conninfo(), s.postgres.timescaledb)
    except MigrationError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


# ----------------------------------------------------------------------------- kafka
@kafka_app.command("init")
def kafka_init() -> None:
    """Create every topic twinflow uses (idempotent)."""
    from connectors.kafka.clients import ensure_topics, topic_specs

    s = _settings()
    created = ensure_topics(s)
    for spec in topic_specs(s):
        mark = "created" if spec.name in created else "exists"
        console.print(f"{spec.name:<24} partitions={spec.partitions:<3} {mark}")


# ----------------------------------------------------------------------------- flow
@app.command("run")
def run(
    workers: int = typer.Option(1, "-w", "--workers", help="Worker threads per process."),
    processes: int = typer.Option(None, "-p", "--processes", help="Local processes (cluster)."),
    process_id: int = typer.Option(None, "-i", "--process-id", help="This process' index."),
    addresses: str = typer.Option(None, "-a", "--addresses", help="host:port;… of all processes."),
    recovery: bool = typer.Option(True, help="Snapshot state for crash recovery."),
    tail: bool = typer.Option(True, help="Keep running at the end of the topic."),
) -> None:
    """Run the telemetry flow (same as python -m bytewax.run "flows.telemetry:get_flow()")."""
    s = _settings()
    args = [sys.executable, "-m", "bytewax.run", f"flows.telemetry:get_flow(tail={tail})", "-w", str(workers)]
    if processes:
        args += ["-p", str(processes)]
    if process_id is not None:
        args += ["-i", str(process_id)]
    if addresses:
        args += ["-a", addresses]
    if recovery:
        rdir = ensure_recovery_dir(s)
        # bytewax.run takes whole seconds
        args += ["-r", str(rdir), "-s", str(max(1, round(s.flow.snapshot_interval_s))), "-b", "0"]
    os.execv(sys.executable, args)


def ensure_recovery_dir(s: Settings, partitions: int = 1) -> Path:
    """Create Bytewax's recovery partitions once."""
    from bytewax.recovery import init_db_dir

    rdir = s.flow.recovery_dir or (s.stack.dir / "recovery" / "telemetry")
    if not any(rdir.glob("part-*.sqlite3")):
        rdir.mkdir(parents=True, exist_ok=True)
        init_db_dir(rdir, partitions)
    return rdir


@bridge_app.command("mqtt")
def bridge_mqtt(verbose: bool = False) -> None:
    """Forward MQTT telemetry to Kafka until interrupted."""
    from connectors.mqtt.bridge import MqttBridge

    _logging(verbose)
    MqttBridge(_settings()).run_forever()


@app.command("demo")
def demo(
    duration: float = typer.Option(60.0, help="Seconds to publish."),
    twins: int = typer.Option(10, help="Simulated twins."),
    rate: float = typer.Option(20.0, help="Messages per second per twin."),
) -> None:
    """Publisher → MQTT → Kafka → flow → PostgreSQL, with live progress and a summary."""
    from twinflow.demo import run_demo

    raise typer.Exit(run_demo(_settings(), duration=duration, twins=twins, rate=rate, console=console))


# ----------------------------------------------------------------------------- audit, policy
from twinflow.audit_cli import audit_app, policy_app  # noqa: E402

app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")


if __name__ == "__main__":
    app()
