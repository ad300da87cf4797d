"""The ``twinflow`` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from twinflow.cli.alerts import alerts_app
from twinflow.cli.run import run
from twinflow.cli.support import conninfo_option, err_console, finite, settings_or_exit, setup_logging

app = typer.Typer(help="twinflow: keep digital twins in step with their machines.", no_args_is_help=True)
stack_app = typer.Typer(help="The local stack of real services (no Docker).", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
bridge_app = typer.Typer(help="Protocol bridges into Kafka.", no_args_is_help=True)
kafka_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(db_app, name="db")
app.add_typer(bridge_app, name="bridge")
app.add_typer(kafka_app, name="kafka")
app.add_typer(alerts_app, name="alerts")

console = Console()


# ----------------------------------------------------------------------------- stack
@stack_app.command("up")
def stack_up(
    with_timescale_wasm: bool = typer.Option(
        False, "--with-timescale-wasm", help="Also serve TimescaleDB-in-WASM (used by the tests)."
    ),
    secure: bool = typer.Option(False, "--secure", help="TLS, authentication and ACLs everywhere (docs/security.md)."),
) -> None:
    """Install (when missing) and start Kafka, PostgreSQL and Mosquitto; idempotent."""
    from twinflow.stack import StackError, services

    s = settings_or_exit()
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
    from twinflow.stack.identity import ensure_dev_identity

    console.print(f"state in {s.stack.dir}; development identity in {ensure_dev_identity(s)}")
    if secure:
        configs = material.write_client_configs(s)
        console.print(
            f"clients: TWINFLOW_CONFIG={configs['app']} (twin flow: {configs['twin']}, "
            f"people's CLI: {configs['operator']}, admin: {configs['admin']})"
        )


@stack_app.command("down")
def stack_down(purge: bool = typer.Option(False, help="Also delete all stack data.")) -> None:
    """Stop every stack service (data is kept unless --purge)."""
    import shutil

    from twinflow.stack import services

    s = settings_or_exit()
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

    s = settings_or_exit()
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
    conninfo: str = typer.Option(
        None, help="libpq connection string (default: from settings).", callback=conninfo_option
    ),
) -> None:
    """Apply pending migrations from sql/migrations (safe to re-run)."""
    from connectors.postgres.migrate import MigrationError, migrate

    s = settings_or_exit()
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
    from connectors.kafka.clients import ensure_topics, quiet_logger, topic_specs

    s = settings_or_exit()
    created = ensure_topics(s, logger=quiet_logger())  # a broker that does not answer: one line, not hundreds
    for spec in topic_specs(s):
        mark = "created" if spec.name in created else "exists"
        console.print(f"{spec.name:<24} partitions={spec.partitions:<3} {mark}")


# ----------------------------------------------------------------------------- flow
app.command("run")(run)


_MAPPING_OPTION = typer.Option(None, "--mapping", "-m", help="Asset mapping file (docs/connectors.md).")


@bridge_app.command("mqtt")
def bridge_mqtt(
    verbose: bool = False,
    mapping: Path = _MAPPING_OPTION,
    metrics_port: int = typer.Option(None, help="Serve /metrics and /health on this port (with --mapping)."),
) -> None:
    """Forward MQTT telemetry to Kafka until SIGTERM/Ctrl-C (per-topic mapping, Sparkplug B with --mapping)."""
    from connectors.stopping import stop_on_signals

    stop_on_signals()  # from the start: a stop during start-up is clean too
    if mapping is not None:
        from twinflow.cli.connectors import run_bridge

        return run_bridge("mqtt", mapping, verbose, metrics_port)
    from connectors.mqtt.bridge import MqttBridge

    setup_logging(verbose)
    MqttBridge(settings_or_exit()).run_forever()


_DEMO_OUT = typer.Option(Path("demo-report"), help="Folder for the HTML report.")
_DEMO_MAPPING = typer.Option(
    None, "--mapping", "-m", help="Plant file (default config/plant.toml; a copy with other hosts or ports)."
)


@app.command("demo")
def demo(
    duration: float = typer.Option(
        None, min=1.0, callback=finite, help="Seconds to run (default: 150 plant, 60 publisher)."
    ),
    publisher: bool = typer.Option(
        False, "--publisher", help="Only a publisher → MQTT → Kafka → flow → PostgreSQL run (no simulator)."
    ),
    twins: int = typer.Option(10, min=1, help="--publisher: simulated twins."),
    rate: float = typer.Option(20.0, min=0.1, callback=finite, help="--publisher: messages per second per twin."),
    out: Path = _DEMO_OUT,
    mapping: Path = _DEMO_MAPPING,
) -> None:
    """The simulated plant (OPC-UA, MQTT, Modbus) through bridges, flows, models and alerts, with a
    live view, a fault-vs-alert summary and an HTML report. SIGTERM/Ctrl-C stops it and all it started."""
    from connectors.stopping import stop_on_signals

    stop_on_signals()
    if publisher:
        from twinflow.demo.publisher_run import run_demo

        raise typer.Exit(
            run_demo(settings_or_exit(), duration=duration or 60.0, twins=twins, rate=rate, console=console)
        )
    from twinflow.demo.plant import MAPPING, run_plant_demo

    s = settings_or_exit()
    raise typer.Exit(
        run_plant_demo(s, duration=duration or 150.0, console=console, out_dir=out, mapping=mapping or MAPPING)
    )


# ----------------------------------------------------------------------------- ml (docs/ml.md)
from twinflow.cli.replay import model_app, replay  # noqa: E402

app.command("replay")(replay)
app.add_typer(model_app, name="model")
# ----------------------------------------------------------------------------- audit, policy
from twinflow.cli.audit import audit_app, key_app, policy_app  # noqa: E402

app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")
app.add_typer(key_app, name="key")
# ----------------------------------------------------------------------------- twin (docs/reconciliation.md)
from twinflow.cli.twin import twin_app  # noqa: E402

app.add_typer(twin_app, name="twin")

# ----------------------------------------------------------------------------- HTTP API (docs/api.md)
from twinflow.cli.serve import api_app, serve  # noqa: E402

app.command("serve")(serve)
app.add_typer(api_app, name="api")

# ----------------------------------------------------------------------------- configuration (docs/configuration.md)
from twinflow.cli.settings import settings_app  # noqa: E402

app.add_typer(settings_app, name="settings")

# ----------------------------------------------------------------------------- connectors
from twinflow.cli.connectors import register as _register_connectors  # noqa: E402

_register_connectors(app, bridge_app)
from twinflow.cli.mapping import mapping_app  # noqa: E402

app.add_typer(mapping_app, name="mapping")


# Commands that run until SIGTERM/Ctrl-C: they keep the handlers twinflow.cli installs before the imports
# (a stop at any moment ends them cleanly, exit 0); every other command gets the process' own back.
RUN_UNTIL_STOPPED = {"run", "serve", "demo", "simulate", "bridge", "mapping listen-mqtt", "twin run", "alerts run"}


def runs_until_stopped(args: list[str]) -> bool:
    """Whether the command line ``args`` (without the program) names a command that runs until stopped.

    >>> [runs_until_stopped(args) for args in (["bridge", "mqtt"], ["twin", "run"], ["twin", "list"])]
    [True, True, False]
    """
    words = [a for a in args if not a.startswith("-")][:2]
    return bool(words) and (words[0] in RUN_UNTIL_STOPPED or " ".join(words) in RUN_UNTIL_STOPPED)


def main() -> None:
    """The ``twinflow`` command: a configuration mistake found anywhere (settings, mapping, policy or
    registry file), an argument that is not UTF-8, a path that cannot be used or a protocol library not
    installed (an extra, connectors/extras.py) ends in its message and exit code 2, a service that
    does not answer (PostgreSQL, Kafka) in its message and exit code 1, never a traceback. A command that
    runs until stopped and gets SIGTERM/SIGINT while it starts exits 0 (docs/operations.md#stopping)."""
    from connectors.extras import MissingExtra, explain
    from connectors.stopping import Stopped, default_signals
    from twinflow.cli.support import failure_message, not_utf8_argument, print_config_error
    from twinflow.settings import ConfigError

    if not runs_until_stopped(sys.argv[1:]):
        default_signals()
    bad_argument = not_utf8_argument(sys.argv[1:])
    if bad_argument is not None:
        print_config_error(bad_argument)
        sys.exit(2)
    try:
        app()
    except Stopped as exc:
        print(f"{exc}; exiting", file=sys.stderr, flush=True)
        sys.exit(0)
    except (ConfigError, MissingExtra) as exc:
        print_config_error(exc)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        missing = explain(exc)
        if missing is None:
            raise
        print_config_error(missing)
        sys.exit(2)
    except Exception as exc:  # a service that did not answer, a path that cannot be used: a message, no traceback
        known = failure_message(exc)
        if known is None:
            raise
        print_config_error(known[0])
        sys.exit(known[1])


if __name__ == "__main__":
    main()
