"""`twinflow demo`: a publisher → MQTT → Kafka → flow → PostgreSQL run with live progress.

Starts the MQTT bridge and the telemetry flow as child processes, publishes
readings for a set of demo twins (plus a few malformed messages, to show the
dead-letter path) and shows what lands in the database; stops everything it
started at the end, and prints a summary per twin.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
from rich.console import Console
from rich.live import Live
from rich.table import Table

from connectors.kafka.clients import client_config, delete_topics, ensure_topics
from connectors.stopping import STOP_WITHIN_S, check_stop, stop_on_signals, stop_with_parent
from twinflow.settings import Settings

MALFORMED = [b"{not json", b'{"readings": {"rpm": "fast"}}', b"\xff\xfe\x00", b"[]"]


def _reading(i: int, t: float, twin: int) -> dict:
    rpm = 1450 + 40 * math.sin(t / 7 + twin) + random.gauss(0, 3)
    return {
        "rpm": round(rpm, 2),
        "flow_m3h": round(rpm / 1450 * 120 + random.gauss(0, 0.5), 3),
        "temp_c": round(60 + 5 * math.sin(t / 60) + random.gauss(0, 0.2), 2),
        "vibration_mm_s": round(abs(random.gauss(2.0, 0.3)), 3),
        "pressure_bar": round((rpm / 1450) ** 2 * 4.0 + random.gauss(0, 0.02), 3),
    }


def _spawn(args: list[str], env: dict[str, str], log_path: str) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen(
        args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=stop_with_parent
    )


def _wait_for_line(log: Path, needle: bytes, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until a child process logs ``needle`` (e.g. the bridge's subscription)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited early; see {log}")
        if log.exists() and needle in log.read_bytes():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{proc.args} did not report {needle!r} within {timeout} s; see {log}")


def _stop(proc: subprocess.Popen, timeout: float = STOP_WITHIN_S + 1) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def dead_letters_since(settings: Settings, since: datetime, prefix: str) -> dict[str, int]:
    """Count this run's dead letters (keys starting with ``prefix``) per reason."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    topic = settings.topics.dlq
    c = Consumer(
        client_config(
            settings,
            **{
                "group.id": f"demo-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
        )
    )
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    stamp = int(since.timestamp() * 1000)
    offsets = c.offsets_for_times([TopicPartition(topic, p, stamp) for p in parts], timeout=10)
    c.assign(offsets)
    reasons: dict[str, int] = {}
    eof: set[int] = set()
    deadline = time.monotonic() + 20
    while len(eof) < len(parts) and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                eof.add(msg.partition())
            continue
        if (msg.key() or b"").startswith(prefix.encode()):
            reason = dict(msg.headers() or []).get("dlq.reason", b"?").decode()
            reasons[reason] = reasons.get(reason, 0) + 1
    c.close()
    return reasons


def run_demo(settings: Settings, *, duration: float, twins: int, rate: float, console: Console) -> int:
    """Exit code 0 when every reading landed once (or the demo was stopped by SIGTERM/SIGINT)."""
    stop = stop_on_signals()
    check_stop("starting the demo")
    run_id = uuid.uuid4().hex[:6]
    prefix = f"demo-{run_id}"
    # A topic of its own, so the demo never waits behind older data in telemetry.raw.
    raw_topic = f"{settings.topics.raw}.{prefix}"
    settings = settings.model_copy(update={"topics": settings.topics.model_copy(update={"raw": raw_topic})})
    ensure_topics(settings)
    logs = settings.stack.dir / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TWINFLOW_MQTT__CLIENT_ID": f"twinflow-demo-{run_id}",
        "TWINFLOW_TOPICS__RAW": raw_topic,
    }
    twin_ids = [f"{prefix}-pump-{n:02d}" for n in range(twins)]
    published = dict.fromkeys(twin_ids, 0)
    start = datetime.now(UTC)

    with ExitStack() as stack, psycopg.connect(settings.postgres.conninfo(), autocommit=True) as db:
        bridge = _spawn([sys.executable, "-m", "twinflow.cli.main", "bridge", "mqtt"], env, str(logs / "bridge.log"))
        stack.callback(_stop, bridge)
        flow = _spawn([sys.executable, "-m", "twinflow.cli.main", "run", "--no-recovery"], env, str(logs / "flow.log"))
        stack.callback(_stop, flow)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"demo-pub-{run_id}")
        client.connect(settings.mqtt.host, settings.mqtt.port)
        client.loop_start()
        stack.callback(client.loop_stop)
        _wait_for_line(logs / "bridge.log", b"subscribed to", bridge)

        def landed() -> tuple[int, int]:
            row = db.execute(
                "SELECT count(*), count(DISTINCT (twin_id, seq)) FROM telemetry WHERE twin_id LIKE %s AND ts >= %s",
                (prefix + "-%", start),
            ).fetchone()
            return row[0], row[1]

        def table(elapsed: float) -> Table:
            values, msgs = landed()
            sent = sum(published.values())
            t = Table(title=f"twinflow demo {prefix} — {elapsed:4.0f}/{duration:.0f} s")
            for col in ("published msgs", "landed msgs", "landed values", "malformed → DLQ"):
                t.add_column(col, justify="right")
            t.add_row(str(sent), str(msgs), str(values), str(malformed_sent))
            return t

        interval = 1.0 / rate
        seq = 0
        malformed_sent = 0
        t0 = time.monotonic()
        last_sample = datetime.now(UTC)
        with Live(table(0), console=console, refresh_per_second=2) as live:
            next_tick = t0
            last_draw = t0
            while (now := time.monotonic()) - t0 < duration and not stop.is_set():
                seq += 1
                # The device clock: strictly rising, so each seq has its own timestamp.
                sample_at = max(datetime.now(UTC), last_sample + timedelta(milliseconds=1))
                last_sample = sample_at
                ts = sample_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
                for n, twin in enumerate(twin_ids):
                    payload = {"ts": ts, "seq": seq, "readings": _reading(seq, now - t0, n)}
                    client.publish(f"twinflow/{twin}/telemetry", orjson.dumps(payload), qos=1)
                    published[twin] += 1
                if seq % max(1, int(rate * 10)) == 0:
                    bad = MALFORMED[malformed_sent % len(MALFORMED)]
                    client.publish(f"twinflow/{twin_ids[0]}/telemetry", bad, qos=1)
                    malformed_sent += 1
                if now - last_draw > 0.5:
                    live.update(table(now - t0))
                    last_draw = now
                next_tick += interval
                time.sleep(max(0.0, next_tick - time.monotonic()))
            # Drain: wait until every published message has landed (or 60 s).
            sent = sum(published.values())
            deadline = time.monotonic() + 60
            while landed()[1] < sent and time.monotonic() < deadline and not stop.is_set():
                live.update(table(time.monotonic() - t0))
                time.sleep(0.5)
            live.update(table(time.monotonic() - t0))

        rows = db.execute(
            "SELECT twin_id, count(DISTINCT seq), count(*), min(ts), max(ts), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - ts)) "
            "FROM telemetry WHERE twin_id LIKE %s AND ts >= %s GROUP BY twin_id ORDER BY twin_id",
            (prefix + "-%", start),
        ).fetchall()

    summary = Table(title="what arrived in PostgreSQL (table telemetry)")
    summary.add_column("twin_id", no_wrap=True)
    for col in ("published", "landed", "values", "span s", "median lag s"):
        summary.add_column(col, justify="right")
    lost = 0
    by_twin = {r[0]: r for r in rows}
    for twin in twin_ids:
        r = by_twin.get(twin, (twin, 0, 0, None, None, None))
        lost += published[twin] - r[1]
        summary.add_row(
            twin,
            str(published[twin]),
            str(r[1]),
            str(r[2]),
            f"{(r[4] - r[3]).total_seconds():.1f}" if r[3] else "-",
            f"{r[5]:.3f}" if r[5] is not None else "-",
        )
    delete_topics(settings, [raw_topic])
    console.print(summary)
    reasons = dead_letters_since(settings, start, prefix)
    console.print(
        f"{malformed_sent} malformed messages sent; found in {settings.topics.dlq}: "
        + (", ".join(f"{n} × {r}" for r, n in sorted(reasons.items())) or "none")
    )
    console.print(f"logs in {logs}. The stack keeps running: `twinflow stack down` stops it.")
    if stop.is_set():
        console.print("demo stopped by signal: the bridge and the flow were stopped, no verdict")
        return 0
    if sum(reasons.values()) != malformed_sent:
        console.print("[red]the dead-letter topic does not hold every malformed message[/red]")
        return 1
    if lost:
        console.print(f"[red]{lost} messages did not land within the drain timeout[/red]")
        return 1
    console.print("[green]every published reading landed exactly once[/green]")
    return 0
