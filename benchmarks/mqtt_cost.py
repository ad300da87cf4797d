"""CPU per MQTT message of the bridge's two halves, without the network or the simulator.

1. paho: parse + dispatch of QoS 0 PUBLISH packets (encoded by paho itself) from an in-memory
   socket, paho's ``Client`` vs :class:`~connectors.mqtt.client.BufferedClient`. The in-memory
   socket makes ``recv`` a Python call, so the syscalls BufferedClient saves are not counted.
2. The mapped bridge's callback → envelope → publisher → Kafka (shared broker, private topic),
   until Kafka acknowledged every record.

    python -m benchmarks.mqtt_cost --messages 30000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt

from benchmarks.bridges import PUMP, drop_topic, mapping_text
from benchmarks.processes import cleaning_up, interruptible
from connectors.bridges.mapping.loading import load_mapping
from connectors.kafka.clients import ensure_topics, topic_specs
from connectors.mqtt.client import BufferedClient
from twinflow.settings import Settings

ASSETS = 1500


class MemorySocket:
    """Non-blocking socket stand-in: serves queued bytes, keeps what is sent."""

    def __init__(self, data: bytes = b"") -> None:
        self.data, self.pos, self.sent = data, 0, bytearray()

    def recv(self, n: int) -> bytes:
        if self.pos >= len(self.data):
            raise BlockingIOError
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def send(self, buf: bytes) -> int:
        self.sent += buf
        return len(buf)

    def close(self) -> None:
        pass


def payloads(n: int, uid: str) -> list[tuple[str, bytes]]:
    out = []
    for k in range(n):
        doc = {name: 10.0 + k % 97 + j / 10 for j, name in enumerate(PUMP)}
        doc["ts"] = f"2026-11-25T08:{k // 30000 % 60:02d}:{k // ASSETS % 60:02d}.050000+00:00"
        out.append((f"bench/{uid}/{k % ASSETS}", orjson.dumps(doc)))
    return out


def encoded(msgs: list[tuple[str, bytes]]) -> bytes:
    """The PUBLISH packets exactly as paho writes them."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="enc", protocol=mqtt.MQTTv311)
    client._sock = sock = MemorySocket()  # type: ignore[assignment]
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    for topic, payload in msgs:
        client.publish(topic, payload, qos=0)
    return bytes(sock.sent)


def paho_cost(cls: type[mqtt.Client], data: bytes, n: int) -> float:
    client = cls(mqtt.CallbackAPIVersion.VERSION2, client_id="cost", protocol=mqtt.MQTTv311)
    got = [0]

    def on_message(c, u, m) -> None:
        got[0] += 1

    client.on_message = on_message
    client._sock = MemorySocket(data)  # type: ignore[assignment]
    t0 = time.process_time()
    while got[0] < n:
        client.loop_read()
    return (time.process_time() - t0) / n * 1e6


def bridge_cost(msgs: list[tuple[str, bytes]], uid: str) -> tuple[float, float]:
    from connectors.mqtt.mapped import MappedMqttBridge

    tmp = Path(tempfile.mkdtemp(prefix="bench-mqtt-cost-"))
    settings = Settings(
        topics={"raw": f"bench.raw.{uid}", "raw_partitions": 1}, bridge={"buffer": {"spill_dir": str(tmp)}}
    )
    bridge = None
    try:  # the topic and the folder (mapping, the publisher's spill buffer) go again, also after Ctrl-C
        (tmp / "m.toml").write_text(mapping_text("mqtt", ASSETS, uid, 1, 0, 100))
        ensure_topics(settings, [s for s in topic_specs(settings) if s.name == settings.topics.raw])
        bridge = MappedMqttBridge(settings, load_mapping(tmp / "m.toml"), commands=False)
        bridge.publisher.start()
        return _bridge_cost(bridge, msgs)
    finally:
        with cleaning_up():
            if bridge is not None:
                bridge.publisher.close(10)
            drop_topic(settings.topics.raw)
            shutil.rmtree(tmp, ignore_errors=True)


def _bridge_cost(bridge, msgs: list[tuple[str, bytes]]) -> tuple[float, float]:
    """CPU µs per message and messages/s of ``bridge`` taking ``msgs`` until Kafka acknowledged them."""

    class Msg:
        __slots__ = ("payload", "topic")

        def __init__(self, topic: str, payload: bytes) -> None:
            self.topic, self.payload = topic, payload

    items = [Msg(t, p) for t, p in msgs]
    broker = next(iter(bridge.brokers.values()))
    t0, w0 = time.process_time(), time.perf_counter()
    for m in items:
        bridge._on_message(broker, m)
    ok = bridge.publisher.wait_idle(120)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    stats = bridge.publisher.counters
    if not ok or stats.delivered != len(items):
        raise RuntimeError(f"Kafka acknowledged {stats.delivered} of {len(items)} records")
    return cpu / len(items) * 1e6, len(items) / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=30000)
    args = ap.parse_args()
    uid = uuid.uuid4().hex[:6]
    msgs = payloads(args.messages, uid)
    data = encoded(msgs)
    for cls in (mqtt.Client, BufferedClient):
        print(f"paho parse+dispatch, {cls.__name__:<14} {paho_cost(cls, data, len(msgs)):6.2f} µs CPU/message")
    us, rate = bridge_cost(msgs, uid)
    print(f"bridge callback → Kafka ack          {us:6.2f} µs CPU/message ({rate:,.0f} messages/s, all threads)")


if __name__ == "__main__":
    with interruptible("its topic and folder are removed"):
        main()
