"""MQTT → Kafka bridge: subscribes to a topic pattern and produces envelopes to ``telemetry.raw``.

paho-mqtt with a persistent session (clean_session=False, fixed client id) and QoS 1
by default, so readings published while the bridge is down wait in the broker.
The Kafka producer is idempotent with acks=all; when its queue is full the bridge
blocks (back-pressure) instead of dropping.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from confluent_kafka import KafkaError, Message, Producer

from connectors.kafka.clients import make_producer
from connectors.mqtt.payload import PayloadMapper
from connectors.mqtt.security import configure_client
from operators.envelope import Reason
from operators.ingest import MAX_DEAD_LETTER_KEY_BYTES, DeadLetter
from twinflow.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class BridgeCounters:
    received: int = 0
    produced: int = 0
    failed: int = 0


class MqttBridge:
    def __init__(self, settings: Settings, producer: Producer | None = None) -> None:
        self.settings = settings
        self.mqtt_settings = settings.mqtt
        self.producer = producer or make_producer(settings)
        self.mapper = PayloadMapper(
            twin_level=settings.mqtt.twin_level, max_bytes=settings.flow.max_message_bytes * 4
        )
        self.counters = BridgeCounters()
        self.connected = threading.Event()
        self._stop = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt.client_id,
            clean_session=False,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        configure_client(self.client, settings.mqtt)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect refused: %s", reason_code)
            return
        client.subscribe(self.mqtt_settings.topic, qos=self.mqtt_settings.qos)
        log.info("subscribed to %s (qos %d)", self.mqtt_settings.topic, self.mqtt_settings.qos)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); paho reconnects", reason_code)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.counters.produced += 1
        else:
            self.counters.failed += 1
            log.error("Kafka delivery failed for key %r: %s", msg.key(), err)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self.counters.received += 1
        if len(msg.payload) > self.settings.security.max_mqtt_payload_bytes:
            topic, key, value, headers = self._oversized(msg)
        else:
            topic = self.settings.topics.raw
            key, value = self.mapper.map(msg.topic, msg.payload)
            headers = [("mqtt.topic", msg.topic.encode())]
        while True:
            try:
                self.producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=headers,
                    on_delivery=self._delivered,
                )
                break
            except BufferError:
                # Queue full: wait for deliveries instead of dropping (back-pressure to MQTT).
                self.producer.poll(0.1)
        self.producer.poll(0)

    def _oversized(self, msg: mqtt.MQTTMessage) -> tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]:
        """A payload above the MQTT size limit goes straight to the DLQ, cut to the limit."""
        limit = self.settings.security.max_mqtt_payload_bytes
        twin = self.mapper.twin_of(msg.topic)
        dead = DeadLetter(
            value=msg.payload[:limit],
            key=twin.encode()[:MAX_DEAD_LETTER_KEY_BYTES] if twin else None,
            reason=Reason.TOO_LARGE.value,
            detail=f"MQTT payload of {len(msg.payload)} bytes > security.max_mqtt_payload_bytes {limit}",
            topic=msg.topic,
            partition=None,
            offset=None,
            rejected_at=datetime.now(UTC),
            truncated_from=len(msg.payload),
        )
        log.warning(
            "MQTT payload of %d bytes on %.200s dead-lettered: too large", len(msg.payload), msg.topic
        )
        return self.settings.topics.dlq, dead.key, dead.value, dead.headers()

    def start(self) -> None:
        self.client.connect_async(self.mqtt_settings.host, self.mqtt_settings.port, keepalive=30)
        self.client.loop_start()

    def stop(self, flush_timeout: float = 30.0) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()
        remaining = self.producer.flush(flush_timeout)
        if remaining:
            log.error("%d readings still unacknowledged by Kafka at shutdown", remaining)
        log.info(
            "bridge stopped: received %d, produced %d, failed %d",
            self.counters.received,
            self.counters.produced,
            self.counters.failed,
        )

    def run_forever(self) -> None:
        """Run until SIGINT/SIGTERM, polling delivery reports."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        while not stop.is_set():
            self.producer.poll(0.2)
            time.sleep(0.05)
        self.stop()
