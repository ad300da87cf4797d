"""The simulator's MQTT side: publishes each asset's values through the broker, takes commands.

Parameters sharing a topic are published as one JSON document built from their paths (plus the
asset's ``ts_path``/``quality_path``); a parameter without a path is a plain number on its topic.
Commands arrive on the asset's ``command_topic`` as ``{"parameter": …, "value": …}``.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from connectors.bridges.mapping.schema import Mapping, MqttAsset
from connectors.mqtt.client import make_client
from connectors.mqtt.payload import split_path
from connectors.sim.plant import Plant, Sample, simulated

log = logging.getLogger(__name__)


def _put(doc: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    for p in parts[:-1]:
        doc = doc.setdefault(p, {})
    doc[parts[-1]] = value


class SimMqttDevice:
    def __init__(self, mapping: Mapping, plant: Plant, client_id: str = "twinflow-simulator") -> None:
        self.conn = c = mapping.mqtt
        self.plant = plant
        self.assets: list[MqttAsset] = [a for a in mapping.of("mqtt") if simulated(a)]
        self.commands = {a.command_topic: a.twin_id for a in self.assets if a.command_topic}
        self.client = make_client(
            f"{client_id}-{os.getpid()}-{id(self)}",  # unique across simulator processes too
            clean_session=True,
            username=c.username,
            password=c.password.get_secret_value() if c.password else None,
            tls=c.tls,
            ca_file=mapping.path(c.ca_file),
            certfile=mapping.path(c.certfile),
            keyfile=mapping.path(c.keyfile),
            tls_insecure=c.tls_insecure,
        )
        self.client.max_inflight_messages_set(65535)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.lock = threading.Lock()
        self.writes = 0
        self._last: mqtt.MQTTMessageInfo | None = None
        # topic → [(asset, param, path parts | None)]
        self.topics: dict[str, list[tuple[MqttAsset, str, tuple[str, ...] | None]]] = {}
        for a in self.assets:
            for name, p in a.params.items():
                self.topics.setdefault(a.topic_of(name), []).append((a, name, split_path(p.path) if p.path else None))
        # Per route, computed once: twin, parameter, value path, quality path, ts path.
        self._plan = [
            (
                topic,
                [
                    (
                        a.twin_id,
                        name,
                        parts,
                        split_path(a.quality_path) if a.quality_path else None,
                        split_path(a.ts_path) if a.ts_path else None,
                    )
                    for a, name, parts in routes
                ],
            )
            for topic, routes in self.topics.items()
        ]

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("simulator MQTT connect refused: %s", reason_code)
            return
        if self.commands:
            client.subscribe([(t, 1) for t in self.commands])
        self.connected.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        twin = self.commands.get(msg.topic)
        try:
            cmd = orjson.loads(msg.payload)
            param, value = cmd["parameter"], float(cmd["value"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("simulator: malformed command on %s: %r", msg.topic, msg.payload[:200])
            return
        with self.lock:
            applied = twin is not None and self.plant.set(twin, param, value)
        self.writes += applied
        log.info("MQTT command %s.%s = %s (%s)", twin, param, value, "applied" if applied else "ignored")

    def start(self) -> None:
        self.client.connect_async(self.conn.host, self.conn.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise ConnectionError(f"simulator: cannot connect to MQTT {self.conn.host}:{self.conn.port}")
        log.info("MQTT device on %s:%d, %d topics", self.conn.host, self.conn.port, len(self.topics))

    def publish(self, samples: dict[str, Sample], ts: datetime) -> int:
        """Publish one tick: one message per topic, waking paho's network thread once per tick."""
        n = 0
        stamp = ts.isoformat()
        publish, qos = self.client.publish, self.conn.qos
        with self.client.batch():
            for topic, routes in self._plan:
                doc: dict[str, Any] = {}
                plain: float | None = None
                for twin, name, parts, q_parts, ts_parts in routes:
                    sample = samples[twin]
                    if sample.offline:
                        continue  # device_offline: the device is silent
                    if parts is None:
                        plain = sample.values[name]
                        continue
                    _put(doc, parts, sample.values[name])
                    if q_parts is not None and name in sample.quality:
                        _put(doc, q_parts, sample.quality[name])
                    if ts_parts is not None:
                        _put(doc, ts_parts, stamp)
                if not doc and plain is None:
                    continue
                payload = orjson.dumps(doc) if doc else repr(plain).encode()
                self._last = publish(topic, payload, qos=qos)
                n += 1
        return n

    def stop(self) -> None:
        if self._last is not None and self.conn.qos > 0:
            self._last.wait_for_publish(30)  # deliver what is queued before leaving
        self.client.disconnect()
        self.client.loop_stop()
