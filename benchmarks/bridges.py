"""Values per second through one bridge process, with the plant simulator as the peer.

The simulator runs in its own process (``twinflow simulate``) serving a generated mapping;
the bridge runs here and forwards to the shared Kafka (private topics). After a warm-up the
bridge's counters are sampled over a window; every value counted was handed to the publisher
and the run ends only when Kafka has acknowledged all of them.

    python -m benchmarks.bridges --protocol all --seconds 20
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from benchmarks.processes import cleaning_up, interruptible, stop, usage
from connectors.bridges.mapping.loading import load_mapping
from connectors.kafka.clients import ensure_topics, topic_specs
from twinflow.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PUMP = ("speed_rpm", "flow_m3h", "head_m", "suction_bar", "power_kw", "temp_c", "vibration_mm_s")


def mapping_text(
    protocol: str,
    assets: int,
    uid: str,
    port: int,
    qos: int,
    poll_ms: float,
    shard: tuple[int, int] = (0, 1),
    queue_size: int = 100,
    device_ports: list[int] | None = None,
    items_per_device: int = 0,
) -> str:
    """The benchmark's mapping; ``shard=(k, n)`` keeps assets ``k, k+n, k+2n, …`` (one simulator process's share).

    With ``device_ports`` the assets are spread over that many ``[devices.dK]`` (OPC-UA servers or Modbus
    hosts, one per port), ``items_per_device`` parameters each (pumps of up to 7 parameters)."""
    head = f"""
