"""``twinflow alerts list | ack | resolve | shelve | unshelve | out-of-service | in-service | metrics |
maintenance TWIN on|off | deliveries | redeliver``.

An action is authorized by the policy file's alert rules for this CLI's subject (``security.subject``, else
the subject of ``security.key_file``: :func:`twinflow.desired_client.identity`) and the decision appended to
the audit chain, then published to ``twin.alert_actions`` (the alerts flow applies it to the alert's
lifecycle and writes a new version) and applied to the database row at once, so ``list`` shows
it even before the flow has caught up (twinflow/alarms/actions.py, shared with the HTTP API).
``--by`` names who is recorded with the action (default: the subject). Exit codes: 0 done, 1 no such
alert, not possible in its state or not auditable, 2 a mistake in the command, 3 denied by the policy.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import get_args

import typer
from rich.console import Console
from rich.padding import Padding
from rich.table import Table

from operators.records.alerts import SEVERITIES, Kind
from twinflow.alarms.state_filters import NAMES, selection
from twinflow.cli.support import cli_subject, err_console, finite, publish_or_exit, refused, settings_or_exit
from twinflow.settings import Settings

alerts_app = typer.Typer(help="Predictive-maintenance alerts: list, acknowledge, resolve.", no_args_is_help=True)
console = Console()

KINDS: tuple[str, ...] = get_args(Kind)
SEVERITY_STYLE = {"critical": "bold red", "major": "yellow", "minor": "cyan"}
WIDE = 140  # columns from which `alerts list` prints a table (narrower: one block per alert)


def _store(s: Settings):
    from connectors.postgres.alerts_store import AlertStore

    return AlertStore(s.postgres.conninfo(), max_attempts=3)


@alerts_app.command("list")
def list_alerts(
    state: str = typer.Option(
        "active",
        help="active (open + acknowledged), open, acknowledged, resolved, all, or an ISA-18.2 state: unack_active, "
        "ack_active, unack_cleared, shelved, suppressed, out_of_service, normal (= resolved).",
    ),
    twin: str = typer.Option(None, help="Only this twin."),
    severity: str = typer.Option(None, help="Only these severities, e.g. critical or critical,major."),
    kind: str = typer.Option(None, help=f"Only these kinds, e.g. failure or anomaly,condition ({', '.join(KINDS)})."),
    sort: str = typer.Option("time", help="time (newest first) or severity (critical first, then newest)."),
    limit: int = typer.Option(50, min=1, max=1_000_000, help="At most this many (a page)."),
    offset: int = typer.Option(0, min=0, help="Skip this many first (the next page: --offset 50)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Show alerts with severity, state (ISA-18.2), who acknowledged them and the explanation; says how many
    there are in all and how to see the next page."""
    from connectors.postgres.alerts_store import ORDERS, AlertQuery

    if state not in NAMES:  # ISA-18.2 states (`--state shelved` …) select among alerts that are not resolved
        err_console.print(f"[red]--state {state!r}: use one of {', '.join(NAMES)}[/red]")
        raise typer.Exit(2)
    if sort not in ORDERS:
        err_console.print(f"[red]--sort {sort!r}: use one of {', '.join(ORDERS)}[/red]")
        raise typer.Exit(2)
    states, isa_states = selection(state)
    query = AlertQuery(
        states, twin, isa_states, _names(severity, SEVERITIES, "--severity"), _names(kind, KINDS, "--kind"),
        sort, limit, offset,
    )  # fmt: skip
    store = _store(settings_or_exit())
    rows, total = store.list_alerts(query)
    store.close()
    if as_json:
        for r in rows:
            console.print_json(json.dumps(r, default=str), indent=None)
        return
    if console.width < WIDE:  # a narrow terminal (or a pipe): one block per alert, its summary below
        for r in rows:
            sev = r["severity"] + (f" ↑{r['escalation_level']}" if r["escalation_level"] else "")
            acked = f", acked by {r['acked_by']}" if r["acked_by"] else ""
            console.print(
                f"[bold]{r['alert_id']}[/bold] {r['twin_id']} {r['kind']} [{SEVERITY_STYLE[r['severity']]}]{sev}[/] "
                f"{r['state']} ({_isa_label(r)}{acked}) opened {r['opened_at'].astimezone(UTC):%m-%d %H:%M:%S} UTC"
                + (" chattering" if r["flapping"] else "")
                + (" standing" if r["standing"] else "")
            )
            console.print(Padding(r["summary"], (0, 0, 0, 2)), markup=False)
        console.print(_count(len(rows), total, offset))
        return
    table = Table()
    table.add_column("id", no_wrap=True, min_width=15)
    for name in ("twin", "kind", "severity", "state", "ISA-18.2", "opened (UTC)", "acked by", "summary"):
        table.add_column(name, overflow="fold")
    for r in rows:
        sev = r["severity"] + (f" ↑{r['escalation_level']}" if r["escalation_level"] else "")
        table.add_row(
            r["alert_id"],
            r["twin_id"],
            r["kind"] + (" (chattering)" if r["flapping"] else "") + (" (standing)" if r["standing"] else ""),
            f"[{SEVERITY_STYLE[r['severity']]}]{sev}[/]",
            r["state"],
            _isa_label(r),
            r["opened_at"].astimezone(UTC).strftime("%m-%d %H:%M:%S"),
            r["acked_by"] or "",
            r["summary"],
        )
    console.print(table)
    console.print(_count(len(rows), total, offset))


