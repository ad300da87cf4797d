"""Fault-injection harness: feed readings into a private stack, break things, count what was written.

A :class:`Run` owns one test's topics, twin prefix and child processes (flows, bridge);
:class:`KafkaFeeder` and :class:`MqttFeeder` produce numbered envelopes at a steady rate in a
background thread and count what the broker acknowledged. The readings follow a :class:`Signal`:
steady values with a deterministic fault (values far out of their range for a stretch) on some
twins, so a run has known anomaly and alert episodes.

Two flows can be run: ``telemetry`` (ingest only; zero loss and zero duplicates means rows in the
database == acknowledged envelopes × sensors, all distinct) and ``pipeline`` (the fused pipeline
and the alerts flow, the product's default: every output is compared with what a fault-free run
writes, :mod:`tests.faults.outputs`). A pipeline run gets topics of its own (every topic, not only
``telemetry.raw``), shorter alert timings (``ALERT_ENV``) and Bytewax recovery for both flows.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO
from unittest import mock

import orjson
import paho.mqtt.client as mqtt
import psycopg
from confluent_kafka import Producer

from connectors.kafka.clients import ensure_topics, producer_config, topic_specs
from connectors.mqtt.security import configure_client
from tests.faults.outputs import Expected, Found, counts, observe
from tests.kafka_helpers import read_topic
from tests.private_stack import PrivateStack
from tests.process_helpers import start_twinflow, stop, wait_for_log
from twinflow.demo.plant import topic_env
from twinflow.settings import MqttSettings, Settings, load_settings

SENSORS = ("rpm", "temp_c")
FLOWS = ("pipeline", "telemetry")
# Alert timings of a pipeline run. Escalation off: when an escalation fires depends on the twin's
# clock, which records of other kinds move, so it depends on how the alerts flow interleaves its
# input topics (beyond the reorder window, docs/alerts.md); every other transition depends only on
# the records of its own kind, in order. A short reorder window: the last records are applied
# a few seconds after the feed ends instead of 30.
ALERT_ENV = {
    "TWINFLOW_ALERTS__RULES__ESCALATE_AFTER_S": "0",
    "TWINFLOW_ALERTS__RULES__REORDER_WINDOW_S": "5",
    # An anomaly resolves 60 s (not 300 s) of event time after its scores fall: ~300 readings before
    # a twin's feed ends, so a broker restart that redelivers a stretch of in-fault readings late
    # (each restarts the cool-down) still leaves an episode that opens and resolves.
    "TWINFLOW_ALERTS__RULES__ANOMALY__COOL_DOWN_S": "60",
}


@dataclass(frozen=True)
class Signal:
    """Readings per twin (by its index in the feeder) and seq: rpm and temperature that vary a little,
    one reading every ``period_s`` of event time; twins whose index is a multiple of ``faulty_every``
    step far out of range (rpm −600, temperature +150) for ``fault_len`` readings from ``fault_at``,
    again every ``fault_every`` readings: an anomaly episode with its alerts."""

    period_s: float = 1.0
    faulty_every: int = 5
    fault_at: int = 600
    fault_len: int = 100
    fault_every: int = 1000

    def in_fault(self, index: int, seq: int) -> bool:
        if index % self.faulty_every or seq < self.fault_at:
            return False
        return (seq - self.fault_at) % self.fault_every < self.fault_len

    def readings(self, index: int, seq: int) -> dict[str, float]:
        noise = ((seq * 2654435761 + index * 97) % 1009) / 1009 - 0.5
        rpm = 1500.0 + 20.0 * math.sin(seq / 7.0 + index) + 2.0 * noise
        temp = 60.0 + 2.0 * math.sin(seq / 50.0 + index / 3.0) + 0.1 * noise
        if self.in_fault(index, seq):
            rpm, temp = rpm - 600.0, temp + 150.0
        return {"rpm": round(rpm, 3), "temp_c": round(temp, 3)}

    def envelope(self, twin: str, index: int, seq: int, t0: datetime) -> bytes:
        return orjson.dumps(
            {
                "v": 1,
                "twin_id": twin,
                "ts": (t0 + timedelta(seconds=seq * self.period_s)).isoformat(),
                "seq": seq,
                "source": "fault",
                "readings": self.readings(index, seq),
            }
        )


def settings_of(env: dict[str, str]) -> Settings:
    """The settings a child process started with ``env`` reads."""
    with mock.patch.dict(os.environ, env, clear=True):
        return load_settings()


@dataclass
class Run:
    stack: PrivateStack
    dir: Path
    prefix: str
    settings: Settings
    env: dict[str, str]
    log_path: Path
    log: IO[bytes]
    flow: str = "telemetry"
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    starts: list[str] = field(default_factory=list)  # names of the processes started, in order

    @classmethod
    def create(cls, stack: PrivateStack, directory: Path, name: str, flow: str = "telemetry", **env: str) -> Run:
        """A run of ``flow`` (see :data:`FLOWS`) with topics of its own; ``env``: more settings."""
        if flow not in FLOWS:
            raise ValueError(f"flow {flow!r}: choose one of {', '.join(FLOWS)}")
        prefix = f"{name}{uuid.uuid4().hex[:6]}"
        if flow == "pipeline":  # every topic its own: flows of other runs never read this run's records
            topics = topic_env(stack.app, f"{prefix}.")
            env = {**ALERT_ENV, **env}
        else:
            raw, dlq = f"telemetry.{prefix}.raw", f"telemetry.{prefix}.dlq"
            topics = {"TWINFLOW_TOPICS__RAW": raw, "TWINFLOW_TOPICS__DLQ": dlq}
        env = stack.app_env(
            **topics,
            TWINFLOW_TOPICS__RAW_PARTITIONS="2",
            TWINFLOW_MQTT__CLIENT_ID=f"bridge-{prefix}",
            TWINFLOW_FLOW__RECOVERY_DIR=str(directory / "recovery"),
            TWINFLOW_FLOW__SNAPSHOT_INTERVAL_S="1",
            **env,
        )
        settings = settings_of(env)
        own = set(topics.values())
        ensure_topics(settings, [t for t in topic_specs(settings) if t.name in own])  # as `stack up` would
        log_path = directory / "procs.log"
        return cls(stack, directory, prefix, settings, env, log_path, open(log_path, "ab"), flow)

    # ------------------------------------------------------------------ processes
    def start_flow(self, recovery: bool) -> subprocess.Popen:
        """The run's flow (``twinflow run pipeline|telemetry``); a pipeline run also gets the alerts flow
        (recovery on) the first time."""
        args = ["run", self.flow, "--recovery" if recovery else "--no-recovery"]
        self.procs["flow"] = start_twinflow(args, self.env, self.log)
        self.starts.append("flow")
        if self.flow == "pipeline" and "alerts" not in self.procs:
            self.start_alerts()
        return self.procs["flow"]

    def start_alerts(self) -> subprocess.Popen:
        self.procs["alerts"] = start_twinflow(["run", "alerts", "--recovery"], self.env, self.log)
        self.starts.append("alerts")
        return self.procs["alerts"]

    def wait_started(self, timeout: float = 120) -> None:
        """Wait until every flow started (and not killed since) has logged that it is starting."""
        for name, proc in self.procs.items():
            flow = "alerts" if name == "alerts" else self.flow if name == "flow" else None
            if flow is None:
                continue
            starts = sum(1 for p in self.starts if p == name)
            text = f"flow {flow} starting".encode()
            deadline = time.monotonic() + timeout
            while self.log_path.read_bytes().count(text) < starts:
                assert time.monotonic() < deadline and proc.poll() is None, self.logs()
                time.sleep(0.2)

    def start_bridge(self) -> subprocess.Popen:
        self.procs["bridge"] = start_twinflow(["bridge", "mqtt"], self.env, self.log)
        wait_for_log(self.log_path, b"subscribed", self.procs["bridge"], timeout=60)
        return self.procs["bridge"]

    def kill(self, name: str) -> None:
        """kill -9 the process (group): no shutdown, no flush, no final snapshot."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def restart(self, name: str, down_s: float = 0.0) -> None:
        """kill -9 a flow and start it again from its recovery snapshots ``down_s`` seconds later."""
        self.kill(name)
        time.sleep(down_s)
        if name == "alerts":
            self.start_alerts()
        else:
            self.start_flow(recovery=True)

    def alive(self, name: str | None = None) -> bool:
        """Whether ``name`` (default: every process of the run) still runs."""
        names = [name] if name else list(self.procs)
        return all(self.procs[n].poll() is None for n in names)

    def close(self) -> None:
        for proc in self.procs.values():
            stop(proc)
        self.log.close()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    # ------------------------------------------------------------------ database
    @property
    def like(self) -> str:
        return self.prefix + "-%"

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.stack.admin.postgres.conninfo(), autocommit=True)

    def rows(self) -> tuple[int, int]:
        """(rows, distinct readings) of this run's twins."""
        with self.connect() as db:
            return db.execute(
                "SELECT count(*), count(DISTINCT (twin_id, sensor, ts)) FROM telemetry WHERE twin_id LIKE %s",
                (self.like,),
            ).fetchone()

    def counts(self) -> dict[str, int] | None:
        """Rows per output table of this run's twins (None while PostgreSQL is away)."""
        try:
            with self.connect() as db:
                return counts(db, self.like)
        except psycopg.OperationalError:
            return None

    def observe(self) -> Found:
        with self.connect() as db:
            return observe(db, self.like)

    def wait_rows(self, expected: int, timeout: float = 180) -> float:
        """Wait until ``expected`` rows exist; returns the monotonic time they did."""
        return self.wait_counts({"rows": expected}, timeout)

    def wait_counts(self, expected: dict[str, int], timeout: float = 180) -> float:
        """Wait until each table of ``expected`` (see :func:`tests.faults.outputs.counts`) holds at least
        that many rows of this run; returns the monotonic time it did."""
        deadline = time.monotonic() + timeout
        last: dict[str, int] | None = None
        while time.monotonic() < deadline:
            last = self.counts()
            if last is not None and all(last[k] >= n for k, n in expected.items()):
                return time.monotonic()
            time.sleep(0.3)
        raise AssertionError(f"{last} of {expected} after {timeout} s\n{self.logs()}")

    def wait_outputs(self, expected: Expected, timeout: float = 300, quiet_s: float = 2.0) -> float:
        """Wait until every output of ``expected`` is in the database (as many rows at least), then
        until nothing changes for ``quiet_s`` (what comes later would be a duplicate); returns the
        monotonic time the rows were there."""
        want = {
            "rows": expected.rows,
            "versions": len(expected.versions),
            "scores": len(expected.scores),
            "forecasts": len(expected.forecasts),
            "alerts": len(expected.alerts),
        }
        done = self.wait_counts(want, timeout)
        last, still = self.counts(), time.monotonic()
        while time.monotonic() - still < quiet_s and time.monotonic() - done < timeout:
            time.sleep(0.5)
            now = self.counts()
            if now != last:
                last, still = now, time.monotonic()
        return done


