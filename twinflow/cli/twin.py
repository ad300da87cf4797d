"""``twinflow twin …``: desired values and the mode (signed, through the gate), a twin's state, the flow."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from operators.twin.state import Status
from twinflow.cli.support import err_console, finite, settings_or_exit
from twinflow.settings import Settings

twin_app = typer.Typer(help="Twin state: desired values, current and past state.", no_args_is_help=True)
console = Console()

CURRENT_SQL = "SELECT * FROM twin_state_current WHERE twin_id = %(twin_id)s"


def parse_assignments(pairs: list[str]) -> dict[str, float | bool]:
    """``["speed=1200", "run=true"]`` → ``{"speed": 1200.0, "run": True}``; clear errors otherwise."""
    from operators.records.commands import parse_value

    values: dict[str, float | bool] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{pair!r}: write param=value, e.g. speed=1200")
        try:
            values[name.strip()] = parse_value(raw)
        except ValueError:
            raise typer.BadParameter(f"{pair!r}: {raw!r} is not a finite number nor true/false") from None
    return values


def load_state(settings: Settings, twin_id: str, at: datetime | None = None) -> dict[str, Any] | None:
    """The twin's newest state, or its state as of ``at`` (``sql/queries/twin_state_at.sql``)."""
    import psycopg
    from psycopg.rows import dict_row

    from twinflow import queries

    sql = CURRENT_SQL if at is None else queries.load("twin_state_at")
    with psycopg.connect(settings.postgres.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, {"twin_id": twin_id, "at": at}).fetchone()


MODES = ("normal", "maintenance", "simulating")
_TIMEOUT = typer.Option(
    30.0, "--timeout", min=0, callback=finite, help="Seconds to wait for the twin flow's verdict (0: do not wait)."
)
_ASSIGNMENTS = typer.Argument(..., help="param=value pairs, e.g. speed_sp_rpm=1200.")
_NO_WAIT = typer.Option(False, "--no-wait", help="Send and return without waiting for the verdict.")


def send_request(
    twin_id: str,
    values: dict[str, float],
    *,
    mode: str | None = None,
    expect_version: int | None = None,
    reason: str = "",
    timeout: float = 30.0,
) -> dict[str, Any] | None:
    """Sign and send one request, print the verdict; exit non-zero unless it was applied.

    Exit codes: 0 applied (or sent with ``timeout`` 0), 2 not sent (no key, invalid input), 3 denied,
    4 no verdict within ``timeout``."""
    from twinflow.desired_client import RequestError, explain, request, timeout_hint

    s = settings_or_exit()
    try:
        request_id, verdict = request(
            s, twin_id, values, mode=mode, expect_version=expect_version, reason=reason, timeout=timeout
        )
    except RequestError as exc:
        err_console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    if timeout <= 0:
        console.print(f"sent request {request_id} to {s.twin.desired_topic} (not waiting for the verdict)")
        return None
    if verdict is None:
        err_console.print(f"[red]{escape(timeout_hint(s, request_id, timeout))}[/red]")
        raise typer.Exit(4)
    line = escape(explain(verdict))
    if verdict["decision"] != "applied":
        err_console.print(f"[red]{line}[/red]", highlight=False)
        raise typer.Exit(3)
    console.print(line, highlight=False)
    return verdict


@twin_app.command("set-desired")
def set_desired(
    twin_id: str = typer.Argument(..., help="The twin, e.g. pump-001."),
    assignments: list[str] = _ASSIGNMENTS,
    expect_version: int = typer.Option(
        None, "--expect-version", help="Refuse unless the twin's desired version (see `twin show`) is this."
    ),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit trail)."),
    timeout: float = _TIMEOUT,
    no_wait: bool = _NO_WAIT,
) -> None:
    """Ask for new desired values: signed with your key, decided by the twin flow's gate, audited.

    Prints the verdict: `applied: …` (exit 0) or `denied: <reason> <detail>` (exit 3)."""
    values = parse_assignments(assignments)
    send_request(twin_id, values, expect_version=expect_version, reason=reason, timeout=0 if no_wait else timeout)


