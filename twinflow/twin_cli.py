"""``twinflow twin …``: set desired values, show a twin's state (now or as of a time), run the flow."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from twinflow.cli_support import err_console, settings_or_exit
from twinflow.settings import PROJECT_ROOT, Settings

twin_app = typer.Typer(help="Twin state: desired values, current and past state.", no_args_is_help=True)
console = Console()

QUERIES_DIR = PROJECT_ROOT / "sql" / "queries"
CURRENT_SQL = "SELECT * FROM twin_state_current WHERE twin_id = %(twin_id)s"


def named_query(name: str) -> str:
    """The text of ``sql/queries/<name>.sql``."""
    return (QUERIES_DIR / f"{name}.sql").read_text()


def parse_assignments(pairs: list[str]) -> dict[str, float | bool]:
    """``["speed=1200", "run=true"]`` → ``{"speed": 1200.0, "run": True}``; clear errors otherwise."""
    from operators.commands import parse_value

    values: dict[str, float | bool] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{pair!r}: write param=value, e.g. speed=1200")
        try:
            values[name.strip()] = parse_value(raw)
        except ValueError:
            raise typer.BadParameter(f"{pair!r}: {raw!r} is not a number nor true/false") from None
    return values


def produce_desired(
    settings: Settings,
    twin_id: str,
    values: dict[str, float | bool],
    *,
    expect_version: int | None = None,
    author: str | None = None,
    reason: str = "",
    mode: str | None = None,
    issued_at: datetime | None = None,
) -> bytes:
    """Validate and produce one ``twin.desired`` record (key twin_id); returns the bytes sent."""
    from connectors.kafka.clients import make_producer
    from operators.twin_records import DesiredUpdate, decode_desired, encode

    upd = DesiredUpdate(
        twin_id,
        values,
        expected_version=expect_version,
        author=author or os.environ.get("USER", "unknown"),
        reason=reason,
        issued_at=issued_at or datetime.now(UTC),
        mode=mode,  # type: ignore[arg-type]
    )
    payload = encode(upd)
    decode_desired(payload, twin_id.encode())  # the same validation the flow applies
    producer = make_producer(settings)
    producer.produce(settings.twin.desired_topic, key=twin_id.encode(), value=payload)
    if producer.flush(30) != 0:
        raise RuntimeError(
            f"Kafka did not acknowledge the desired update within 30 s ({settings.kafka.bootstrap_servers})"
        )
    return payload


def wait_for_outcome(
    settings: Settings, twin_id: str, author: str, send: Callable[[], None], timeout: float
) -> tuple[str, dict[str, Any]] | None:
    """Call ``send`` and wait for the flow's answer to it: ``("applied", state)``, ``("rejected", alert)``.

    Reads ``twin.state`` and ``twin.alerts`` from their current ends, so only answers produced after
    the update count; an update is recognised by twin_id and author. None on timeout.
    """
    import time

    import msgspec
    from confluent_kafka import Consumer, TopicPartition

    from connectors.kafka.clients import client_config

    tw = settings.twin
    consumer = Consumer(
        client_config(settings, **{"group.id": f"twinflow-cli-{os.getpid()}", "enable.auto.commit": False})
    )
    try:
        parts = []
        for topic in (tw.state_topic, tw.alerts_topic):
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            for p in meta.partitions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                parts.append(TopicPartition(topic, p, high))
        consumer.assign(parts)
        send()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() or msg.key() != twin_id.encode():
                continue
            value = msgspec.json.decode(msg.value())
            if msg.topic() == tw.alerts_topic:
                if value.get("kind") == "desired_rejected" and value["detail"].get("author") == author:
                    return "rejected", value
            elif value.get("change", {}).get("cause") == "desired" and value["change"].get("author") == author:
                return "applied", value
        return None
    finally:
        consumer.close()


def load_state(settings: Settings, twin_id: str, at: datetime | None = None) -> dict[str, Any] | None:
    """The twin's newest state, or its state as of ``at`` (``sql/queries/twin_state_at.sql``)."""
    import psycopg
    from psycopg.rows import dict_row

    sql = CURRENT_SQL if at is None else named_query("twin_state_at")
    with psycopg.connect(settings.postgres.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, {"twin_id": twin_id, "at": at}).fetchone()


