"""Every long-running command stops cleanly on SIGTERM when a script started it in the background.

Each command runs as ``nohup twinflow … &`` of a non-interactive shell (SIGINT ignored, checked),
gets SIGTERM while it works, and must exit 0 within 10 s without a panic or a traceback, having
committed what it had: flows' rows and recovery snapshots agree, bridges' buffers are in Kafka.
"""

from __future__ import annotations

import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest

from flows.snapshots import from_snapshot
from operators.records.alerts import AnomalyScore
from operators.records.alerts import encode as encode_record
from tests.integration.plant_helpers import free_port, plant_toml, settings_of
from tests.kafka_helpers import produce, read_topic
from tests.process_helpers import Background
from tests.tcp_relay import Relay
from tests.twin_kafka import envelope, query, wait_for
from twinflow.demo.isolation import demo_dbname
from twinflow.demo.plant import FLOWS, MAPPING, topic_env
from twinflow.settings import Settings
from twinflow.stack.process import port_open

pytestmark = pytest.mark.integration


@dataclass
class Env:
    uid: str
    tmp: Path
    vars: dict[str, str]
    settings: Settings
    started: list[Background] = field(default_factory=list)

    def start(self, name: str, args: list[str], **more: str) -> Background:
        bg = Background(args, {**self.vars, **more}, self.tmp / f"{name}.log")
        self.started.append(bg)
        assert bg.sigint_ignored(), "the test must run the command with SIGINT ignored, as a script's job"
        return bg


