"""Command path: consume ``twin.commands``, apply the ones this bridge owns, answer on ``twin.acks``.

Each bridge reads the command topic with its own consumer group and handles only the twins its
mapping gives it (others are skipped: the bridge that owns them answers). For each command the
ack and the consumed offset are committed in one Kafka transaction, so every command yields
exactly one ``twin.acks`` record, even when the bridge restarts mid-way (a restart may repeat
the device write — setpoints are idempotent — but never the ack).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from connectors.config.contract import ConnectorSettings
from connectors.kafka.clients import client_config, producer_config
from connectors.retry import retry
from operators.records.commands import (
    Ack,
    BadCommand,
    Command,
    Refused,
    decode_ack,
    decode_command,
    encode_ack,
    make_ack,
    peek_ids,
    precheck,
)

log = logging.getLogger(__name__)

# (command, timeout_s) -> None on success; raises with the reason on failure.
Apply = Callable[[Command, float], None]


class CommandListener:
    def __init__(
        self,
        settings: ConnectorSettings,
        protocol: str,
        writable: dict[str, dict[str, bool]] | Callable[[str], dict[str, bool] | None],
        apply: Apply,
        instance: str = "default",
    ) -> None:
        """``writable``: twin_id → {parameter: writable} for the twins this bridge owns, or a function
        answering that for a twin_id (None: not ours), for bridges whose twins follow a pattern."""
        self.settings = settings
        self.protocol = protocol
        self.writable = writable
        self.apply = apply
        group = f"{settings.bridge.command_group}-{protocol}-{instance}"
        self.consumer = Consumer(
            client_config(
                settings,
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                },
            )
        )
        self.producer = Producer(
            producer_config(
                settings,
                **{"transactional.id": f"{group}-acks", "linger.ms": 0, "message.timeout.ms": 60000},
            )
        )
        self.assigned = threading.Event()
        self.acks: list[Ack] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"commands-{protocol}", daemon=True)

    def _writable_of(self, twin_id: str | None) -> dict[str, bool] | None:
        if twin_id is None:
            return None
        if callable(self.writable):
            return self.writable(twin_id)
        return self.writable.get(twin_id)

    @property
    def alive(self) -> bool:
        """False when the command thread ended although nobody stopped it."""
        return self._thread.ident is None or self._stop.is_set() or self._thread.is_alive()

    def start(self) -> CommandListener:
        retry(
            lambda: self.producer.init_transactions(10),
            retry_on=(KafkaException,),
            what="init Kafka transactions for acks",
        )
        self.consumer.subscribe([self.settings.twin.commands_topic], on_assign=lambda c, p: self.assigned.set())
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop after the command in hand (waiting up to ``timeout`` for it)."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():  # still writing to a device: never close a consumer in use
            log.warning("command thread still busy after %.0f s; leaving it", timeout)
            return
        self.consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.consumer.poll(0.2)
            except KafkaException as exc:
                log.warning("command consumer: %s", exc)
                continue
            if msg is None:
                continue
            if msg.error():
                log.warning("command consumer: %s", msg.error())
                continue
            try:
                self._handle(msg)
            except Exception:
                log.exception("command at offset %s failed; it is retried", msg.offset())
                self._rewind(msg)

    def _rewind(self, msg: Message) -> None:
        try:
            self.consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
        except KafkaException:
            log.exception("seek failed")
        self._stop.wait(1.0)

    def _decide(self, msg: Message) -> Ack | None:
        """Apply the command if it is ours; the ack to send, or None when it belongs to another bridge."""
        now = datetime.now(UTC)
        try:
            cmd = decode_command(msg.value())
        except BadCommand as exc:
            cid, twin = peek_ids(msg.value())
            if self._writable_of(twin) is None:
                return None
            cid = cid or f"{msg.topic()}:{msg.partition()}:{msg.offset()}"
            cmd = Command(cid, twin, "", 0.0, issued_at=now)
            return make_ack(cmd, "rejected", f"malformed command: {exc}", source=self.protocol, now=now)
        writable = self._writable_of(cmd.twin_id)
        if writable is None:
            return None
        ack = precheck(cmd, writable, now, source=self.protocol)
        if ack is not None:
            return ack
        timeout = 10.0 if cmd.deadline is None else max((cmd.deadline - now).total_seconds(), 0.1)
        try:
            self.apply(cmd, timeout)
        except Refused as exc:
            return make_ack(cmd, "rejected", str(exc), source=self.protocol)
        except TimeoutError:
            return make_ack(cmd, "expired", "deadline passed while writing to the device", source=self.protocol)
        except Exception as exc:
            return make_ack(cmd, "failed", f"{type(exc).__name__}: {exc}", source=self.protocol)
        return make_ack(cmd, "applied", None, source=self.protocol)

    def _handle(self, msg: Message) -> None:
        ack = self._decide(msg)
        next_offset = [TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)]
        if ack is None:
            self.consumer.commit(offsets=next_offset, asynchronous=True)
            return
        self.producer.begin_transaction()
        try:
            self.producer.produce(self.settings.twin.acks_topic, key=ack.twin_id.encode(), value=encode_ack(ack))
            self.producer.send_offsets_to_transaction(next_offset, self.consumer.consumer_group_metadata(), 10)
            self.producer.commit_transaction(30)
        except KafkaException:
            self.producer.abort_transaction(30)
            raise
        self.acks.append(ack)
        log.info(
            "command %s %s.%s → %s %s",
            ack.command_id,
            ack.twin_id,
            ack.parameter,
            ack.status,
            ack.error or "",
        )


def wait_ack(settings: ConnectorSettings, command_id: str, timeout: float) -> list[Ack]:
    """Acks for ``command_id`` seen on ``twin.acks`` within ``timeout`` (read from the beginning)."""
    import time
    import uuid

    consumer = Consumer(
        client_config(
            settings,
            **{
                "group.id": f"twinflow-ack-reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            },
        )
    )
    consumer.subscribe([settings.twin.acks_topic])
    found: list[Ack] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not found:
            for msg in consumer.consume(500, 0.3):
                if msg.error() is None and msg.value():
                    try:
                        ack = decode_ack(msg.value())
                    except (msgspec.ValidationError, msgspec.DecodeError):
                        continue  # another device's malformed ack (the twin flow dead-letters it)
                    if ack.command_id == command_id:
                        found.append(ack)
    finally:
        consumer.close()
    return found
