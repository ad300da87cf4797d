"""``twinflow replay`` and ``twinflow model …``: backtests on CSV history and per-twin model control
(reset, rebaseline, failure/repair events), each authorized by the policy file's ``models = [...]``
rules for this CLI's subject and the decision audited before anything is sent (twinflow.authority;
exit 3 when denied, 1 when it cannot be audited)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from twinflow.cli.support import cli_subject, err_console, publish_or_exit, refused, settings_or_exit

model_app = typer.Typer(help="Online models of the twins.", no_args_is_help=True)


class ModelKind(StrEnum):
    none = "none"
    rul = "rul"


def replay(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="CSV files (`;` or `,`).")],
    time_col: Annotated[str, typer.Option("--time-col", help="Timestamp or integer (e.g. cycle) column.")],
    time_format: Annotated[
        str,
        typer.Option(
            "--time-format",
            help="How to read the time column: auto (timestamps, day first with slashes; numbers in Unix"
            " time's range are Unix time, others cycles), cycles, epoch_s, epoch_ms, epoch_us, epoch_ns, or a"
            " strftime format (e.g. '%m/%d/%Y %I:%M:%S %p'). Timestamps without a zone are UTC.",
        ),
    ] = "auto",
    id_col: Annotated[str | None, typer.Option("--id-col", help="Column naming the twin in a file.")] = None,
    twin: Annotated[
        str | None,
        typer.Option(
            "--twin",
            help="The twin_id of files without --id-col: the output's id, and the twin whose rules apply"
            " (the ml.ranges rules by twin glob), as live.",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Numeric column that is not a sensor (repeat).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output CSV (default: standard output).")] = None,
    model: Annotated[
        ModelKind | None, typer.Option("--model", help="Failure model: `rul` adds rul, failure_probability.")
    ] = None,
    fit: Annotated[
        list[Path] | None,
        typer.Option(exists=True, dir_okay=False, help="Run-to-failure history (last row per id = failure)."),
    ] = None,
) -> None:
    """Replay history through the live operators, row by row in time order (no look-ahead).

    Output: one row per input row with file, id, time, anomaly_score, is_anomaly, health, kind,
    sensors (plus rul, failure_probability with a failure model). Each file/id is its own twin.
    """
    from connectors.csv_history import replay_files
    from operators.ml.replay import ReplayError

    s = settings_or_exit()
    cfg = s.ml.model_config_for(failure=(model or s.ml.model) == "rul" or bool(fit), forecasts=False)
    try:
        table = replay_files(
            files,
            time_col,
            id_col,
            exclude or [],
            cfg,
            fit=fit or [],
            ranges=tuple(s.ml.ranges),
            note=_note,
            time_format=time_format,
            twin=twin or "",
        )
    except ReplayError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if out is None:
        table.write_csv(sys.stdout)
    else:
        table.write_csv(out)
        flagged = int(table["is_anomaly"].sum()) if table.height else 0
        err_console.print(f"wrote {table.height} rows ({flagged} anomalous) to {out}")


def _note(text: str) -> None:
    err_console.print(f"[yellow]{text}[/yellow]", highlight=False, soft_wrap=True)


@model_app.command("reset")
def model_reset(
    twin: str = typer.Argument(..., help="twin_id whose models start afresh."),
    timeout: float = typer.Option(30.0, min=1, max=3600, help="Seconds to wait for Kafka's acknowledgement."),
) -> None:
    """Ask the live flow to forget what TWIN's models learned (a record on twin.model_control; authorized by
    the policy's `models` rules and audited first)."""
    import msgspec

    from operators.records.model_control import ControlRecord, encode

    s = settings_or_exit()
    actor = cli_subject(s)
    try:
        rec = ControlRecord(
            twin_id=twin,
            action="reset",
            requested_at=datetime.now(UTC).isoformat(),
            requested_by=actor,
        )
        rec = msgspec.convert(msgspec.to_builtins(rec), ControlRecord)  # validates the twin_id pattern
    except msgspec.ValidationError as exc:
        err_console.print(f"[red]invalid twin_id {twin!r}: {exc}[/red]")
        raise typer.Exit(2) from None
    if s.security.twin_registry is not None:
        from connectors.config.security_files import load_twin_registry
        from twinflow.settings import ConfigError

        try:
            known = load_twin_registry(s.security.twin_registry).known(twin)
        except ConfigError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        if not known:
            err_console.print(f"[red]unknown twin {twin!r}: not in the twin registry {s.security.twin_registry}[/red]")
            raise typer.Exit(1)
    _authorized(s, actor, "reset", twin, {})
    _publish(s, s.topics.model_control, twin, encode(rec), timeout, "reset")
    err_console.print(f"reset requested for {twin} on {s.topics.model_control}")