[opcua]
endpoint = "opc.tcp://127.0.0.1:{port}/bench/"
publishing_interval_ms = 100
sampling_interval_ms = 0
queue_size = {queue_size}
[mqtt]
port = {Settings().mqtt.port}
qos = {qos}
client_id = "bench-{uid}"
[modbus]
port = {port}
poll_interval_ms = {poll_ms}
"""
    out = [head]
    per_device = -(-items_per_device // len(PUMP)) if device_ports else 0  # pumps per device
    for k, dport in enumerate(device_ports or []):
        if protocol == "opcua":
            out.append(f'[devices.d{k}]\nprotocol = "opcua"\nendpoint = "opc.tcp://127.0.0.1:{dport}/bench/"')
        else:
            out.append(f'[devices.d{k}]\nprotocol = "modbus"\nport = {dport}')
    for i in range(assets):
        # A simulator process's share: every n-th asset, or with devices every n-th device's assets.
        if (i // per_device if per_device else i) % shard[1] != shard[0]:
            continue
        twin = f"bench-{protocol}-{uid}-{i}"
        out.append(f'[[assets]]\ntwin_id = "{twin}"\ntype = "pump"\nprotocol = "{protocol}"')
        names = PUMP
        if per_device:
            out.append(f'device = "d{i // per_device}"')
            left = items_per_device - (i % per_device) * len(PUMP)
            names = PUMP[: min(len(PUMP), left)]
        if protocol == "mqtt":
            out.append(f'topic = "bench/{uid}/{i}"')
        if protocol == "modbus":
            out.append(f"unit_id = {i % 247 + 1}")
        out.append("[assets.params]")
        for j, name in enumerate(names):
            if protocol == "opcua":
                out.append(f'{name} = {{ node = "ns=2;s={twin}.{name}" }}')
            elif protocol == "mqtt":
                out.append(f'{name} = {{ path = "{name}" }}')
            else:
                base = (i // 247) * 16
                out.append(f'{name} = {{ register = "input", address = {base + 2 * j}, type = "float32" }}')
    return "\n".join(out) + "\n"


PROFILES = {
    # assets, simulator tick (s), MQTT QoS, Modbus poll interval (ms)
    "opcua": {"assets": 300, "tick": 0.05, "qos": 1, "poll_ms": 100},
    "mqtt": {"assets": 1500, "tick": 0.05, "qos": 0, "poll_ms": 100},
    # More than the 30,000 msg/s goal asked (2,000 assets × 20 Hz = 40,000 msg/s), so the bridge's
    # rate is not capped by the asked rate; use with --sim-processes 2.
    "mqtt-max": {"assets": 2000, "tick": 0.05, "qos": 0, "poll_ms": 100},
    "mqtt-qos1": {"assets": 300, "tick": 0.05, "qos": 1, "poll_ms": 100},
    # The simulator fills the broker's queue for the offline bridge's persistent session (QoS 1);
    # then the bridge drains it as fast as it can: the bridge's own limit, not the simulator's pace.
    "mqtt-drain": {"assets": 500, "tick": 0.05, "qos": 1, "poll_ms": 100, "fill_s": 8},
    "modbus": {"assets": 40, "tick": 0.1, "qos": 1, "poll_ms": 20},
    # Many devices in one mapping file, one bridge process: 50 OPC-UA servers × 20 items, 100 Modbus hosts.
    "opcua-devices": {"assets": 150, "tick": 0.1, "qos": 1, "poll_ms": 100, "devices": 50, "items": 20},
    # The same at 20 servers, for a machine too loaded to start 50 simulated servers in time.
    "opcua-devices-20": {"assets": 60, "tick": 0.1, "qos": 1, "poll_ms": 100, "devices": 20, "items": 20},
    "modbus-devices": {"assets": 100, "tick": 0.1, "qos": 1, "poll_ms": 200, "devices": 100, "items": 7},
}


def simulate_cmd(mapping_path: Path, protocol: str, tick: float, duration: float) -> list[str]:
    return [
        sys.executable, "-m", "twinflow.cli.main", "simulate", "--mapping", str(mapping_path),
        "--only", protocol, "--tick", str(tick), "--duration", str(duration),
    ]  # fmt: skip


def run_drain(profile: str) -> dict:
    """MQTT backlog drain: messages/s the bridge takes from the broker with nothing else running."""
    from connectors.mqtt.mapped import MappedMqttBridge

    p = PROFILES[profile]
    uid = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix="bench-bridges-"))
    mapping_path = tmp / "bench.toml"
    mapping_path.write_text(mapping_text("mqtt", p["assets"], uid, free_port(), p["qos"], p["poll_ms"]))
    mapping = load_mapping(mapping_path)
    settings = Settings(
        topics={"raw": f"bench.raw.{uid}", "raw_partitions": 1},
        bridge={"buffer": {"spill_dir": str(tmp / "buffer")}},
        sim={"ground_truth_file": str(tmp / "gt.jsonl")},
    )
    bridge = None
    try:  # the topic and the folder (mapping, the bridge's spill buffer, ground truth) go, also after Ctrl-C
        ensure_topics(settings, [s for s in topic_specs(settings) if s.name == settings.topics.raw])
        first = MappedMqttBridge(settings, mapping, commands=False).start()  # creates the persistent session
        assert first.connected.wait(20)
        first.stop(30)
        env = {**os.environ, "TWINFLOW_SIM__GROUND_TRUTH_FILE": str(tmp / "gt.jsonl")}
        out = subprocess.run(
            simulate_cmd(mapping_path, "mqtt", p["tick"], p["fill_s"]),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        ).stdout
        bridge = MappedMqttBridge(settings, mapping, commands=False)
        me = psutil.Process()
        me.cpu_percent()
        bridge.start()
        assert bridge.connected.wait(30)
        while bridge.received == 0:
            time.sleep(0.01)
        t0 = time.monotonic()
        last, last_change = bridge.received, t0
        while time.monotonic() - last_change < 3.0:
            time.sleep(0.05)
            if bridge.received != last:
                last, last_change = bridge.received, time.monotonic()
        t1 = last_change
        cpu = me.cpu_percent()
        drained, bridge = bridge, None  # (stopped here; the finally stops one that is not)
        drained.stop(120)
        stats = drained.publisher.counters
        assert stats.delivered == stats.put, f"undelivered: {stats}"
    finally:
        with cleaning_up():
            if bridge is not None:  # interrupted or failed: what it still buffers is not wanted
                bridge.stop(flush_timeout=0)
            drop_topic(settings.topics.raw)
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "profile": profile,
        "assets": p["assets"],
        "values_per_s": drained.values / (t1 - t0),
        "envelopes_per_s": drained.received / (t1 - t0),
        "registers_per_s": None,
        "mqtt_messages": drained.received,
        "bridge_cpu_pct": cpu,
        "delivered": stats.delivered,
        "note": out.strip().splitlines()[-1] if out.strip() else "",
    }


def run_paho_baseline(qos: int, n: int = 20000) -> dict:
    """Plain paho publisher → Mosquitto → plain paho subscriber, no processing: the ceiling for MQTT."""
    import threading

    import paho.mqtt.client as mqtt

    uid = uuid.uuid4().hex[:6]
    count, done = [0], threading.Event()

    def on_message(client, userdata, msg) -> None:
        count[0] += 1
        if count[0] >= n:
            done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"base-sub-{uid}")
    sub.on_message = on_message
    sub.connect("127.0.0.1", Settings().mqtt.port)
    sub.subscribe(f"base/{uid}/#", qos)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"base-pub-{uid}")
    pub.connect("127.0.0.1", Settings().mqtt.port)
    pub.loop_start()
    time.sleep(0.5)
    t0 = time.monotonic()
    for i in range(n):
        pub.publish(f"base/{uid}/{i % 100}", b"12.5", qos=qos)
    done.wait(120)
    dt = time.monotonic() - t0
    pub.loop_stop()
    sub.loop_stop()
    return {
        "profile": f"paho-qos{qos}",
        "assets": 0,
        "values_per_s": count[0] / dt,
        "envelopes_per_s": count[0] / dt,
        "registers_per_s": None,
        "mqtt_messages": count[0],
        "bridge_cpu_pct": float("nan"),
        "delivered": 0,
        "note": "(no bridge: paho publisher → broker → paho subscriber)",
    }


def drop_topic(topic: str) -> None:
    """Remove the benchmark's private topic from the shared broker."""
    from connectors.kafka.clients import delete_topics

    try:
        delete_topics(Settings(), [topic])
    except Exception as exc:  # cleanup only: say so, never fail the measurement
        print(f"note: could not delete topic {topic}: {exc}", file=sys.stderr)


