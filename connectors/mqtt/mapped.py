"""MQTT → Kafka bridge driven by the mapping file: JSON and plain payloads, Sparkplug B, commands.

Every MQTT device of the mapping (a broker: the ``[mqtt]`` section or a ``[devices.NAME]`` table)
gets its own paho client, subscribed to the topics of its assets (:mod:`connectors.mqtt.routes`).
A parameter has a topic and either a JSON path (``motor.rpm``, ``metrics[name=temp].value``) or
none (the payload is a plain number or ``true``/``false``). A topic may hold ``{name}``
placeholders (one level each): one asset then serves every device publishing there, its twin_id
built from them. Values, source timestamps and qualities are read by
:mod:`connectors.mqtt.message_values`; Sparkplug B assets by :mod:`connectors.mqtt.sparkplug_edges`.

Values are checked here, where the device's bytes are at hand: a value of the wrong type, an
unreadable timestamp, a payload that is not JSON or carries none of the mapped paths is
dead-lettered with the **original bytes**, the ``mqtt.topic`` header, the reason and the field
(``readings.running``); the other values of the message go on.

Commands go to the asset's ``command_topic`` as ``{"command_id", "parameter", "value", "ts"}``
(Sparkplug: DCMD/NCMD). Without ``ack_topic`` a command is ``applied`` once the broker took it;
with ``ack_topic`` the device's answer ``{"command_id", "status", "error"}`` decides.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from connectors.bridges.base import Bridge, Device
from connectors.bridges.mapping.schema import MqttAsset, MqttConnection
from connectors.extras import require
from connectors.mqtt.client import make_client
from connectors.mqtt.message_values import MetaReader, nothing_mapped, values_of
from connectors.mqtt.payload import MISSING
from connectors.mqtt.routes import SPARKPLUG_NS, TopicRoutes, TwinAssets, TwinRoute
from connectors.mqtt.sparkplug_edges import SparkplugEdges
from operators.records.commands import Refused
from operators.records.envelope import Reason, Rejected

log = logging.getLogger(__name__)


@dataclass
class _Broker:
    device: Device
    conn: MqttConnection
    routes: TopicRoutes
    client: Any = None
    subscribed: threading.Event = field(default_factory=threading.Event)


class MappedMqttBridge(Bridge):
    protocol = "mqtt"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received = 0
        self.unmapped = 0
        self.sparkplug = SparkplugEdges(self.emit, self.reject)
        self.meta = MetaReader()
        self._acks: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self.brokers: dict[str, _Broker] = {}
        self._asset_of_broker: dict[int, _Broker] = {}
        for name, dev in self.devices.items():
            b = self.brokers[name] = _Broker(dev, dev.conn, TopicRoutes.plan(dev.assets, dev.conn.ts_format))
            b.client = self._client(b)
            for a in dev.assets:
                self._asset_of_broker[id(a)] = b
        if any(b.routes.sparkplug for b in self.brokers.values()):
            require("sparkplug")  # the codec's protobuf is an extra: fail at start, naming the install command
        self.twins = TwinAssets(self.assets)

    @staticmethod
    def address_of(conn: Any) -> str:
        return f"{conn.host}:{conn.port}"

    # ------------------------------------------------------------------ MQTT client
    def _client(self, b: _Broker):
        c = b.conn
        client = make_client(
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
        subscriptions = b.routes.subscriptions

        def on_connect(client, userdata, flags, reason_code, properties) -> None:
            if reason_code.is_failure:
                b.device.health.error(f"connection refused: {reason_code}")
                log.error("MQTT %s (%s:%d) refused the connection: %s", b.device.name, c.host, c.port, reason_code)
                return
            client.subscribe([(t, c.qos) for t in subscriptions])  # up on the SUBACK
            log.info("MQTT %s: subscribing to %d topics (qos %d)", b.device.name, len(subscriptions), c.qos)

        def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
            refused = [t for t, rc in zip(subscriptions, reason_codes, strict=False) if rc.is_failure]
            if refused:
                b.device.health.error(f"subscription refused: {', '.join(refused[:3])}")
                log.error("MQTT %s refused the subscription to %s: check the broker's ACL", b.device.name, refused[:3])
            b.subscribed.set()
            self.device_up(b.device)

        def on_disconnect(client, userdata, flags, reason_code, properties) -> None:
            b.subscribed.clear()
            b.device.health.down(f"disconnected: {reason_code}" if reason_code.is_failure else None)
            self._set_connected()
            if reason_code.is_failure:
                b.device.health.reconnects += 1
                log.warning("MQTT %s disconnected (%s); paho reconnects with backoff", b.device.name, reason_code)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_disconnect = on_disconnect
        client.on_message = lambda client, userdata, msg: self._on_message(b, msg)
        return client

    async def serve(self, device: Device, stop: asyncio.Event) -> None:
        b = self.brokers[device.name]
        b.client.connect_async(b.conn.host, b.conn.port, keepalive=b.conn.keepalive_s)
        b.client.loop_start()  # paho reconnects by itself
        try:
            await stop.wait()
        finally:
            b.client.disconnect()
            b.client.loop_stop()

    # ------------------------------------------------------------------ messages
    def _on_message(self, b: _Broker, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        topic = msg.topic
        routes = b.routes
        try:
            if topic.startswith(SPARKPLUG_NS + "/") and routes.sparkplug:
                self.sparkplug.on_message(routes.sparkplug, b.device, b.client, topic, msg.payload)
                return
            if routes.is_ack(topic):
                self._on_ack(topic, msg.payload)
                return
            try:
                twins = routes.twins_of(topic)
            except Rejected as exc:
                self.reject(None, msg.payload, exc.reason.value, exc.detail, headers=[("mqtt.topic", topic.encode())])
                return
            if twins:
                self._on_payload(b, topic, msg.payload, twins)
        except Exception as exc:  # a bug must not cost the broker connection: dead-letter, count, go on
            log.exception("MQTT %s: message on %s failed", b.device.name, topic)
            self.reject(None, msg.payload, Reason.SCHEMA.value, f"bridge error: {type(exc).__name__}: {exc}",
                        headers=[("mqtt.topic", topic.encode())])  # fmt: skip

    def _on_payload(self, b: _Broker, topic: str, payload: bytes, twins: list[TwinRoute]) -> None:
        headers = [("mqtt.topic", topic.encode())]
        doc: Any = MISSING
        emitted = False
        for route in twins:
            if doc is MISSING and any(p.parts is not None for p in route.params):
                try:
                    doc = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    doc = None
            try:
                ts, quality, status = self.meta.meta(route, doc)
            except Rejected as exc:
                self.reject(route.twin_id, payload, exc.reason.value, exc.detail, field=exc.field, headers=headers)
                emitted = True
                continue
            readings, text, wrong = values_of(route, payload, doc, quality)
            if wrong:
                for name, why in wrong:
                    self.reject(route.twin_id, payload, Reason.SCHEMA.value, f"readings.{name}: {why}",
                                field=f"readings.{name}", headers=headers)  # fmt: skip
                emitted = True
            if readings or text:
                st = {n: status for n in (*readings, *text)} if status else None
                self.emit(route.twin_id, ts, readings, quality, st, text or None)
                b.device.health.got(len(readings) + len(text))
                emitted = True
        if not emitted:
            self.unmapped += 1
            reason, detail = nothing_mapped(twins, doc, topic)
            self.reject(twins[0].twin_id, payload, reason.value, detail, headers=headers)

    # ------------------------------------------------------------------ commands
    def writable(self) -> Any:
        """Commands for the mapping's twins, template twins (by their id pattern) included."""

        def of(twin_id: str) -> dict[str, bool] | None:
            found = self.twins.of(twin_id)
            return None if found is None else {n: p.writable for n, p in found[0].params.items()}

        return of

    def _asset_vars(self, twin_id: str) -> tuple[MqttAsset, dict[str, str]]:
        found = self.twins.of(twin_id)
        if found is None:
            raise Refused(f"twin {twin_id!r} is not in the mapping")
        return found

    async def write(self, twin_id: str, parameter: str, value: float | bool, command_id: str = "") -> None:
        a, vars_ = self._asset_vars(twin_id)
        b = self._asset_of_broker[id(a)]
        if not b.subscribed.is_set():
            raise ConnectionError(f"not connected to MQTT {b.conn.host}:{b.conn.port} ({b.device.name})")
        if a.sparkplug is not None:
            topic, body = self.sparkplug.command(a, vars_, parameter, value)
        else:
            assert a.command_topic
            topic = a.command_topic.format(**vars_)
            body = orjson.dumps(
                {"command_id": command_id, "parameter": parameter, "value": value, "ts": datetime.now(UTC).isoformat()}
            )
        loop = asyncio.get_running_loop()
        waiting = bool(a.ack_topic and command_id)
        if waiting:
            fut = loop.create_future()
            self._acks[command_id] = (loop, fut)
        try:
            info = b.client.publish(topic, body, qos=max(b.conn.qos, 1))
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError(f"MQTT publish to {topic} failed: {mqtt.error_string(info.rc)}")
            # Wait for the broker's acknowledgement (PUBACK/PUBCOMP) without blocking the loop.
            await loop.run_in_executor(None, info.wait_for_publish, 10.0)
            if not info.is_published():
                raise TimeoutError(f"broker did not acknowledge the command on {topic}")
            if waiting:
                await self._device_ack(fut, a, vars_, command_id)
        finally:
            self._acks.pop(command_id, None)

    async def _device_ack(self, fut: asyncio.Future, a: MqttAsset, vars_: dict[str, str], command_id: str) -> None:
        b = self._asset_of_broker[id(a)]
        try:
            ack = await asyncio.wait_for(fut, b.conn.ack_timeout_s)
        except TimeoutError:
            raise ConnectionError(
                f"no device ack for command {command_id} on {a.ack_topic.format(**vars_)} "  # type: ignore[union-attr]
                f"within {b.conn.ack_timeout_s:g} s"
            ) from None
        status = ack.get("status")
        if status == "applied":
            return
        error = str(ack.get("error") or "")
        if status == "rejected":
            raise Refused(f"device rejected it: {error}")
        raise RuntimeError(f"device reported {status!r}: {error}")

    def _on_ack(self, topic: str, payload: bytes) -> None:
        try:
            ack = orjson.loads(payload)
        except orjson.JSONDecodeError:
            ack = None
        if not isinstance(ack, dict) or not isinstance(ack.get("command_id"), str):
            self.reject(None, payload, Reason.SCHEMA.value, f"device ack on {topic!r} without a command_id",
                        headers=[("mqtt.topic", topic.encode())])  # fmt: skip
            return
        waiting = self._acks.get(ack["command_id"])
        if waiting is None:
            log.info(
                "MQTT ack on %s for command %s that no write waits for (late or repeated)", topic, ack["command_id"]
            )
            return
        loop, fut = waiting
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(ack))
