"""CLI commands of the protocol connectors: simulate, mapped bridges, commands, OPC-UA certificates.

Registered in :mod:`twinflow.cli.main` by :func:`register`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from connectors.bridges.mapping.loading import MappingError, load_mapping
from connectors.bridges.mapping.schema import PROTOCOLS, Mapping
from twinflow.cli.support import err_console, finite, print_config_error, settings_or_exit, setup_logging

console = Console()

command_app = typer.Typer(help="Send setpoints to devices through the bridges.", no_args_is_help=True)
certs_app = typer.Typer(help="Generate certificates for OPC-UA security.", no_args_is_help=True)

MAPPING_HELP = "Asset mapping file (TOML), e.g. config/plant.toml; see docs/connectors.md."
_SIM_MAPPING = typer.Option(Path("config/plant.toml"), "--mapping", "-m", help=MAPPING_HELP)
_FAULTS = typer.Option([], "--fault", "-f", help="TWIN:KIND:ONSET_S[:END_S[:SEVERITY[:SENSOR]]], repeatable.")
_BRIDGE_MAPPING = typer.Option(..., "--mapping", "-m", help=MAPPING_HELP)
_CERTS_OUT = typer.Option(Path("certs"), help="Folder for the generated files.")
_METRICS = typer.Option(None, help="Serve Prometheus /metrics and JSON /health (per device) on this port.")


def _mapping(path: Path) -> Mapping:
    try:
        return load_mapping(path)
    except MappingError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None


def _logging(verbose: bool) -> None:
    setup_logging(verbose)
    for noisy in ("asyncua", "pymodbus"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_bridge(protocol: str, mapping_file: Path, verbose: bool = False, metrics_port: int | None = None) -> None:
    """Validate the mapping, then run the protocol's bridge (all its devices) until SIGINT/SIGTERM;
    exit code 1 when a part of the bridge died (a supervisor restarts it)."""
    from connectors.stopping import stop_on_signals

    stop_on_signals()  # from the start: a stop during start-up is clean too
    settings = settings_or_exit()
    mapping = _mapping(mapping_file)
    if not mapping.of(protocol):
        err_console.print(
            f"[red]invalid mapping file {mapping_file}: no asset with protocol = {protocol!r} "
            "(add one, or run the bridge of another protocol)[/red]"
        )
        raise typer.Exit(2)
    _logging(verbose)
    # The protocol's library is an extra: importing the bridge names the install command if it is missing.
    if protocol == "opcua":
        from connectors.opcua.bridge import OpcuaBridge as cls
    elif protocol == "modbus":
        from connectors.modbus.bridge import ModbusBridge as cls
    else:
        from connectors.mqtt.mapped import MappedMqttBridge as cls
    from connectors.kafka.clients import ensure_topics
    from connectors.stopping import check_stop

    ensure_topics(settings)  # a stop while it waits for Kafka: exit 0 (twinflow.cli.main)
    check_stop("starting the bridge")
    code = cls(settings, mapping).run_forever(metrics_port)
    raise typer.Exit(code)


def _check_ports(path: Path, mapping: Mapping, protocols: tuple[str, ...]) -> None:
    """Refuse to start when a server port of the mapping is taken, naming the field to change."""
    from urllib.parse import urlparse

    from twinflow.stack.process import port_open

    wanted = []
    if "opcua" in protocols:
        for name, (conn, _) in mapping.devices_of("opcua").items():
            url = urlparse(conn.endpoint)
            where = "[opcua] endpoint" if name == "opcua" else f"[devices.{name}] endpoint"
            wanted.append((url.hostname or "127.0.0.1", url.port or 4840, where))
    if "modbus" in protocols:
        for name, (conn, _) in mapping.devices_of("modbus").items():
            wanted.append((conn.host, conn.port, "[modbus] port" if name == "modbus" else f"[devices.{name}] port"))
    for host, port, field in wanted:
        if port_open(port, host):
            msg = (
                f"{path}: {field}: port {port} on {host} is already in use (another simulator?). "
                "Stop that process or choose another port in the mapping file."
            )
            err_console.print(f"[red]{escape(msg)}[/red]", highlight=False)
            raise typer.Exit(1)


def simulate(
    mapping_file: Path = _SIM_MAPPING,
    fault: list[str] = _FAULTS,
    random_faults: int = typer.Option(0, min=0, help="Add this many random faults (needs --duration)."),
    duration: float = typer.Option(
        None, min=0.1, callback=finite, help="Stop after this many seconds (default: run until Ctrl-C)."
    ),
    only: str = typer.Option(",".join(PROTOCOLS), help="Protocols to serve, comma-separated."),
    tick: float = typer.Option(
        None, min=0.001, max=60, callback=finite, help="Seconds per simulation step (default sim.tick_s)."
    ),
    verbose: bool = False,
) -> None:
    """Run the plant simulator: OPC-UA server, Modbus TCP server and MQTT device, per the mapping.
    Runs until --duration or SIGTERM/Ctrl-C."""
    import random

    from connectors.sim.faults import parse_fault, random_schedule
    from connectors.sim.plant import PlantError
    from connectors.stopping import stop_on_signals

    stop_on_signals()

    settings = settings_or_exit()
    mapping = _mapping(mapping_file)
    try:
        faults = [parse_fault(f) for f in fault]
    except ValueError as exc:
        err_console.print(f"[red]--fault: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    if random_faults:
        if not duration:
            err_console.print("[red]--random-faults needs --duration (faults are spread over the run)[/red]")
            raise typer.Exit(2)
        rng = random.Random(settings.sim.seed)
        faults += random_schedule([a.twin_id for a in mapping.assets], duration, rng, random_faults)
    protocols = tuple(p.strip() for p in only.split(",") if p.strip())
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown or not protocols:
        what = f"unknown protocol(s) {', '.join(sorted(unknown))}" if unknown else "no protocol named"
        err_console.print(f"[red]--only: {escape(what)}; use one or more of {', '.join(PROTOCOLS)}[/red]")
        raise typer.Exit(2)
    from connectors.sim.runner import Simulator, require_extras

    require_extras(mapping, protocols)  # a missing library first, then the ports
    _check_ports(mapping_file, mapping, protocols)
    _logging(verbose)

    try:
        sim = Simulator(settings, mapping, faults, protocols=protocols, tick_s=tick)
    except (PlantError, ValueError) as exc:
        err_console.print(f"[red]{escape(str(exc))}[/red]", highlight=False)
        raise typer.Exit(2) from None
    sim.run_forever(duration)
    console.print(f"simulator stopped: {sim.ticks} ticks, {sim.values} values served")


@command_app.command("send")
def command_send(
    twin: str = typer.Argument(..., help="twin_id"),
    parameter: str = typer.Argument(..., help="Parameter name from the mapping file."),
    value: str = typer.Argument(..., help="A number, or true/false for an on/off parameter."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit trail)."),
    wait: float = typer.Option(
        20.0, min=0, callback=finite, help="Seconds to wait for the device's ack (0: do not wait)."
    ),
) -> None:
    """Set PARAMETER of TWIN through the desired-state gate, then print the device's ack.

    The same signed, authorised and audited request as `twinflow twin set-desired TWIN PARAMETER=VALUE`:
    only the twin flow writes twin.commands. Exit 0 applied by the device, 1 not applied (rejected,
    failed, expired, superseded), 3 denied by the gate, 4 no verdict, 5 no ack."""
    from connectors.kafka.commands import wait_ack
    from operators.records.commands import parse_value
    from twinflow.cli.twin import send_request

    try:
        typed = parse_value(value)
    except ValueError:
        err_console.print(f"[red]value {escape(repr(value))} is neither a finite number nor true/false[/red]")
        raise typer.Exit(2) from None
    settings = settings_or_exit()
    verdict = send_request(twin, {parameter: typed}, reason=reason, timeout=30.0)
    commands = (verdict or {}).get("commands") or []
    if not commands:
        console.print(f"no command needed: {twin}.{parameter} is already {value}, or the twin is not in normal mode")
        return
    if wait <= 0:
        return
    acks = wait_ack(settings, commands[0], wait)
    if not acks:
        err_console.print(f"[yellow]no ack within {wait:.0f} s: is a bridge that owns {twin!r} running?[/yellow]")
        raise typer.Exit(5)
    ack = acks[0]
    colour = "green" if ack.status == "applied" else "red"
    when = ack.applied_at.isoformat() if ack.applied_at else "an unknown time"
    console.print(f"[{colour}]{ack.status}[/{colour}] by {ack.source} bridge at {when}")
    if ack.error:
        console.print(f"reason: {ack.error}")
    raise typer.Exit(0 if ack.status == "applied" else 1)


@certs_app.command("opcua")
def certs_opcua(
    out: Path = _CERTS_OUT,
    host: str = typer.Option("localhost", help="Host name written into the certificates."),
) -> None:
    """Self-signed server and client certificates; the client one is put in trusted/ for the simulator."""
    from connectors.opcua.certs import generate_pair

    files = generate_pair(out, host)
    for name, path in files.items():
        console.print(f"{name}: {path}")


def register(app: typer.Typer, bridge_app: typer.Typer) -> None:
    """Add the connector commands to the main CLI."""
    app.command("simulate")(simulate)
    app.add_typer(command_app, name="command")
    app.add_typer(certs_app, name="certs")

    @bridge_app.command("opcua")
    def bridge_opcua(mapping: Path = _BRIDGE_MAPPING, verbose: bool = False, metrics_port: int = _METRICS) -> None:
        """Forward OPC-UA values of the mapped assets (every server of the file) to Kafka and apply their commands."""
        run_bridge("opcua", mapping, verbose, metrics_port)

    @bridge_app.command("modbus")
    def bridge_modbus(mapping: Path = _BRIDGE_MAPPING, verbose: bool = False, metrics_port: int = _METRICS) -> None:
        """Poll Modbus TCP devices of the mapped assets into Kafka and apply their commands."""
        run_bridge("modbus", mapping, verbose, metrics_port)