@twin_app.command("mode")
def set_mode(
    twin_id: str = typer.Argument(..., help="The twin, e.g. pump-001."),
    mode: str = typer.Argument(..., help="normal, maintenance or simulating."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit trail)."),
    expect_version: int = typer.Option(None, "--expect-version", help="Refuse unless at this desired version."),
    timeout: float = _TIMEOUT,
    no_wait: bool = _NO_WAIT,
) -> None:
    """Put a twin into maintenance or simulating, or back to normal (the one switch; docs/reconciliation.md).

    In maintenance no alert opens, models do not learn and commands are held; in simulating models
    do not learn and commands are held. Authorised and audited like any desired change."""
    if mode not in MODES:
        err_console.print(f"[red]mode {mode!r}: use {', '.join(MODES)}[/red]")
        raise typer.Exit(2)
    send_request(
        twin_id, {}, mode=mode, expect_version=expect_version, reason=reason, timeout=0 if no_wait else timeout
    )


def _parse_time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"--at {text!r}: use ISO 8601, e.g. 2026-11-25T08:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


STATUSES = tuple(s.value for s in Status)


@twin_app.command("list")
def list_twins(
    status: str = typer.Option(None, help=f"Only twins in this status: {', '.join(STATUSES)}."),
    type_: str = typer.Option(None, "--type", help="Only twins of this type (twin registry, else the twin policy)."),
    site: str = typer.Option(None, help="Only twins of this site (twin registry)."),
    limit: int = typer.Option(100, min=1, max=1_000_000, help="At most this many, by twin id."),
    after: str = typer.Option("", help="Start after this twin id (the next page)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    model: str = typer.Option(
        "", help="The anomaly score and health of this model of your own (default: the built-in models')."
    ),
) -> None:
    """List the fleet from the database: each twin's status, mode, versions, open alerts and latest
    anomaly score and health (what `GET /api/v1/twins` gives)."""
    import psycopg
    from psycopg.rows import dict_row

    from connectors.config.security_files import load_twin_registry
    from connectors.postgres.api_reads import FLEET, HAS_HEALTH
    from operators.records.alerts import source_of
    from operators.telemetry.registry import FleetPage

    if status is not None and status not in STATUSES:
        err_console.print(f"--status {status!r}: use one of {', '.join(STATUSES)}")
        raise typer.Exit(2)
    s = settings_or_exit()
    registry = load_twin_registry(s.security.twin_registry) if s.security.twin_registry else None
    wanted = {k: v for k, v in (("type", type_), ("site", site)) if v is not None}
    page = FleetPage(limit, wanted, registry, s.twin.policy.type_of, after)
    with psycopg.connect(s.postgres.conninfo(), row_factory=dict_row) as conn:
        sql = FLEET[conn.execute(HAS_HEALTH).fetchone() is not None]
        while page.wants_more:
            params = {"after": page.after, "limit": page.batch, "status": status, "source": source_of(model)}
            page.take(conn.execute(sql, params).fetchall())
    found = page.items
    if as_json:
        for row, attrs in found:
            keep = ("twin_id", "status", "mode", "version", "desired_version", "event_time", "open_alerts",
                    "worst_severity", "score", "threshold", "health")  # fmt: skip
            out = {k: row.get(k) for k in keep} | {"conflicts": len(row["conflicts"]), "attributes": attrs}
            console.print_json(json.dumps(out, default=str), indent=None)
        return
    lines = []
    for row, attrs in found:
        alerts = str(row["open_alerts"]) + (f" ({row['worst_severity']})" if row["worst_severity"] else "")
        score = "-" if row["score"] is None else f"{row['score']:.2f}"
        if row["score"] is not None and row["score"] >= row["threshold"]:
            score += " ⚠"
        health = "-" if row.get("health") is None else f"{row['health']:.2f}"
        lines.append((row["twin_id"], str(attrs.get("type", "")), row["status"], row["mode"], str(row["version"]),
                      str(len(row["conflicts"])), alerts, score, health,
                      f"{row['event_time'].astimezone(UTC):%Y-%m-%d %H:%M:%S}"))  # fmt: skip
    if console.width >= 120:
        table = Table("twin", "type", "status", "mode", "version", "conflicts", "open alerts", "anomaly", "health",
                      "last event (UTC)", box=box.SIMPLE_HEAD)  # fmt: skip
        for line in lines:
            table.add_row(*line)
        console.print(table)
    else:  # a narrow terminal (or a pipe): one line per twin, nothing cut off
        width = max((len(line[0]) for line in lines), default=0)
        for twin, kind, status, mode, ver, conflicts, alerts, score, health, last in lines:
            console.print(
                f"{twin:<{width}}  {kind or '-'}  {status}" + (f" ({mode})" if mode != "normal" else "")
                + f"  v{ver}" + (f"  {conflicts} in conflict" if conflicts != "0" else "")
                + f"  alerts {alerts}  anomaly {score}  health {health}  {last}",
                markup=False, highlight=False, soft_wrap=True,
            )  # fmt: skip
    more = f"; next page: --after {found[-1][0]['twin_id']}" if len(found) == limit else ""
    console.print(f"{len(found)} twin(s){more}")