@model_app.command("rebaseline")
def model_rebaseline(
    twin: Annotated[str, typer.Argument(help="twin_id whose healthy reference is learned again.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required; kept in the audit trail).")],
    sensor: Annotated[
        str | None, typer.Option("--sensor", help="Only this sensor's reference (default: every sensor).")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=1, max=3600, help="Seconds to wait for Kafka's acknowledgement.")
    ] = 30.0,
) -> None:
    """Learn TWIN's healthy reference again (after a deliberate change such as a replaced part).

    The condition monitor compares the twin with the reference it learned at commissioning; this
    is the only way besides a `repair` event to change it. The request is first authorized by the
    policy's `models` rules and the decision appended to the hash-chained audit trail (desired_audit,
    `twinflow audit verify`), then sent on twin.model_control; nothing is sent if it is denied (exit 3)
    or cannot be audited (exit 1).
    """
    import msgspec

    from operators.records.model_control import ControlRecord, encode

    if not reason.strip():
        err_console.print("[red]--reason must say why the reference changes (it is kept in the audit trail)[/red]")
        raise typer.Exit(2)
    s = settings_or_exit()
    actor = cli_subject(s)
    try:
        rec = ControlRecord(
            twin_id=twin,
            action="rebaseline",
            requested_at=datetime.now(UTC).isoformat(),
            requested_by=actor,
            sensor=sensor,
            reason=reason,
        )
        rec = msgspec.convert(msgspec.to_builtins(rec), ControlRecord)  # validates twin_id, sensor, reason
    except msgspec.ValidationError as exc:
        err_console.print(f"[red]invalid rebaseline request for {twin!r}: {exc}[/red]")
        raise typer.Exit(2) from None
    allowed = _authorized(s, actor, "rebaseline", twin, {"sensor": sensor, "reason": reason})
    _publish(s, s.topics.model_control, twin, encode(rec), timeout, "rebaseline")
    what = f"sensor {sensor} of {twin}" if sensor else twin
    err_console.print(f"rebaseline of {what} requested on {s.topics.model_control} ({allowed}; audited)")


def _authorized(s, subject: str, action: str, twin: str, request: dict) -> str:
    """Decide ``action`` on ``twin``'s models for ``subject`` by the policy and audit the decision
    (twinflow.authority); its detail when allowed (e.g. ``reset by rule ops``), else exit 3 (denied) or
    1 (it cannot be audited): nothing is sent then."""
    from twinflow.authority import ActionRefused, authorize

    try:
        return authorize(s, subject, action, twin, request, kind="models").detail
    except ActionRefused as exc:
        raise refused(exc, "; is the database up?" if exc.status == 503 else "") from None


def _publish(s, topic: str, twin: str, value: bytes, timeout: float, what: str) -> None:
    """Produce one record keyed by ``twin`` (creating the topic if missing); exit 1 unless acknowledged
    within ``timeout`` seconds."""
    from connectors.kafka.clients import ensure_topics, quiet_logger, topic_specs

    ensure_topics(s, [spec for spec in topic_specs(s) if spec.name == topic], timeout=timeout, logger=quiet_logger())
    publish_or_exit(s, topic, twin, value, what, timeout)


class EventKind(StrEnum):
    failure = "failure"
    repair = "repair"


@model_app.command("event")
def model_event(
    twin: Annotated[str, typer.Argument(help="twin_id that failed or was repaired.")],
    kind: Annotated[
        EventKind, typer.Option("--kind", help="failure: labels the twin's history; repair: a new life, no label.")
    ],
    at: Annotated[
        str | None,
        typer.Option("--at", help="When, ISO 8601 (e.g. 2026-11-25T08:00:00Z; no zone = local time). Default: now."),
    ] = None,
    note: Annotated[str, typer.Option("--note", help="Free text kept with the event (e.g. the work order).")] = "",
    timeout: Annotated[
        float, typer.Option(min=1, max=3600, help="Seconds to wait for Kafka's acknowledgement.")
    ] = 30.0,
) -> None:
    """Record a failure or repair of TWIN on twin.events (the failure model's labels; docs/ml.md); authorized
    by the policy's `models` rules (`failure`, `repair`) and audited first."""
    import msgspec

    from operators.records.twin_events import TwinEvent, encode

    s = settings_or_exit()
    try:
        when = datetime.fromisoformat(at) if at else datetime.now(UTC)
    except ValueError:
        err_console.print(f"[red]--at {at!r} is not an ISO 8601 time; use e.g. 2026-11-25T08:00:00Z[/red]")
        raise typer.Exit(2) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time zone
    actor = cli_subject(s)
    try:
        rec = TwinEvent(twin_id=twin, kind=kind.value, time=when, note=note, author=actor)
        rec = msgspec.convert(msgspec.to_builtins(rec), TwinEvent)  # validates the twin_id and lengths
    except msgspec.ValidationError as exc:
        err_console.print(f"[red]invalid event for {twin!r}: {exc}[/red]")
        raise typer.Exit(2) from None
    _authorized(s, actor, kind.value, twin, {"at": when.isoformat(), "note": note})
    _publish(s, s.topics.events, twin, encode(rec), timeout, kind.value)
    err_console.print(f"{kind.value} of {twin} at {when.isoformat()} recorded on {s.topics.events}")
