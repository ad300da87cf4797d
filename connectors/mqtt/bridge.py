"""MQTT → Kafka bridge: subscribes to a topic pattern and produces envelopes to ``telemetry.raw``.

paho-mqtt with a persistent session (clean_session=False, fixed client id) and QoS 1
by default, so readings published while the bridge is down wait in the broker.
Records go through the shared :class:`~connectors.kafka.publisher.Publisher` (idempotent
producer, bounded memory/file buffer); when it is full the bridge blocks (back-pressure)
instead of dropping.

This is the mapping-free bridge (``twinflow bridge mqtt``); with ``--mapping`` the
:class:`~connectors.mqtt.mapped.MappedMqttBridge` maps per-topic JSON paths or plain numbers.

The bridge checks what it forwards with the envelope's own rules
(:func:`operators.records.envelope.decode_partial`): a message that cannot be an envelope, or a bad
value in one, is dead-lettered here with the **device's original bytes**, the ``mqtt.topic``
header, the reason and the field; the valid values of the same message go on. Timestamps follow
the MQTT timestamp policy (``mqtt.ts_format``, :mod:`operators.devices.timestamps`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from confluent_kafka import Producer

from connectors.config.contract import ConnectorSettings
from connectors.kafka.publisher import Publisher
from connectors.mqtt.client import login_of, make_client, subscription_ready
from connectors.mqtt.payload import PayloadMapper
from connectors.stopping import STOP_FLUSH_S, stop_on_signals
from operators.records.envelope import Reason, Rejected, decode_partial, encode
from operators.telemetry.ingest import dead_letter_of

log = logging.getLogger(__name__)


@dataclass
class BridgeCounters:
    received: int = 0
    produced: int = 0
    failed: int = 0
    # Messages (or single values of them) dead-lettered by the bridge itself.
    dead_lettered: int = 0


class MqttBridge:
    def __init__(
        self, settings: ConnectorSettings, producer: Producer | None = None, publisher: Publisher | None = None
    ) -> None:
        self.settings = settings
        self.mqtt_settings = ms = settings.mqtt
        self.publisher = publisher or Publisher(settings, f"mqtt-{ms.client_id}", producer=producer)
        self.mapper = PayloadMapper(
            twin_level=ms.twin_level, max_bytes=settings.flow.max_message_bytes, ts_format=ms.ts_format
        )
        self.counters = BridgeCounters()
        self.connected = threading.Event()
        self._stop = threading.Event()
        self.client = make_client(ms.client_id, clean_session=False, **login_of(ms))
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = subscription_ready([self.mqtt_settings.topic], self.connected)
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect refused: %s", reason_code)
            return
        client.subscribe(self.mqtt_settings.topic, qos=self.mqtt_settings.qos)  # `connected` is set on the SUBACK
        log.info("subscribing to %s (qos %d)", self.mqtt_settings.topic, self.mqtt_settings.qos)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); paho reconnects", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self.counters.received += 1
        if len(msg.payload) > self.settings.security.max_mqtt_payload_bytes:
            topic, key, value, headers = self._oversized(msg)
            self.publisher.put(topic, key, value, headers)
            return
        headers = [("mqtt.topic", msg.topic.encode())]
        try:
            key, value = self.mapper.map(msg.topic, msg.payload)
            env, bad = decode_partial(value, key=key, max_bytes=self.settings.flow.max_message_bytes)
        except Rejected as exc:
            self._dead_letter(msg, exc.reason.value, exc.detail, exc.field)
            return
        for b in bad:
            self._dead_letter(msg, b.reason.value, b.detail, b.field)
        if bad:
            value = encode(env)  # the valid values only
        # Blocks when the local buffer is full: back-pressure to MQTT instead of dropping.
        self.publisher.put(self.settings.topics.raw, key, value, headers)

    def _dead_letter(self, msg: mqtt.MQTTMessage, reason: str, detail: str, field: str | None) -> None:
        """The device's bytes, as sent, to the DLQ with the reason, the field and the MQTT topic."""
        twin = self.mapper.twin_of(msg.topic)
        dead = dead_letter_of(
            msg.payload,
            twin.encode() if twin else None,
            reason,
            detail,
            max_value_bytes=self.settings.security.max_dead_letter_bytes,
            now=datetime.now(UTC),
            field=field,
            headers=[("mqtt.topic", msg.topic.encode()), ("bridge", b"mqtt")],
        )
        self.counters.dead_lettered += 1
        self.publisher.put(self.settings.topics.dlq, dead.key, dead.value or b"", dead.headers())

    def _oversized(self, msg: mqtt.MQTTMessage) -> tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]:
        """A payload above the MQTT size limit goes straight to the DLQ, cut to the limit."""
        limit = self.settings.security.max_mqtt_payload_bytes
        twin = self.mapper.twin_of(msg.topic)
        dead = dead_letter_of(
            msg.payload,
            twin.encode() if twin else None,
            Reason.TOO_LARGE.value,
            f"MQTT payload of {len(msg.payload)} bytes > security.max_mqtt_payload_bytes {limit}",
            max_value_bytes=limit,
            now=datetime.now(UTC),
            topic=msg.topic,
        )
        log.warning("MQTT payload of %d bytes on %.200s dead-lettered: too large", len(msg.payload), msg.topic)
        return self.settings.topics.dlq, dead.key, dead.value, dead.headers()

    def start(self) -> None:
        self.publisher.start()
        self.client.connect_async(self.mqtt_settings.host, self.mqtt_settings.port, keepalive=30)
        self.client.loop_start()

    def stop(self, flush_timeout: float = 30.0) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()
        self.publisher.close(flush_timeout)
        stats = self.publisher.stats()
        self.counters.produced, self.counters.failed = stats["delivered"], stats["refused"]
        log.info(
            "bridge stopped: received %d, produced %d, failed %d",
            self.counters.received,
            self.counters.produced,
            self.counters.failed,
        )

    def run_forever(self) -> None:
        """Run until SIGTERM/SIGINT; then deliver what is buffered (the rest stays in the spill file)."""
        stop = stop_on_signals()
        self.start()
        while not stop.wait(10):
            log.info("mqtt: received %d, publisher %s", self.counters.received, self.publisher.stats())
        self.stop(STOP_FLUSH_S)