@twin_app.command("show")
def show(
    twin_id: str = typer.Argument(..., help="The twin, e.g. pump-001."),
    at: str = typer.Option(None, "--at", help="Show the state as of this time (ISO 8601)."),
    as_json: bool = typer.Option(False, "--json", help="Print the row as JSON."),
) -> None:
    """Show a twin's state from the database (now, or as of --at)."""
    s = settings_or_exit()
    row = load_state(s, twin_id, _parse_time(at) if at else None)
    if row is None:
        err_console.print(f"no state for twin {twin_id!r}" + (f" at or before {at}" if at else ""))
        raise typer.Exit(1)
    if as_json:
        console.print_json(json.dumps(row, default=str))
        return
    console.print(
        f"[bold]{row['twin_id']}[/bold] version {row['version']}, desired version {row['desired_version']} "
        f"at {row['event_time']} — "
        f"{row['status']} (mode {row['mode']}, consistency {row['consistency_score']:.3f}, "
        f"sync latency {_ms(row['sync_latency_ms'])}, last sync {row['last_sync_time'] or 'never'})"
    )
    conn = row.get("connectivity")
    if conn:
        since = f" since {conn['since']}" if conn.get("since") else ""
        reason = f" ({conn['reason']})" if conn.get("reason") else ""
        console.print(f"device {conn['state']}{since}{reason}")
        for sensor, lost_since in sorted((conn.get("unreachable") or {}).items()):
            console.print(f"sensor {sensor} unreachable since {lost_since}")
    table = Table("parameter", "reported", "desired", "delta", "in sync", "command")
    names = sorted(set(row["reported"]) | set(row["desired"]))
    for name in names:
        rep, des = row["reported"].get(name), row["desired"].get(name)
        cmd = row["commands"].get(name)
        table.add_row(
            name,
            "" if rep is None else _shown(rep["value"]),
            "" if des is None else _shown(des["value"]),
            "" if name not in row["delta"] else f"{row['delta'][name]:g}",
            "no" if name in row["conflicts"] else "yes",
            "" if cmd is None else f"{cmd['status']} (attempt {cmd['attempt']})",
        )
    console.print(table)
    console.print(f"last change: {json.dumps(row['change'], default=str)}")


def _ms(value: float | None) -> str:
    """``65.674`` → ``66 ms``; no measurement yet → ``-``."""
    return "-" if value is None else f"{value:.0f} ms"


def _shown(value: float | bool | None) -> str:
    """A reported or desired value as people write it: ``1200``, ``true``, ``-`` (no value)."""
    if value is None:
        return "-"
    return str(value).lower() if isinstance(value, bool) else f"{value:g}"


@twin_app.command("run")
def run(
    workers: int = typer.Option(1, "-w", "--workers", min=1, help="Worker threads per process."),
    recovery: bool = typer.Option(True, help="Snapshot state for crash recovery."),
    tail: bool = typer.Option(True, help="Keep running at the end of the topics."),
) -> None:
    """Run the twin flow (same as `twinflow run twin`)."""
    from twinflow.cli.run import run_flow

    run_flow("twin", workers=workers, recovery=recovery, tail=tail)