def _names(text: str | None, allowed: tuple[str, ...], option: str) -> list[str] | None:
    """``critical,major`` → the names, each checked; None for no filter."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    wrong = [n for n in names if n not in allowed]
    if wrong or not names:
        err_console.print(f"[red]{option} {text!r}: use one or more of {', '.join(allowed)}, separated by commas[/red]")
        raise typer.Exit(2)
    return names


def _count(shown: int, total: int, offset: int) -> str:
    """``50 of 3017 alert(s) (1-50); next page: --offset 50``, or ``2 alert(s)`` when all are shown."""
    if shown == total and offset == 0:
        return f"{total} alert(s)"
    more = f"; next page: --offset {offset + shown}" if offset + shown < total else ""
    where = f" ({offset + 1}-{offset + shown})" if shown else ""
    return f"{shown} of {total} alert(s){where}{more}"


def _isa_label(r: dict) -> str:
    label = r["isa_state"]
    if r["shelved_until"] is not None:
        label += f" until {r['shelved_until'].astimezone(UTC):%m-%d %H:%M} ({r['shelve_reason']})"
    if r["suppressed_by"]:
        label += f" by {r['suppressed_by']}"
    return label


def _check_by(by: str | None) -> None:
    if by is not None and not by.strip():
        err_console.print("[red]--by: name who acts (kept with the alert), e.g. --by ann, or leave it out[/red]")
        raise typer.Exit(2)


def _subject_and_by(s: Settings, by: str | None) -> tuple[str, str]:
    """(the CLI's subject, who is recorded: ``--by`` or the subject)."""
    subject = cli_subject(s)
    return subject, by or subject


def _refused(exc) -> typer.Exit:
    """:func:`~twinflow.cli.support.refused`, with where to find the ids when there is no such alert."""
    return refused(exc, "; `twinflow alerts list --state all` shows the ids" if exc.status == 404 else "")


def _act(alert_id: str, action: str, by: str | None, *, until: datetime | None = None, note: str = "") -> None:
    from twinflow.alarms.actions import ActionRefused, act

    _check_by(by)
    s = settings_or_exit()
    subject, by = _subject_and_by(s, by)
    store = _store(s)

    def publish(topic: str, key: str, value: bytes) -> None:
        publish_or_exit(s, topic, key, value, f"{action} of {alert_id}")

    try:
        done = act(s, store, publish, alert_id, action, by, until=until, note=note, subject=subject)
    except ActionRefused as exc:
        raise _refused(exc) from None
    finally:
        store.close()
    console.print(done.message)


@alerts_app.command("ack")
def ack(
    alert_id: str = typer.Argument(..., help="Alert id (see `twinflow alerts list`)."),
    by: str | None = typer.Option(None, "--by", help="Who acknowledges it (default: your subject)."),
) -> None:
    """Acknowledge an open alert: someone is on it (stops escalation)."""
    _act(alert_id, "ack", by)


@alerts_app.command("resolve")
def resolve(
    alert_id: str = typer.Argument(..., help="Alert id (see `twinflow alerts list`)."),
    by: str | None = typer.Option(None, "--by", help="Who resolves it (default: your subject)."),
) -> None:
    """Resolve an alert by hand (it would otherwise resolve when its condition clears)."""
    _act(alert_id, "resolve", by)


def _duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``8h`` → a timedelta; clear error otherwise (also for ``0s``, ``-5m``, ``nanh``
    and more days than a date can hold).

    >>> _duration("90s"), _duration("1.5h")
    (datetime.timedelta(seconds=90), datetime.timedelta(seconds=5400))
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        seconds = float(text[:-1]) * units[text[-1]]
        if not seconds > 0:
            raise ValueError(text)
        return timedelta(seconds=seconds)
    except (KeyError, ValueError, IndexError, OverflowError):
        raise typer.BadParameter(
            f"{text!r}: write a positive number and a unit, e.g. 90s, 30m, 8h (at most alerts.rules.max_shelve_s)",
            param_hint="'--for'",
        ) from None


@alerts_app.command("shelve")
def shelve(
    alert_id: str = typer.Argument(..., help="Alert id (see `twinflow alerts list`)."),
    duration: str = typer.Option(..., "--for", help="How long, e.g. 30m, 8h (at most alerts.rules.max_shelve_s)."),
    reason: str = typer.Option(..., "--reason", help="Why (kept with the alert)."),
    by: str | None = typer.Option(None, "--by", help="Who shelves it (default: your subject)."),
) -> None:
    """Shelve an alarm (ISA-18.2): hidden and not escalated until it expires; then, if still active, it is
    annunciated again."""
    _act(alert_id, "shelve", by, until=datetime.now(UTC) + _duration(duration), note=reason)


@alerts_app.command("unshelve")
def unshelve(
    alert_id: str = typer.Argument(..., help="Alert id."),
    by: str | None = typer.Option(None, "--by", help="Who unshelves it (default: your subject)."),
) -> None:
    """End shelving now (an alarm still active is annunciated again)."""
    _act(alert_id, "unshelve", by)


@alerts_app.command("out-of-service")
def out_of_service(
    alert_id: str = typer.Argument(..., help="Alert id: its twin and kind are taken out of service."),
    by: str | None = typer.Option(None, "--by", help="Who (default: your subject)."),
    reason: str = typer.Option("", "--reason", help="Why."),
) -> None:
    """Take an alarm (this alert's twin × kind) out of service: nothing of it opens until returned."""
    _act(alert_id, "out_of_service", by, note=reason)


@alerts_app.command("in-service")
def in_service(
    alert_id: str = typer.Argument(..., help="The alert id it was taken out of service with."),
    by: str | None = typer.Option(None, "--by", help="Who (default: your subject)."),
) -> None:
    """Return an alarm to service."""
    _act(alert_id, "in_service", by)


@alerts_app.command("metrics")
def metrics(
    hours: float = typer.Option(
        24.0, "--hours", min=0.01, max=87_600, help="The period: the last N hours (≤ 10 years)."
    ),
    operators: int = typer.Option(None, "--operators", min=1, help="Operator positions (default alerts.operators)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Alarm-system performance (ISA-18.2): alarms per operator-hour, the busiest 10 minutes, floods."""
    from twinflow.alarms.metrics import alarm_rate

    s = settings_or_exit()
    until = datetime.now(UTC)
    m = alarm_rate(s.postgres.conninfo(), until - timedelta(hours=hours), until, operators or s.alerts.operators)
    if as_json:
        console.print_json(json.dumps(m, default=str))
        return
    console.print(
        f"last {hours:g} h, {m['operators']} operator position(s): {m['annunciated']} alarms annunciated, "
        f"{m['per_operator_hour']:.2f} per operator-hour (ISA-18.2 target ≤ 6 acceptable, ≤ 12 manageable), "
        f"busiest 10 min {m['peak_10min_per_operator']:g} per operator, {m['flood_periods']} flood period(s) "
        "(> 10 per operator in 10 min)"
    )


@alerts_app.command("maintenance")
def maintenance(
    twin_id: str = typer.Argument(..., help="The twin."),
    state: str = typer.Argument(..., help="on (maintenance) or off (normal)."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit trail)."),
    by: str = typer.Option(None, "--by", hidden=True, help="Ignored: who asks is the subject of your signing key."),
    timeout: float = typer.Option(
        30.0, "--timeout", min=0, callback=finite, help="Seconds to wait for the twin flow's verdict (0: do not wait)."
    ),
) -> None:
    """Alias of `twinflow twin mode TWIN maintenance|normal`: no alerts open or escalate in maintenance."""
    from twinflow.cli.twin import send_request

    if state not in ("on", "off"):
        err_console.print(f"[red]state {state!r}: use on or off[/red]")
        raise typer.Exit(2)
    if by is not None:
        err_console.print("note: --by is ignored; the request is signed as the subject of security.key_file")
    send_request(twin_id, {}, mode="maintenance" if state == "on" else "normal", reason=reason, timeout=timeout)


def _outbox(s: Settings):
    from connectors.postgres.webhook_outbox import OutboxStore

    return OutboxStore(s.postgres.conninfo())


def _outbox_or_exit(fn):
    """``fn()``; a database without the outbox table (migrations 0135, 0150) is a message and exit code 1."""
    import psycopg

    try:
        return fn()
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        err_console.print("[red]the database's webhook_outbox table is missing or old: run `twinflow db migrate`[/red]")
        raise typer.Exit(1) from None


@alerts_app.command("deliveries")
def deliveries(
    state: str = typer.Option("all", help="pending, delivered, failed, or all."),
    alert: str = typer.Option(None, "--alert", help="Only this alert's versions."),
    twin: str = typer.Option(None, help="Only this twin's alerts."),
    limit: int = typer.Option(50, min=1, max=1_000_000, help="At most this many (newest first: a page)."),
    offset: int = typer.Option(0, min=0, help="Skip this many first (the next page: --offset 50)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """The webhook's outbox: each alert version queued for alerts.webhook_url, delivered, pending (with
    its attempts, last error and next attempt) or failed (with the reason), and the count per state."""
    from connectors.postgres.webhook_outbox import DELIVERY_STATES, DeliveryQuery

    if state != "all" and state not in DELIVERY_STATES:
        err_console.print(f"[red]--state {state!r}: use one of {', '.join(DELIVERY_STATES)} or all[/red]")
        raise typer.Exit(2)
    store = _outbox(settings_or_exit())
    query = DeliveryQuery(DELIVERY_STATES if state == "all" else (state,), alert, twin, limit, offset)
    try:
        page = _outbox_or_exit(lambda: store.deliveries(query))
    finally:
        store.close()
    if as_json:
        for r in page.rows:
            console.print_json(json.dumps(r, default=str), indent=None)
        return
    for r in page.rows:
        when = r["settled_at"] if r["state"] != "pending" else r["next_attempt_at"]
        label = {"pending": "next attempt", "delivered": "delivered", "failed": "failed"}[r["state"]]
        style = {"pending": "yellow", "delivered": "green", "failed": "bold red"}[r["state"]]
        status = f" HTTP {r['http_status']}" if r["http_status"] else ""
        again = f", queued again by {r['redelivered_by']}" if r["redelivered_by"] else ""
        console.print(
            f"[bold]{r['alert_id']}[/bold] v{r['version']} {r['twin_id']} [{style}]{r['state']}[/]{status}, "
            f"{r['attempts']} attempt(s), {label} {when.astimezone(UTC):%m-%d %H:%M:%S} UTC{again}"
        )
        if r["last_error"]:
            console.print(Padding(r["last_error"], (0, 0, 0, 2)), markup=False)
    shown = len(page.rows)
    where = f" ({offset + 1}-{offset + shown} of {page.total}" if shown and (offset or shown < page.total) else ""
    if where:
        where += f"; next page: --offset {offset + shown})" if offset + shown < page.total else ")"
    console.print(
        f"{shown} shown{where}; in the outbox: "
        + ", ".join(f"{page.counts.get(name, 0)} {name}" for name in DELIVERY_STATES)
        + (" (twinflow alerts redeliver --failed queues the failed ones again)" if page.counts.get("failed") else "")
    )


@alerts_app.command("redeliver")
def redeliver(
    alert_id: str = typer.Argument(None, help="The alert whose failed versions to queue again."),
    version: int = typer.Option(None, "--version", min=1, help="Only this version of the alert."),
    every_failed: bool = typer.Option(False, "--failed", help="Every failed version of every alert."),
    by: str | None = typer.Option(None, "--by", help="Who asks (kept on the outbox rows; default: your subject)."),
) -> None:
    """Queue failed webhook deliveries again (after fixing alerts.webhook_url or the receiver): the running
    alerts flow POSTs them in version order, with a new retention period. Authorized as the other actions
    (`redeliver`; with --failed, by a rule without a twin condition) and audited."""
    from twinflow.alarms.actions import ActionRefused
    from twinflow.alarms.actions import redeliver as queue_again

    if (alert_id is None) == (not every_failed) or (every_failed and version is not None):
        err_console.print("[red]give an ALERT_ID (optionally with --version) or --failed[/red]")
        raise typer.Exit(2)
    _check_by(by)
    s = settings_or_exit()
    subject, who = _subject_and_by(s, by)
    try:
        queued = _outbox_or_exit(lambda: queue_again(s, subject, None if every_failed else alert_id, version, by=who))
    except ActionRefused as exc:
        raise _refused(exc) from None
    if not queued:
        what = "no failed delivery" + ("" if every_failed else f" of {alert_id}" + (f" v{version}" if version else ""))
        err_console.print(f"[red]{what} in the webhook outbox (twinflow alerts deliveries --state failed)[/red]")
        raise typer.Exit(1)
    console.print(f"{len(queued)} version(s) queued again: " + ", ".join(f"{a} v{v}" for a, v in sorted(queued)[:20]))


@alerts_app.command("run")
def run(
    workers: int = typer.Option(1, "-w", "--workers", min=1, help="Worker threads per process."),
    recovery: bool = typer.Option(True, help="Snapshot state for crash recovery."),
    tail: bool = typer.Option(True, help="Keep running at the end of the topics."),
    reorder_window: float | None = typer.Option(
        None,
        "--reorder-window",
        min=0,
        callback=finite,
        help="Cross-topic reorder window in seconds (alerts.rules.reorder_window_s); for a replay "
        "from the beginning without recovery use --no-tail and a window covering the replayed span.",
    ),
) -> None:
    """Run the alerts flow (same as `twinflow run alerts`)."""
    import os

    from twinflow.cli.run import run_flow

    if reorder_window is not None:
        os.environ["TWINFLOW_ALERTS__RULES__REORDER_WINDOW_S"] = str(reorder_window)
    run_flow("alerts", workers=workers, recovery=recovery, tail=tail)