class Feeder(threading.Thread):
    """Produces ``total`` envelopes for ``twins`` twins at ``rate`` per second, round robin."""

    def __init__(self, run: Run, twins: int, total: int, rate: float, signal: Signal | None = None) -> None:
        super().__init__(daemon=True)
        self.run_ = run
        self.twins = [f"{run.prefix}-{i:03d}" for i in range(twins)]
        self.total = total
        self.rate = rate
        self.signal = signal or Signal()
        per_twin = -(-total // twins)
        # event time ends an hour before now (readings may not be from the future)
        self.t0 = (datetime.now(UTC) - timedelta(seconds=per_twin * self.signal.period_s + 3600)).replace(microsecond=0)
        self.sent = 0
        self.acked = 0
        self.errors: list[str] = []
        self._go = threading.Event()
        self._go.set()
        self._held_s = 0.0

    def messages(self) -> Iterator[tuple[str, bytes]]:
        n = len(self.twins)
        for i in range(self.total):
            twin = self.twins[i % n]
            yield twin, self.signal.envelope(twin, i % n, i // n, self.t0)

    def per_twin(self) -> list[tuple[str, list[bytes]]]:
        """Every envelope, grouped per twin in order (what a fault-free run is computed from)."""
        out: dict[str, list[bytes]] = {t: [] for t in self.twins}
        for twin, value in self.messages():
            out[twin].append(value)
        return list(out.items())

    def sent_per_twin(self) -> dict[str, int]:
        """How many envelopes of each twin have been sent so far."""
        n, sent = len(self.twins), self.sent
        return {t: sent // n + (1 if i < sent % n else 0) for i, t in enumerate(self.twins)}

    def hold(self) -> None:
        """Stop sending (the devices pause) until :meth:`go_on`."""
        self._go.clear()

    def go_on(self) -> None:
        self._go.set()

    def pace(self, i: int, started: float) -> None:
        if not self._go.is_set():
            held = time.monotonic()
            self._go.wait()
            self._held_s += time.monotonic() - held
        ahead = started + self._held_s + i / self.rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)

    @property
    def expected_rows(self) -> int:
        return self.acked * len(SENSORS)


def expected(run: Run, feeders: list[Feeder], sent: bool = False) -> Expected:
    """What a fault-free run of the pipeline and the alerts flow writes for these feeders' readings:
    read in the order ``telemetry.raw`` holds them (``sent``: in the order they were sent, e.g. for
    catching up mid-run). Telemetry rows: every reading the feeders had acknowledged."""
    if sent:
        twins = [tw for f in feeders for tw in f.per_twin()]
    else:
        twins = list(_raw_envelopes(run, sum(f.acked for f in feeders)).items())
    want = Expected.of(run.settings, twins, len(SENSORS))
    want.rows = sum(f.acked for f in feeders) * len(SENSORS)
    return want


def _raw_envelopes(run: Run, acked: int, timeout: float = 300.0) -> dict[str, list[bytes]]:
    """Per twin, its envelopes in ``telemetry.raw`` in order, once all ``acked`` distinct ones are
    there: a device's publish is acknowledged by Mosquitto before the bridge has produced it to
    Kafka, so right after the feed the topic may still lack the last ones (a redelivery repeats a seq)."""
    deadline = time.monotonic() + timeout
    while True:
        by_twin: dict[str, list[bytes]] = {}
        for rec in read_topic(run.settings, run.settings.topics.raw, timeout=timeout):
            if rec.key is not None and rec.value is not None:
                by_twin.setdefault(rec.key.decode(), []).append(rec.value)
        distinct = sum(len({orjson.loads(v).get("seq") for v in values}) for values in by_twin.values())
        if distinct >= acked:
            return by_twin
        if time.monotonic() > deadline:
            raise AssertionError(f"telemetry.raw holds {distinct} of the {acked} envelopes acknowledged")
        time.sleep(1.0)


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

    def __init__(
        self, run: Run, twins: int, total: int, rate: float, ms: MqttSettings, signal: Signal | None = None
    ) -> None:
        super().__init__(run, twins, total, rate, signal)
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