@pytest.fixture(scope="module")
def env(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Topics, recovery folders, buffers and groups of this module's own (topics dropped at the end)."""
    tmp = tmp_path_factory.mktemp("stopping")
    uid = uuid.uuid4().hex[:8]
    extra = {
        **topic_env(stack_settings, f"it.stop.{uid}."),
        "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp / "recovery"),
        "TWINFLOW_BRIDGE__BUFFER__SPILL_DIR": str(tmp / "buffer"),
        "TWINFLOW_BRIDGE__COMMAND_GROUP": f"it-stop-{uid}",
        "TWINFLOW_SIM__GROUND_TRUTH_FILE": str(tmp / "ground-truth.jsonl"),
        "TWINFLOW_ML__ANOMALY__WARMUP": "20",
        "TWINFLOW_MQTT__TOPIC": f"it/{uid}/+/telemetry",
        "TWINFLOW_MQTT__TWIN_LEVEL": "2",
        "TWINFLOW_MQTT__CLIENT_ID": f"it-stop-{uid}",
    }
    settings = settings_of(extra)
    yield Env(uid, tmp, {**os.environ, **extra}, settings)


@pytest.fixture(autouse=True)
def _no_leftovers(env: Env) -> Iterator[None]:
    """A failed test leaves no command running."""
    yield
    while env.started:
        bg = env.started.pop()
        if bg.shell.poll() is None:
            bg.kill()


def _telemetry(prefix: str, n: int, twins: int = 24, start: int = 0) -> list[tuple[bytes, bytes]]:
    """``n`` readings of ``twins`` twins. Bytewax routes each twin to a worker by a fixed hash of its key:
    with 24 both processes of a local cluster hold some (with 6, all landed on one process in 1 of 32
    runs, and the other had nothing to snapshot)."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(start, start + n):
        twin = f"{prefix}{i % twins}"
        ts = t0 + timedelta(milliseconds=10 * i)
        out.append((twin.encode(), envelope(twin, ts, i, {"a": i * 0.5, "b": float(-i), "c": 1.0})))
    return out


def _rows(s: Settings, prefix: str) -> int:
    return query(s, "SELECT count(*) AS n FROM telemetry WHERE twin_id LIKE %s", (prefix + "%",))[0]["n"]


def _produce_slowly(s: Settings, msgs: list[tuple[bytes, bytes]], per_s: float) -> threading.Thread:
    def run() -> None:
        for i in range(0, len(msgs), 10):
            produce(s, msgs[i : i + 10])
            time.sleep(10 / per_s)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("processes", [1, 2], ids=["one-process", "local-cluster"])
def test_run_telemetry_stops_on_sigterm_and_a_restart_finds_nothing_missing(env: Env, processes: int) -> None:
    """Stopped while readings stream in; a restart from its recovery snapshot to the end of the
    topic then yields every reading: the snapshot never counts a reading the database lacks. The
    stop ends the epoch in progress at once: it does not wait for the snapshot interval (60 s here)."""
    prefix = f"stop{env.uid}p{processes}-"
    first, second = _telemetry(prefix, 300), _telemetry(prefix, 300, start=300)
    produce(env.settings, first)
    rdir = str(env.tmp / f"recovery-p{processes}")
    args = ["run", "telemetry", "-p", str(processes)]
    epoch = {"TWINFLOW_FLOW__RECOVERY_DIR": rdir, "TWINFLOW_FLOW__SNAPSHOT_INTERVAL_S": "60"}
    flow = env.start(f"telemetry-p{processes}", args, **epoch)
    wait_for("the first readings in the database", lambda: _rows(env.settings, prefix) == 900, timeout=90)
    children = flow.children()
    assert len(children) == (processes if processes > 1 else 0)

    streaming = _produce_slowly(env.settings, second, per_s=150)
    time.sleep(1.0)  # readings are arriving when the stop comes
    out = flow.assert_stops_cleanly(within_s=5)
    streaming.join()
    assert "committed with everything read" in out  # the epoch in progress was committed
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "cluster processes left behind"

    rest = env.start(f"telemetry-p{processes}-rest", [*args, "--no-tail"], **epoch)
    assert rest.shell.wait(120) == 0, rest.output()[-3000:]
    assert _rows(env.settings, prefix) == 1800


def _stop_together(commands: dict[str, Background]) -> dict[str, str]:
    """SIGTERM to all at once; each must exit 0 within 10 s, cleanly; their logs by name."""
    for bg in commands.values():
        os.kill(bg.pid, signal.SIGTERM)
    t0 = time.monotonic()
    outs = {}
    for name, bg in commands.items():
        code = bg.shell.wait(30)
        outs[name] = out = bg.output()
        assert code == 0, f"{name}: exit {code}\n{out[-3000:]}"
        assert "panicked" not in out and "Traceback" not in out, f"{name}:\n{out[-5000:]}"
    assert time.monotonic() - t0 < 10, f"{', '.join(commands)} took 10 s or more to stop"
    return outs


def _snapshot(rdir: Path, step: str, key: str) -> object:
    """The newest committed state of ``key`` in ``step`` from a flow's Bytewax recovery partitions."""
    best = None
    for part in rdir.glob("part-*.sqlite3"):
        with closing(sqlite3.connect(part)) as db:
            committed = db.execute("SELECT max(commit_epoch) FROM commits").fetchone()[0]
            row = db.execute(
                "SELECT snap_epoch, ser_change FROM snaps WHERE step_id LIKE ? AND state_key = ? AND snap_epoch <= ?"
                " ORDER BY snap_epoch DESC LIMIT 1",
                (f"%.{step}.%", key, committed),
            ).fetchone()
        if row and (best is None or row[0] > best[0]):
            best = row
    assert best is not None and best[1] is not None, f"no committed snapshot of {step}/{key} in {rdir}"
    return from_snapshot(pickle.loads(best[1]))


def test_twin_models_and_alerts_flows_stop_on_sigterm_with_their_outputs_written(env: Env) -> None:
    twin = f"stop{env.uid}-pump"
    readings = [
        (
            twin.encode(),
            envelope(twin, datetime.now(UTC) - timedelta(seconds=60 - 0.1 * i), i, {"speed": 1000.0 + i % 7}),
        )
        for i in range(300)
    ]
    produce(env.settings, readings)
    flows = {name: env.start(f"flow-{name}", ["run", name]) for name in ("twin", "models", "alerts")}
    wait_for("twin versions", lambda: query(env.settings, _VERSIONS, (twin,))[0]["v"], timeout=90)
    wait_for("anomaly scores", lambda: query(env.settings, _SCORES, (twin,))[0]["n"], timeout=90)
    time.sleep(1.0)

    _stop_together(flows)

    # The twin's committed snapshot counts no version the database does not hold.
    state = _snapshot(env.tmp / "recovery" / "twin", "twin_state", twin)
    assert query(env.settings, _VERSIONS, (twin,))[0]["v"] >= state.state.version > 0


@pytest.mark.parametrize("processes", [1, 2], ids=["one-process", "local-cluster"])
def test_run_pipeline_stops_on_sigterm_with_its_outputs_written(env: Env, processes: int) -> None:
    """The fused flow, stopped while readings stream in: rows, twin versions and model snapshots
    committed together; a restart from the snapshot to the end of the topic finds every reading."""
    prefix = f"stop{env.uid}pipe{processes}-"
    first, second = _telemetry(prefix, 300), _telemetry(prefix, 300, start=300)
    produce(env.settings, first)
    rdir = env.tmp / f"recovery-pipeline-p{processes}"
    port = next(p for p in iter(free_port, None) if not any(port_open(p + i) for i in range(processes)))
    args = ["run", "pipeline", "-p", str(processes)]
    # Epochs of 5 s: the processes' metrics count the snapshots of an epoch's end before the stop.
    epoch = {"TWINFLOW_FLOW__RECOVERY_DIR": str(rdir), "TWINFLOW_FLOW__SNAPSHOT_INTERVAL_S": "5"}
    flow = env.start(f"pipeline-p{processes}", [*args, "--metrics-port", str(port)], **epoch)
    wait_for("the first readings in the database", lambda: _rows(env.settings, prefix) == 900, timeout=90)
    wait_for("twin versions", lambda: query(env.settings, _VERSIONS, (f"{prefix}0",))[0]["v"], timeout=60)
    children = flow.children()
    assert len(children) == (processes if processes > 1 else 0)
    # Each process serves its Prometheus metrics (process i on port + i): its steps' snapshots of the
    # twins' model states and the recovery store's writes, once an epoch has ended.
    for i in range(processes):
        wait_for(f"process {i}'s metrics on port {port + i}", lambda i=i: _snapshots_counted(port + i), timeout=90)

    streaming = _produce_slowly(env.settings, second, per_s=150)
    time.sleep(1.0)  # readings are arriving when the stop comes
    out = flow.assert_stops_cleanly()
    streaming.join()
    assert "committed with everything read" in out
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "cluster processes left behind"
    # The twin's committed snapshot counts no version the database does not hold.
    state = _snapshot(rdir / "pipeline", "twin_state", f"{prefix}0")
    assert query(env.settings, _VERSIONS, (f"{prefix}0",))[0]["v"] >= state.state.version > 0

    rest = env.start(f"pipeline-p{processes}-rest", [*args, "--no-tail"], **epoch)
    assert rest.shell.wait(120) == 0, rest.output()[-3000:]
    assert _rows(env.settings, prefix) == 1800


def _scores(twin: str, seconds: list[int]) -> list[tuple[bytes, bytes]]:
    """Anomaly scores of ``twin`` at these seconds after 2026-01-01: a fault from 100 s to 250 s
    but for the good scores at 150–160 s."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for s in seconds:
        bad = 100 <= s < 250 and not 150 <= s <= 160
        rec = AnomalyScore(twin, t0 + timedelta(seconds=s), 2.0 if bad else 0.2, 1.0, bad, {"speed": 1.0}, "hst")
        out.append((twin.encode(), encode_record(rec)))
    return out


_ALERTS = "SELECT kind, state, severity, version, opened_at FROM alerts WHERE twin_id = %s ORDER BY opened_at"


def test_a_stop_keeps_the_alerts_flows_held_records_for_the_restart(env: Env) -> None:
    """The alerts flow holds a twin's records until its newest is the reorder window (30 s) past them.
    A stop keeps them in the last snapshot instead of applying them as the end of the data does, so
    records older than the held ones that arrive after the restart are still applied in event-time
    order, and the alerts equal those of a run that was never stopped.

    Here the scores at 150–160 s (good) arrive after those up to 175 s (bad since 100 s): in event-time
    order the fault lasts the 60 s that open an alert only at 225 s; had the stop applied the held
    records (165–175 s), the alert would have opened at 165 s."""
    stopped, uninterrupted = f"stop{env.uid}-held", f"stop{env.uid}-whole"
    first = [s for s in range(0, 180, 5) if not 150 <= s <= 160]
    then = [150, 155, 160, *range(180, 300, 5)]
    topic = env.settings.alerts.anomalies_topic
    produce(env.settings, _scores(stopped, first), topic=topic)
    rdir = str(env.tmp / "recovery-held")
    flow = env.start("alerts-held", ["run", "alerts"], TWINFLOW_FLOW__RECOVERY_DIR=rdir)
    wait_for("the first scores", lambda: query(env.settings, _SCORES, (stopped,))[0]["n"] == len(first), timeout=90)
    out = flow.assert_stops_cleanly()
    assert "committed with everything read" in out
    assert query(env.settings, _ALERTS, (stopped,)) == []

    produce(env.settings, _scores(stopped, then) + _scores(uninterrupted, first + then), topic=topic)
    rest = env.start("alerts-held-rest", ["run", "alerts", "--no-tail"], TWINFLOW_FLOW__RECOVERY_DIR=rdir)
    assert rest.shell.wait(120) == 0, rest.output()[-3000:]
    alerts = {twin: query(env.settings, _ALERTS, (twin,)) for twin in (stopped, uninterrupted)}
    assert [a["opened_at"] for a in alerts[uninterrupted]] == [datetime(2026, 1, 1, 0, 3, 45, tzinfo=UTC)]
    assert alerts[stopped] == alerts[uninterrupted]


@pytest.mark.parametrize("group", ["twin", "alerts"])
def test_the_flow_groups_run_commands_run_their_flow_to_the_end_of_the_topics(env: Env, group: str) -> None:
    """`twinflow twin run` and `twinflow alerts run` (the same flows as `twinflow run twin|alerts`) read
    their topics to the end with --no-tail and exit 0; the flow's process takes `flow.gil_switch_interval_ms`
    (and says what its interpreter holds)."""
    flow = env.start(
        f"{group}-run", [group, "run", "--no-tail", "--no-recovery"], TWINFLOW_FLOW__GIL_SWITCH_INTERVAL_MS="2.5"
    )
    assert flow.shell.wait(120) == 0, flow.output()[-3000:]
    assert "Traceback" not in flow.output()
    assert "GIL switch interval 2.5 ms" in flow.output()


def _snapshots_counted(port: int) -> bool:
    """The flow's /metrics counts snapshots of its models step and writes to its recovery store."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as res:
            lines = res.read().decode().splitlines()
    except OSError:
        return False

    def counted(metric: str, label: str = "") -> bool:
        return any(ln.startswith(metric) and label in ln and float(ln.rsplit(" ", 1)[1]) > 0 for ln in lines)

    return counted("bytewax_snapshot_duration_seconds_count", 'step_id="twinflow-pipeline.models.') and counted(
        "bytewax_partd_write_duration_seconds_count"
    )


_VERSIONS = "SELECT coalesce(max(version), 0) AS v FROM twin_state_history WHERE twin_id = %s"
_SCORES = "SELECT count(*) AS n FROM anomaly_scores WHERE twin_id = %s"


def _published(out: str) -> dict[str, int]:
    line = next(ln for ln in out.splitlines() if "publisher closed" in ln)
    return orjson.loads(line.split("publisher closed ", 1)[1].replace("'", '"'))


_SHORT = {"opcua": "ua", "mqtt": "mq", "modbus": "mb"}


def test_simulator_and_bridges_stop_on_sigterm_with_their_buffers_in_kafka(env: Env) -> None:
    mapping = env.tmp / "plant.toml"
    text = plant_toml(env.uid, free_port(), free_port())
    mapping.write_text(text)
    sim = env.start("simulate", ["simulate", "--mapping", str(mapping)])
    sim.wait_for("ground truth:")
    bridges = {
        p: env.start(f"bridge-{p}", ["bridge", p, "--mapping", str(mapping)]) for p in ("opcua", "mqtt", "modbus")
    }
    ready = {"opcua": ": subscribed", "mqtt": ": subscribing", "modbus": ": polling"}
    for p, bg in bridges.items():
        bg.wait_for(ready[p])
    time.sleep(2.0)  # values flow

    outs = _stop_together(bridges)
    records = read_topic(env.settings, env.settings.topics.raw)
    for p, out in outs.items():
        stats = _published(out)
        assert stats["put"] > 0 and stats["delivered"] == stats["put"], f"{p}: {stats}"
        twin = f"pump-{_SHORT[p]}-{env.uid}".encode()  # the twin of that protocol in plant_toml()
        in_kafka = sum(r.key == twin for r in records)
        assert in_kafka == stats["put"], f"{p}: {in_kafka} records in Kafka, {stats['put']} accepted"
    out = sim.assert_stops_cleanly()
    assert "simulator stopped" in out


def test_plain_mqtt_bridge_stops_on_sigterm_with_every_message_in_kafka(env: Env) -> None:
    bridge = env.start("bridge-mqtt-plain", ["bridge", "mqtt"])
    bridge.wait_for("MQTT: subscribed")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"it-stop-pub-{env.uid}")
    client.connect(env.settings.mqtt.host, env.settings.mqtt.port)
    client.loop_start()
    twin = f"stopmq{env.uid}"
    now = datetime.now(UTC)
    for i in range(200):
        ts = (now + timedelta(milliseconds=i)).isoformat()
        info = client.publish(
            f"it/{env.uid}/{twin}/telemetry", orjson.dumps({"ts": ts, "seq": i, "readings": {"v": i}}), qos=1
        )
    info.wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    time.sleep(1.0)  # the broker hands them to the bridge
    out = bridge.assert_stops_cleanly()
    assert "bridge stopped: received 200, produced 200, failed 0" in out, out[-2000:]
    assert len([r for r in read_topic(env.settings, env.settings.topics.raw) if r.key == twin.encode()]) == 200


