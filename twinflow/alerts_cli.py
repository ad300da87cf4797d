"""``twinflow alerts list | ack ID --by NAME | resolve ID --by NAME | maintenance TWIN on|off``.

An ack or resolve is published to ``twin.alert_actions`` (the alerts flow applies it to the
alert's lifecycle and writes a new version) and applied to the database row at once, so
``list`` shows it even before the flow has caught up.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from twinflow.cli_support import err_console, publish_or_exit, settings_or_exit
from twinflow.settings import Settings

alerts_app = typer.Typer(help="Predictive-maintenance alerts: list, acknowledge, resolve.", no_args_is_help=True)
console = Console()

STATES = {
    "active": ["open", "acknowledged"],
    "open": ["open"],
    "acknowledged": ["acknowledged"],
    "resolved": ["resolved"],
    "all": ["open", "acknowledged", "resolved"],
}
SEVERITY_STYLE = {"critical": "bold red", "major": "yellow", "minor": "cyan"}


def _store(s: Settings):
    from connectors.postgres.alerts_store import AlertStore

    return AlertStore(s.postgres.conninfo(), max_attempts=3)


@alerts_app.command("list")
def list_alerts(
    state: str = typer.Option("active", help="active (open + acknowledged), open, acknowledged, resolved, all."),
    twin: str = typer.Option(None, help="Only this twin."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Show alerts with severity, state, who acknowledged them and the explanation."""
    if state not in STATES:
        err_console.print(f"[red]--state {state!r}: use one of {', '.join(STATES)}[/red]")
        raise typer.Exit(2)
    store = _store(settings_or_exit())
    rows = store.list_alerts(states=STATES[state], twin_id=twin, limit=limit)
    store.close()
    if as_json:
        for r in rows:
            console.print_json(json.dumps(r, default=str), indent=None)
        return
    table = Table()
    table.add_column("id", no_wrap=True, min_width=15)
    for name in ("twin", "kind", "severity", "state", "opened (UTC)", "acked by", "summary"):
        table.add_column(name, overflow="fold")
    for r in rows:
        sev = r["severity"] + (f" ↑{r['escalation_level']}" if r["escalation_level"] else "")
        table.add_row(
            r["alert_id"],
            r["twin_id"],
            r["kind"] + (" (flapping)" if r["flapping"] else ""),
            f"[{SEVERITY_STYLE[r['severity']]}]{sev}[/]",
            r["state"],
            r["opened_at"].astimezone(UTC).strftime("%m-%d %H:%M:%S"),
            r["acked_by"] or "",
            r["summary"],
        )
    console.print(table)
    console.print(f"{len(rows)} alert(s)")


def _act(alert_id: str, action: str, by: str) -> None:
    from operators.alert_records import AlertAction, encode

    s = settings_or_exit()
    store = _store(s)
    try:
        row = store.get_alert(alert_id)
        if row is None:
            err_console.print(f"[red]no alert {alert_id!r}; `twinflow alerts list --state all` shows the ids[/red]")
            raise typer.Exit(1)
        if row["state"] == "resolved":
            err_console.print(f"[red]alert {alert_id} is already resolved ({row['resolved_by']})[/red]")
            raise typer.Exit(1)
        if action == "ack" and row["state"] == "acknowledged":
            console.print(f"alert {alert_id} was already acknowledged by {row['acked_by']}")
            return
        now = datetime.now(UTC)
        act = AlertAction(alert_id=alert_id, twin_id=row["twin_id"], action=action, by=by, ts=now)  # type: ignore[arg-type]
        publish_or_exit(s, s.alerts.actions_topic, row["twin_id"], encode(act), f"{action} of {alert_id}")
        store.record_action(alert_id, action, by, now)
    finally:
        store.close()
    verb = "acknowledged" if action == "ack" else "resolved"
    console.print(f"alert {alert_id} ({row['twin_id']}, {row['kind']}) {verb} by {by}")


@alerts_app.command("ack")
def ack(
    alert_id: str = typer.Argument(..., help="Alert id (see `twinflow alerts list`)."),
    by: str = typer.Option(..., "--by", help="Who acknowledges it."),
) -> None:
    """Acknowledge an open alert: someone is on it (stops escalation)."""
    _act(alert_id, "ack", by)


@alerts_app.command("resolve")
def resolve(
    alert_id: str = typer.Argument(..., help="Alert id (see `twinflow alerts list`)."),
    by: str = typer.Option(..., "--by", help="Who resolves it."),
) -> None:
    """Resolve an alert by hand (it would otherwise resolve when its condition clears)."""
    _act(alert_id, "resolve", by)


@alerts_app.command("maintenance")
def maintenance(
    twin_id: str = typer.Argument(..., help="The twin."),
    state: str = typer.Argument(..., help="on (maintenance) or off (normal)."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit trail)."),
    by: str = typer.Option(None, "--by", hidden=True, help="Ignored: who asks is the subject of your signing key."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the twin flow's verdict."),
) -> None:
    """Alias of `twinflow twin mode TWIN maintenance|normal`: no alerts open or escalate in maintenance."""
    from twinflow.twin_cli import send_request

    if state not in ("on", "off"):
        err_console.print(f"[red]state {state!r}: use on or off[/red]")
        raise typer.Exit(2)
    if by is not None:
        err_console.print("note: --by is ignored; the request is signed as the subject of security.key_file")
    send_request(twin_id, {}, mode="maintenance" if state == "on" else "normal", reason=reason, timeout=timeout)


@alerts_app.command("run")
def run(
    workers: int = typer.Option(1, "-w", "--workers", help="Worker threads per process."),
    recovery: bool = typer.Option(True, help="Snapshot state for crash recovery."),
    tail: bool = typer.Option(True, help="Keep running at the end of the topics."),
    reorder_window: float | None = typer.Option(
        None,
        "--reorder-window",
        min=0,
        help="Cross-topic reorder window in seconds (alerts.rules.reorder_window_s); for a replay "
        "from the beginning without recovery use --no-tail and a window covering the replayed span.",
    ),
) -> None:
    """Run the alerts flow (same as `twinflow run alerts`)."""
    import os

    from twinflow.cli import run as run_flow

    if reorder_window is not None:
        os.environ["TWINFLOW_ALERTS__RULES__REORDER_WINDOW_S"] = str(reorder_window)
    run_flow("alerts", workers=workers, processes=1, process_id=None, addresses=None, recovery=recovery, tail=tail)
