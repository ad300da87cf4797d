"""Fault-injection harness: feed readings into a private stack, break things, count rows.

A :class:`Run` owns one test's topics, twin prefix and child processes (flow, bridge);
:class:`KafkaFeeder` and :class:`MqttFeeder` produce numbered envelopes at a steady rate in a
background thread and count what the broker acknowledged. Zero loss and zero duplicates
means: rows in the database == acknowledged envelopes × sensors, all distinct.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import orjson
import paho.mqtt.client as mqtt
import psycopg
from confluent_kafka import Producer

from connectors.kafka.clients import ensure_topics, producer_config
from connectors.mqtt.security import configure_client
from tests.private_stack import PrivateStack
from tests.process_helpers import start_twinflow, stop, wait_for_log
from twinflow.settings import MqttSettings, Settings, Topics

SENSORS = ("rpm", "temp_c")


def envelope(twin: str, seq: int, t0: datetime) -> bytes:
    return orjson.dumps(
        {
            "v": 1,
            "twin_id": twin,
            "ts": (t0 + timedelta(milliseconds=seq)).isoformat(),
            "seq": seq,
            "source": "fault",
            "readings": {s: float(seq) + i for i, s in enumerate(SENSORS)},
        }
    )


@dataclass
class Run:
    stack: PrivateStack
    dir: Path
    prefix: str
    settings: Settings
    env: dict[str, str]
    log_path: Path
    log: IO[bytes]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @classmethod
    def create(cls, stack: PrivateStack, directory: Path, name: str) -> Run:
        prefix = f"{name}{uuid.uuid4().hex[:6]}"
        topics = Topics(raw=f"telemetry.{prefix}.raw", dlq=f"telemetry.{prefix}.dlq", raw_partitions=2)
        admin = stack.admin.model_copy(update={"topics": topics})
        ensure_topics(admin)
        settings = stack.app.model_copy(update={"topics": topics})
        env = stack.app_env(
            TWINFLOW_TOPICS__RAW=topics.raw,
            TWINFLOW_TOPICS__DLQ=topics.dlq,
            TWINFLOW_TOPICS__RAW_PARTITIONS="2",
            TWINFLOW_MQTT__CLIENT_ID=f"bridge-{prefix}",
            TWINFLOW_FLOW__RECOVERY_DIR=str(directory / "recovery"),
            TWINFLOW_FLOW__SNAPSHOT_INTERVAL_S="1",
        )
        log_path = directory / "procs.log"
        return cls(stack, directory, prefix, settings, env, log_path, open(log_path, "ab"))

    # ------------------------------------------------------------------ processes
    def start_flow(self, recovery: bool) -> subprocess.Popen:
        self.procs["flow"] = start_twinflow(["run", "--recovery" if recovery else "--no-recovery"], self.env, self.log)
        return self.procs["flow"]

    def start_bridge(self) -> subprocess.Popen:
        self.procs["bridge"] = start_twinflow(["bridge", "mqtt"], self.env, self.log)
        wait_for_log(self.log_path, b"subscribed", self.procs["bridge"], timeout=60)
        return self.procs["bridge"]

    def kill(self, name: str) -> None:
        """kill -9 the process (group): no shutdown, no flush, no final snapshot."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def close(self) -> None:
        for proc in self.procs.values():
            stop(proc)
        self.log.close()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    # ------------------------------------------------------------------ database
    def rows(self) -> tuple[int, int]:
        """(rows, distinct readings) of this run's twins."""
        with psycopg.connect(self.stack.admin.postgres.conninfo(), autocommit=True) as db:
            return db.execute(
                "SELECT count(*), count(DISTINCT (twin_id, sensor, ts)) FROM telemetry WHERE twin_id LIKE %s",
                (self.prefix + "-%",),
            ).fetchone()

    def wait_rows(self, expected: int, timeout: float = 180) -> float:
        """Wait until ``expected`` rows exist; returns the monotonic time they did."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            try:
                last = self.rows()[0]
            except psycopg.OperationalError:
                last = -1
            if last >= expected:
                return time.monotonic()
            time.sleep(0.3)
        raise AssertionError(f"{last} of {expected} rows after {timeout} s\n{self.logs()}")


class Feeder(threading.Thread):
    """Produces ``total`` envelopes for ``twins`` twins at ``rate`` per second."""

    def __init__(self, run: Run, twins: int, total: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.run_ = run
        self.twins = [f"{run.prefix}-{i:03d}" for i in range(twins)]
        self.total = total
        self.rate = rate
        self.t0 = datetime.now(UTC) - timedelta(hours=1)
        self.sent = 0
        self.acked = 0
        self.errors: list[str] = []

    def messages(self):
        for i in range(self.total):
            twin = self.twins[i % len(self.twins)]
            yield twin, envelope(twin, i // len(self.twins), self.t0)

    def pace(self, i: int, started: float) -> None:
        ahead = started + i / self.rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)

    @property
    def expected_rows(self) -> int:
        return self.acked * len(SENSORS)


class KafkaFeeder(Feeder):
    def run(self) -> None:
        p = Producer(producer_config(self.run_.settings))

        def delivered(err, _msg) -> None:
            if err is None:
                self.acked += 1
            else:
                self.errors.append(str(err))

        started = time.monotonic()
        for i, (twin, value) in enumerate(self.messages()):
            self.pace(i, started)
            while True:
                try:
                    p.produce(self.run_.settings.topics.raw, key=twin.encode(), value=value, on_delivery=delivered)
                    break
                except BufferError:
                    p.poll(0.1)
            self.sent += 1
            p.poll(0)
        remaining = p.flush(300)
        if remaining:
            self.errors.append(f"{remaining} envelopes unacknowledged")


class MqttFeeder(Feeder):
    """A device-like publisher: QoS 1, persistent session, auto-reconnect; counts PUBACKs."""

    def __init__(self, run: Run, twins: int, total: int, rate: float, ms: MqttSettings) -> None:
        super().__init__(run, twins, total, rate)
        self.ms = ms

    def run(self) -> None:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{self.run_.prefix}", clean_session=False)
        configure_client(c, self.ms)
        c.reconnect_delay_set(min_delay=0.2, max_delay=1)
        c.max_queued_messages_set(0)  # queue without limit while the broker is away
        c.max_inflight_messages_set(1000)
        acked = set()
        c.on_publish = lambda _c, _u, mid, _rc, _p: acked.add(mid)
        c.connect(self.ms.host, self.ms.port, keepalive=5)
        c.loop_start()
        infos = []
        started = time.monotonic()
        for i, (twin, value) in enumerate(self.messages()):
            self.pace(i, started)
            infos.append(c.publish(f"twinflow/{twin}/telemetry", value, qos=1))
            self.sent += 1
        deadline = time.monotonic() + 120
        while len(acked) < len(infos) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.acked = sum(1 for info in infos if info.mid in acked)
        if self.acked < len(infos):
            self.errors.append(f"{len(infos) - self.acked} publishes unacknowledged")
        c.disconnect()
        c.loop_stop()