def _clean_logs(env: Env, names: list[str]) -> None:
    """The demo's children stopped cleanly too: each logged its stop, none a panic or traceback."""
    for name in names:
        text = (env.settings.stack.dir / "demo" / f"{name}.log").read_text(errors="replace")
        assert "stopping" in text, f"{name} did not see the stop:\n{text[-3000:]}"
        assert "panicked" not in text and "Traceback" not in text, f"{name}:\n{text[-3000:]}"


@pytest.mark.xdist_group("demo")  # one demo at a time (tests/conftest.py)
def test_demo_stops_on_sigterm_with_everything_it_started(env: Env) -> None:
    demo = env.start("demo-publisher", ["demo", "--publisher", "--duration", "120", "--twins", "2", "--rate", "5"])
    wait_for("the bridge and the flow", lambda: len(demo.children()) == 2, timeout=60)
    children = demo.children()
    time.sleep(6.0)  # publishing (the live view is not drawn without a terminal)
    out = demo.assert_stops_cleanly()
    assert "demo stopped by signal" in out
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "demo processes left behind"
    _clean_logs(env, ["bridge", "flow"])


@pytest.mark.xdist_group("demo")  # one demo at a time (tests/conftest.py)
def test_plant_demo_stops_on_sigterm_with_everything_it_started(env: Env) -> None:
    """`twinflow demo` (simulator, three bridges, its flows, the web view) on a copy of config/plant.toml with
    free ports."""
    plant = MAPPING.read_text()
    plant = plant.replace("127.0.0.1:4840", f"127.0.0.1:{free_port()}").replace("port = 5020", f"port = {free_port()}")
    plant = plant.replace("port = 1883", f"port = {env.settings.mqtt.port}")
    mapping = env.tmp / "demo-plant.toml"
    mapping.write_text(plant)
    since = datetime.now(UTC)
    demo = env.start("demo-plant", ["demo", "--duration", "300", "--mapping", str(mapping), "--out", str(env.tmp)])
    processes = 5 + len(FLOWS)  # simulator, 3 bridges, the web view and the flows
    wait_for(f"the demo's {processes} processes", lambda: len(demo.children()) == processes, timeout=60)
    children = demo.children()
    landed = "SELECT count(DISTINCT twin_id) AS n FROM telemetry WHERE ingested_at >= %s"
    pg = env.settings.postgres  # the demo writes into a database of its own
    demo_db = env.settings.model_copy(update={"postgres": pg.model_copy(update={"dbname": demo_dbname(env.settings)})})
    wait_for("readings of every asset", lambda: query(demo_db, landed, (since,))[0]["n"] >= 6, timeout=120)
    out = demo.assert_stops_cleanly()
    assert "demo stopped by signal" in out
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "demo processes left behind"
    _clean_logs(env, ["simulator", "serve", *(f"flow-{f}" for f in FLOWS), *(f"bridge-{p}" for p in _SHORT)])


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
def test_a_second_ctrl_c_ends_a_stop_that_waits_for_the_database(env: Env, workers: int) -> None:
    """In a terminal (SIGINT not ignored). The first Ctrl-C ends the input and waits for the sinks to
    write what was read; with the database no longer answering (a relay between the flow and
    PostgreSQL, frozen) that wait lasts. The second Ctrl-C ends it at once, exit status 1 and why;
    a restart from the last recovery snapshot then finds every reading. (One worker: its sources
    have ended; two: Bytewax's main thread waits for them and is told to end the run.)"""
    prefix = f"stop{env.uid}ctrlc{workers}-"
    first, second = _telemetry(prefix, 300), _telemetry(prefix, 300, start=300)
    produce(env.settings, first)
    relay = Relay(env.settings.postgres.port)
    rdir = str(env.tmp / f"recovery-ctrl-c-{workers}")
    log = env.tmp / f"run-ctrl-c-{workers}.log"
    with open(log, "wb") as out:
        flow = subprocess.Popen(
            [sys.executable, "-m", "twinflow.cli.main", "run", "telemetry", "-w", str(workers)],
            env={**env.vars, "TWINFLOW_FLOW__RECOVERY_DIR": rdir, "TWINFLOW_POSTGRES__PORT": str(relay.port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for("the first readings in the database", lambda: _rows(env.settings, prefix) == 900, timeout=90)
        relay.freeze()
        produce(env.settings, second)
        time.sleep(1.0)  # the flow writes the second readings, and waits
        flow.send_signal(signal.SIGINT)
        time.sleep(1.5)
        assert flow.poll() is None, log.read_text(errors="replace")[-3000:]  # still waiting for the database
        t0 = time.monotonic()
        flow.send_signal(signal.SIGINT)
        code = flow.wait(30)
    finally:
        if flow.poll() is None:
            flow.kill()
        relay.close()
    text = log.read_text(errors="replace")
    assert time.monotonic() - t0 < 3, text[-3000:]
    assert code == 1, text[-3000:]
    assert "SIGINT again: stopping now" in text
    assert "stopped now (signal again) before the flow completed" in text
    assert "panicked" not in text and "Traceback" not in text, text[-5000:]

    rest = env.start(
        f"telemetry-ctrl-c-rest-{workers}",
        ["run", "telemetry", "-w", str(workers), "--no-tail"],
        TWINFLOW_FLOW__RECOVERY_DIR=rdir,
    )
    assert rest.shell.wait(120) == 0, rest.output()[-3000:]
    assert _rows(env.settings, prefix) == 1800