@twin_app.command("set-desired")
def set_desired(
    twin_id: str = typer.Argument(..., help="The twin, e.g. pump-001."),
    assignments: Annotated[list[str] | None, typer.Argument(help="param=value pairs, e.g. speed=1200.")] = None,
    expect_version: int = typer.Option(None, "--expect-version", help="Reject unless the twin is at this version."),
    author: str = typer.Option(None, "--author", help="Who asks (default: $USER)."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit trail)."),
    mode: str = typer.Option(None, "--mode", help="Operator mode: normal, maintenance or simulating."),
    wait: float = typer.Option(0, "--wait", help="Wait up to this many seconds for the flow's answer."),
) -> None:
    """Send desired values (and optionally a mode) to twin.desired."""
    from operators.envelope import Rejected

    if mode is not None and mode not in ("normal", "maintenance", "simulating"):
        raise typer.BadParameter(f"--mode {mode!r}: use normal, maintenance or simulating")
    values = parse_assignments(assignments or [])
    if not values and mode is None:
        raise typer.BadParameter("give at least one param=value or --mode")
    s = settings_or_exit()
    author = author or os.environ.get("USER", "unknown")

    def send() -> None:
        produce_desired(s, twin_id, values, expect_version=expect_version, author=author, reason=reason, mode=mode)

    try:
        outcome = wait_for_outcome(s, twin_id, author, send, wait) if wait > 0 else send()
    except Rejected as exc:
        err_console.print(f"[red]not sent: {exc}[/red]")
        raise typer.Exit(2) from None
    shown = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else f'{v:g}'}" for k, v in values.items())
    shown = shown or f"mode={mode}"
    console.print(f"sent to {s.twin.desired_topic}: {twin_id} {shown}")
    if wait <= 0:
        return
    if outcome is None:
        err_console.print(f"no answer within {wait:g} s (is the twin flow running? were the values already set?)")
        raise typer.Exit(4)
    kind, record = outcome
    if kind == "rejected":
        err_console.print(f"[red]rejected: {record['detail']['reason']}[/red]")
        raise typer.Exit(3)
    console.print(f"applied: {twin_id} is at version {record['version']} ({record['status']})")


def _parse_time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"--at {text!r}: use ISO 8601, e.g. 2026-11-25T08:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


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
        f"[bold]{row['twin_id']}[/bold] version {row['version']} at {row['event_time']} — "
        f"{row['status']} (mode {row['mode']}, consistency {row['consistency_score']:.3f}, "
        f"sync latency {row['sync_latency_ms']} ms, last sync {row['last_sync_time']})"
    )
    table = Table("parameter", "reported", "desired", "delta", "in sync", "command")
    names = sorted(set(row["reported"]) | set(row["desired"]))
    for name in names:
        rep, des = row["reported"].get(name), row["desired"].get(name)
        cmd = row["commands"].get(name)
        table.add_row(
            name,
            "" if rep is None else f"{rep['value']:g}",
            "" if des is None else f"{des['value']:g}",
            "" if name not in row["delta"] else f"{row['delta'][name]:g}",
            "no" if name in row["conflicts"] else "yes",
            "" if cmd is None else f"{cmd['status']} (attempt {cmd['attempt']})",
        )
    console.print(table)
    console.print(f"last change: {json.dumps(row['change'], default=str)}")


@twin_app.command("run")
def run(
    workers: int = typer.Option(1, "-w", "--workers", help="Worker threads per process."),
    recovery: bool = typer.Option(True, help="Snapshot state for crash recovery."),
    tail: bool = typer.Option(True, help="Keep running at the end of the topics."),
) -> None:
    """Run the twin flow (same as `twinflow run twin`)."""
    from twinflow.cli import run as run_flow

    run_flow("twin", workers=workers, processes=1, process_id=None, addresses=None, recovery=recovery, tail=tail)
