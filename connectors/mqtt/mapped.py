"""MQTT → Kafka bridge driven by the mapping file, with commands published to the asset.

Each parameter has a topic and either a JSON path (values picked from a JSON document) or none
(the payload is a plain number). The asset's ``ts_path``/``quality_path`` give the source
timestamp and quality when present (else receive time and ``good``). A payload the bridge
cannot map is forwarded unchanged to ``telemetry.raw``, where the flow dead-letters it with the
reason — the bridge never drops it. Commands go to the asset's ``command_topic`` as
``{"command_id", "parameter", "value"}`` with the configured QoS.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from connectors.bridge import Bridge
from connectors.mqtt.client import make_client, subscription_ready
from connectors.mqtt.payload import MISSING, extract, parse_plain, parse_ts, split_path
from twinflow.mapping import MqttAsset

log = logging.getLogger(__name__)

QUALITIES = ("good", "uncertain", "bad")


class MappedMqttBridge(Bridge):
    protocol = "mqtt"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = c = self.mapping.mqtt
        # topic → [(asset, parameter, path parts or None)]
        self.routes: dict[str, list[tuple[MqttAsset, str, tuple[str, ...] | None]]] = {}
        for a in self.assets:
            assert isinstance(a, MqttAsset)
            for name, p in a.params.items():
                parts = split_path(p.path) if p.path else None
                self.routes.setdefault(a.topic_of(name), []).append((a, name, parts))
        self._ts_paths = {a.twin_id: split_path(a.ts_path) if a.ts_path else None for a in self.assets}
        self._q_paths = {a.twin_id: split_path(a.quality_path) if a.quality_path else None for a in self.assets}
        # Topics whose parameters all have JSON paths (the common case) take a precomputed fast path:
        # topic → [(twin_id, [(parameter, path parts)])], twins in the order of their first route.
        self._json_routes: dict[str, list[tuple[str, list[tuple[str, tuple[str, ...]]]]]] = {}
        for topic, routes in self.routes.items():
            if all(parts is not None for _, _, parts in routes):
                groups: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
                for asset, name, parts in routes:
                    groups.setdefault(asset.twin_id, []).append((name, parts))  # type: ignore[arg-type]
                self._json_routes[topic] = list(groups.items())
        self._ts_cache: tuple[object, datetime | None] = (None, None)  # one-entry parse_ts cache
        self.received = 0
        self.unmapped = 0
        self.client = make_client(
            c.client_id,
            clean_session=c.clean_session,
            username=c.username,
            password=c.password.get_secret_value() if c.password else None,
            tls=c.tls,
            ca_file=self.mapping.path(c.ca_file),
            certfile=self.mapping.path(c.certfile),
            keyfile=self.mapping.path(c.keyfile),
            tls_insecure=c.tls_insecure,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = subscription_ready(list(self.routes), self.connected)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT %s:%d refused the connection: %s", self.conn.host, self.conn.port, reason_code)
            return
        client.subscribe([(t, self.conn.qos) for t in self.routes])  # `connected` is set on the SUBACK
        log.info("MQTT: subscribing to %d topics (qos %d)", len(self.routes), self.conn.qos)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if reason_code.is_failure:
            log.warning("MQTT disconnected (%s); paho reconnects with backoff", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        topic = msg.topic
        fast = self._json_routes.get(topic)
        if fast is not None:
            self._on_json(topic, msg.payload, fast)
            return
        routes = self.routes.get(topic)
        if not routes:
            return
        payload: bytes = msg.payload
        now = datetime.now(UTC)
        doc: Any = MISSING
        per_twin: dict[str, dict[str, Any]] = {}
        meta: dict[str, tuple[datetime, str]] = {}
        for asset, name, parts in routes:
            if parts is None:
                value: Any = parse_plain(payload)
                if value is None:
                    continue
            else:
                if doc is MISSING:
                    try:
                        doc = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        doc = None
                value = extract(doc, parts)
                if value is MISSING:
                    continue
            per_twin.setdefault(asset.twin_id, {})[name] = value
            if asset.twin_id not in meta:
                meta[asset.twin_id] = self._meta(asset.twin_id, doc, now)
        if not per_twin:
            self.unmapped += 1
            self.emit_raw(routes[0][0].twin_id, payload, [("mqtt.topic", msg.topic.encode())])
            return
        for twin, readings in per_twin.items():
            ts, quality = meta[twin]
            self.emit(twin, ts, readings, quality)

    def _on_json(self, topic: str, payload: bytes, groups: list[tuple[str, list[tuple[str, tuple[str, ...]]]]]) -> None:
        """A topic whose parameters all have JSON paths: same result as the general path, fewer steps."""
        try:
            doc: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            doc = None
        is_dict = isinstance(doc, dict)
        emitted = False
        for twin, params in groups:
            readings: dict[str, Any] = {}
            for name, parts in params:
                value = doc.get(parts[0], MISSING) if is_dict and len(parts) == 1 else extract(doc, parts)
                if value is not MISSING:
                    readings[name] = value
            if readings:
                ts, quality = self._meta(twin, doc, None)
                self.emit(twin, ts, readings, quality)
                emitted = True
        if not emitted:
            self.unmapped += 1
            self.emit_raw(groups[0][0], payload, [("mqtt.topic", topic.encode())])

    def _parse_ts(self, raw: object) -> datetime | None:
        """``parse_ts`` with a one-entry cache: the assets of one publisher share their timestamps."""
        last_raw, last = self._ts_cache
        if raw == last_raw and type(raw) is type(last_raw):
            return last
        ts = parse_ts(raw)
        self._ts_cache = (raw, ts)
        return ts

    def _meta(self, twin: str, doc: Any, now: datetime | None) -> tuple[datetime, str]:
        ts, quality = None, "good"
        if isinstance(doc, dict):
            tp, qp = self._ts_paths[twin], self._q_paths[twin]
            if tp is not None:
                ts = self._parse_ts(extract(doc, tp))
            if qp is not None:
                q = extract(doc, qp)
                quality = q if q in QUALITIES else quality
        return ts or now or datetime.now(UTC), quality  # type: ignore[return-value]

    async def run(self, stop: asyncio.Event) -> None:
        self.client.connect_async(self.conn.host, self.conn.port, keepalive=self.conn.keepalive_s)
        self.client.loop_start()
        try:
            await stop.wait()
        finally:
            self.client.disconnect()
            self.client.loop_stop()

    async def write(self, twin_id: str, parameter: str, value: float) -> None:
        asset = self.mapping.asset(twin_id)
        assert isinstance(asset, MqttAsset) and asset.command_topic
        if not self.connected.is_set():
            raise ConnectionError(f"not connected to MQTT {self.conn.host}:{self.conn.port}")
        body = orjson.dumps({"parameter": parameter, "value": value, "ts": datetime.now(UTC).isoformat()})
        info = self.client.publish(asset.command_topic, body, qos=max(self.conn.qos, 1))
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"MQTT publish to {asset.command_topic} failed: {mqtt.error_string(info.rc)}")
        # Wait for the broker's acknowledgement (PUBACK/PUBCOMP) without blocking the loop.
        await asyncio.get_running_loop().run_in_executor(None, info.wait_for_publish, 10.0)
        if not info.is_published():
            raise TimeoutError(f"broker did not acknowledge the command on {asset.command_topic}")