def changes_offered(settings: Settings, mapping, tick: float, ticks: int = 20) -> float:
    """Value changes per second the simulator offers: OPC-UA notifies only values that changed.

    Steps a copy of the simulated plant (same mapping and seed, no faults) and counts the values
    that differ from the previous tick (at a constant speed, e.g. a pump's head and power do not).
    """
    from connectors.sim.plant import Plant

    plant = Plant(mapping, [], seed=settings.sim.seed)
    prev, changed = plant.step(0.0), 0
    for _ in range(ticks):
        cur = plant.step(tick)
        changed += sum(
            s.values[k] != prev[t].values[k] or s.quality.get(k) != prev[t].quality.get(k)
            for t, s in cur.items()
            for k in s.values
        )
        prev = cur
    return changed / ticks / tick


def cpu_seconds(pids: list[int], *, children: bool = True) -> float:
    """User + system CPU seconds of processes (all their threads)."""
    return sum(usage(pid, children=children)[0] for pid in pids)


def run(
    profile: str,
    seconds: float,
    warmup: float,
    sim_processes: int = 1,
    assets: int | None = None,
    queue_size: int = 100,
) -> dict:
    if profile == "mqtt-drain":
        return run_drain(profile)
    if profile.startswith("paho-qos"):
        return run_paho_baseline(int(profile[-1]))
    protocol = profile.split("-")[0]
    p = PROFILES[profile] | ({"assets": assets} if assets else {})
    uid = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix="bench-bridges-"))
    mapping_path = tmp / "bench.toml"
    port = free_port()
    device_ports = [free_port() for _ in range(p.get("devices", 0))] or None
    mapping_path.write_text(
        mapping_text(
            protocol,
            p["assets"],
            uid,
            port,
            p["qos"],
            p["poll_ms"],
            queue_size=queue_size,
            device_ports=device_ports,
            items_per_device=p.get("items", 0),
        )
    )
    mapping = load_mapping(mapping_path)
    settings = Settings(
        topics={"raw": f"bench.raw.{uid}", "raw_partitions": 1},
        bridge={"buffer": {"spill_dir": str(tmp / "buffer")}},
        sim={"ground_truth_file": str(tmp / "gt.jsonl"), "tick_s": p["tick"]},
    )
    ensure_topics(settings, [s for s in topic_specs(settings) if s.name == settings.topics.raw])
    env = {**os.environ, "TWINFLOW_SIM__GROUND_TRUTH_FILE": str(tmp / "gt.jsonl")}
    log = open(tmp / "sim.log", "wb")  # noqa: SIM115 - closed in finally
    # The simulator as the peer; with --sim-processes N (MQTT only) N simulator processes, each
    # serving every N-th asset of the same mapping (the bridge still reads all of them).
    shards = sim_processes if protocol == "mqtt" or device_ports else 1
    sim_paths = [mapping_path]
    if shards > 1:
        sim_paths = []
        for k in range(shards):
            part = tmp / f"bench-sim-{k}.toml"
            part.write_text(
                mapping_text(
                    protocol,
                    p["assets"],
                    uid,
                    port,
                    p["qos"],
                    p["poll_ms"],
                    shard=(k, shards),
                    device_ports=device_ports,
                    items_per_device=p.get("items", 0),
                )
            )
            sim_paths.append(part)
    bridge, failed = None, True
    sims = [
        subprocess.Popen(
            simulate_cmd(path, protocol, p["tick"], seconds + warmup + 60),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        for path in sim_paths
    ]
    try:
        time.sleep(3 if protocol != "opcua" else 4 + p["assets"] / 100)
        if protocol == "opcua":
            from connectors.opcua.bridge import OpcuaBridge as cls
        elif protocol == "mqtt":
            from connectors.mqtt.mapped import MappedMqttBridge as cls
        else:
            from connectors.modbus.bridge import ModbusBridge as cls
        bridge = cls(settings, mapping, commands=False).start()
        if not bridge.connected.wait(90):
            raise RuntimeError(f"{protocol} bridge did not connect; see {tmp / 'sim.log'}")
        deadline = time.monotonic() + 240  # every device (the simulator starts its servers one by one)
        while not all(d.health.connected for d in bridge.devices.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
        down = [d.name for d in bridge.devices.values() if not d.health.connected]
        if down:
            raise RuntimeError(f"devices {down[:5]} did not connect; see {tmp / 'sim.log'}")
        # The simulator may still be creating nodes: measure once values flow.
        deadline = time.monotonic() + 90
        while bridge.values < 10 * p["assets"] and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(warmup)
        if any(sim.poll() is not None for sim in sims):
            raise RuntimeError(f"the simulator stopped; see {tmp / 'sim.log'}")
        me, peers = [os.getpid()], [s.pid for s in sims]
        c0, sc0 = cpu_seconds(me, children=False), cpu_seconds(peers)
        v0, e0, t0 = bridge.values, bridge.envelopes, time.monotonic()
        r0 = getattr(bridge, "registers", 0)
        time.sleep(seconds)
        v1, e1, t1 = bridge.values, bridge.envelopes, time.monotonic()
        r1 = getattr(bridge, "registers", 0)
        c1, sc1 = cpu_seconds(me, children=False), cpu_seconds(peers)
        load = os.getloadavg()
        received = getattr(bridge, "received", None)
        measured, bridge = bridge, None  # (stopped here; the finally stops one that is not)
        measured.stop(120)
        stats = measured.publisher.counters
        assert stats.delivered == stats.put, f"undelivered: {stats}"
        failed = False
    except KeyboardInterrupt:
        failed = False  # (Ctrl-C, SIGTERM: nothing to look into, the folder goes too)
        raise
    finally:
        with cleaning_up():
            if bridge is not None:  # interrupted or failed: what it still buffers is not wanted
                bridge.stop(flush_timeout=0)
            stop(*sims, within_s=120)  # many simulated servers take a while to stop on a loaded machine
            log.close()
            drop_topic(settings.topics.raw)  # (also after a failed run: the topic is the run's own)
            # The run's files (mapping, the bridge's spill buffer, ground truth, the simulator's log):
            # kept only when the run failed, for the log its error points to.
            if not failed:
                shutil.rmtree(tmp, ignore_errors=True)
    dt = t1 - t0
    return {
        "profile": profile,
        "assets": p["assets"],
        "values_per_s": (v1 - v0) / dt,
        "envelopes_per_s": (e1 - e0) / dt,
        "registers_per_s": (r1 - r0) / dt if protocol == "modbus" else None,
        "mqtt_messages": received,
        "bridge_cpu_pct": (c1 - c0) / dt * 100,
        # CPU of the bridge process (all threads, librdkafka's included) per envelope (= MQTT message).
        "bridge_cpu_us_per_envelope": (c1 - c0) / max(e1 - e0, 1) * 1e6,
        "sim_cpu_pct": (sc1 - sc0) / dt * 100,
        "sim_processes": len(sims),
        "load_avg_1m": load[0],
        "delivered": stats.delivered,
        "offered_per_s": changes_offered(settings, mapping, p["tick"]) if protocol == "opcua" else None,
        "bridge_us_per_value": 1e6 * (c1 - c0) / max(v1 - v0, 1),
        "sim_us_per_value": 1e6 * (sc1 - sc0) / max(v1 - v0, 1),
        "devices": len(measured.devices),
        "items": sum(len(a.params) for a in mapping.assets),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--protocol",
        default="all",
        help="opcua, opcua-devices, mqtt, mqtt-max, mqtt-qos1, mqtt-drain, modbus, modbus-devices, paho-qos0, "
        "paho-qos1 or all",
    )
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument(
        "--sim-processes",
        type=int,
        default=1,
        help="MQTT and *-devices profiles: run the simulator as N processes, each serving every N-th asset (or device)",
    )
    ap.add_argument("--assets", type=int, default=None, help="override the profile's number of assets")
    ap.add_argument("--queue-size", type=int, default=100, help="OPC-UA server-side queue per monitored item")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    profiles = [*PROFILES, "paho-qos0", "paho-qos1"] if args.protocol == "all" else args.protocol.split(",")
    print(f"# {platform.node()} {psutil.cpu_count()} cores, Python {platform.python_version()}")
    for prof in profiles:
        r = run(prof, args.seconds, args.warmup, args.sim_processes, args.assets, args.queue_size)
        extra = f", {r['registers_per_s']:,.0f} registers/s" if r["registers_per_s"] is not None else ""
        if "bridge_cpu_us_per_envelope" in r:
            extra += (
                f"  bridge CPU {r['bridge_cpu_us_per_envelope']:.1f} µs/envelope"
                f"  simulator CPU {r['sim_cpu_pct']:.0f}% ({r['sim_processes']} process(es))"
                f"  load {r['load_avg_1m']:.1f}"
                f"  CPU/value: bridge {r['bridge_us_per_value']:.1f} µs, simulator {r['sim_us_per_value']:.1f} µs"
            )
            if r.get("offered_per_s"):
                extra += f"  {r['offered_per_s']:,.0f} changes/s offered"
        if r.get("devices", 1) > 1:
            extra += f"  {r['devices']} devices, {r['items']} items"
        print(
            f"{r['profile']:<10} assets={r['assets']:<5} {r['values_per_s']:>10,.0f} values/s "
            f"{r['envelopes_per_s']:>9,.0f} envelopes(messages)/s{extra}  "
            f"bridge CPU {r['bridge_cpu_pct']:.0f}%  delivered {r['delivered']:,} {r.get('note', '')}",
            flush=True,
        )


if __name__ == "__main__":
    with interruptible("its simulators and bridge are stopped, its topic and folder removed"):
        main()
