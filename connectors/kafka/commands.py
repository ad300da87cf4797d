"""Command path: consume ``twin.commands``, apply the ones this bridge owns, answer on ``twin.acks``.

Each bridge reads the command topic with its own consumer group and handles only the twins its
mapping gives it (others are skipped: the bridge that owns them answers). Commands are read in
batches (what the topic holds, up to :data:`BATCH_MAX`); within a batch a command that a newer one
for the same twin and parameter replaces is not written: it is answered ``superseded`` (naming the
newer command), so a burst of changes writes the newest value only, and every command still gets
its ack. The others are applied in topic order. The acks and the consumed offsets are committed in
one Kafka transaction after each device write (and at the end of the batch), so every command
yields exactly one ``twin.acks`` record, even when the bridge restarts mid-way (a restart may repeat
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
    superseded_by,
)

log = logging.getLogger(__name__)

# (command, timeout_s) -> None on success; raises with the reason on failure.
Apply = Callable[[Command, float], None]
# Commands read (and coalesced) at once at most.
BATCH_MAX = 500


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
        self.writes = 0  # commands handed to the device (not superseded, not refused before writing)
        # (topic, partition) → next offset committed: a failed batch resumes there.
        self._done: dict[tuple[str, int], int] = {}
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
        """Stop after the device write in hand (waiting up to ``timeout`` for it)."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():  # still writing to a device: never close a consumer in use
            log.warning("command thread still busy after %.0f s; leaving it", timeout)
            return
        self.consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msgs = self.consumer.consume(BATCH_MAX, 0.2)
            except KafkaException as exc:
                log.warning("command consumer: %s", exc)
                continue
            batch = []
            for msg in msgs:
                if msg.error():
                    log.warning("command consumer: %s", msg.error())
                else:
                    batch.append(msg)
            if not batch:
                continue
            try:
                self._handle(batch)
            except Exception:
                log.exception("commands from offset %s failed; they are retried", batch[0].offset())
                self._rewind(batch)

    def _rewind(self, batch: list[Message]) -> None:
        """Seek every partition of ``batch`` back to its first command not committed yet."""
        first: dict[tuple[str, int], int] = {}
        for msg in batch:
            first.setdefault((msg.topic(), msg.partition()), msg.offset())
        for (topic, partition), offset in first.items():
            done = self._done.get((topic, partition))
            try:
                self.consumer.seek(TopicPartition(topic, partition, max(offset, done or 0)))
            except KafkaException:
                log.exception("seek failed")
        self._stop.wait(1.0)

    def _decode(self, msg: Message) -> Command | Ack | None:
        """The command if it is ours, the ack of a malformed record of ours, None when not ours."""
        try:
            cmd = decode_command(msg.value())
        except BadCommand as exc:
            cid, twin = peek_ids(msg.value())
            if self._writable_of(twin) is None:
                return None
            cid = cid or f"{msg.topic()}:{msg.partition()}:{msg.offset()}"
            bad = Command(cid, twin or "", "", 0.0, issued_at=datetime.now(UTC))
            return make_ack(bad, "rejected", f"malformed command: {exc}", source=self.protocol)
        return cmd if self._writable_of(cmd.twin_id) is not None else None

    def _decide(self, cmd: Command) -> Ack:
        """Apply a command of ours; its ack."""
        now = datetime.now(UTC)
        writable = self._writable_of(cmd.twin_id) or {}
        ack = precheck(cmd, writable, now, source=self.protocol)
        if ack is not None:
            return ack
        timeout = 10.0 if cmd.deadline is None else max((cmd.deadline - now).total_seconds(), 0.1)
        self.writes += 1
        try:
            self.apply(cmd, timeout)
        except Refused as exc:
            return make_ack(cmd, "rejected", str(exc), source=self.protocol)
        except TimeoutError:
            return make_ack(cmd, "expired", "deadline passed while writing to the device", source=self.protocol)
        except Exception as exc:
            return make_ack(cmd, "failed", f"{type(exc).__name__}: {exc}", source=self.protocol)
        return make_ack(cmd, "applied", None, source=self.protocol)

    def _handle(self, batch: list[Message]) -> None:
        """Answer every command of ``batch``: superseded ones without writing, the others in order."""
        decoded = [self._decode(m) for m in batch]
        newer = superseded_by([d if isinstance(d, Command) else None for d in decoded])
        acks: list[Ack] = []
        offsets: dict[tuple[str, int], int] = {}
        for i, (msg, item) in enumerate(zip(batch, decoded, strict=True)):
            offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
            if item is None:
                continue  # another bridge's twin
            if isinstance(item, Ack):
                acks.append(item)
                continue
            later = newer.get(i)
            if later is not None:
                acks.append(_superseded(item, later, self.protocol))
                continue
            writes = self.writes
            acks.append(self._decide(item))
            if self.writes != writes:  # a written command's ack goes out at once, with those before it
                self._commit(acks, offsets)
                acks, offsets = [], {}
                if self._stop.is_set():
                    return  # stopping: the rest of the batch is read again at the next start
        if offsets:
            self._commit(acks, offsets)
        if newer:
            log.info("%d command(s) superseded by newer ones for the same parameter: not written", len(newer))

    def _commit(self, acks: list[Ack], offsets: dict[tuple[str, int], int]) -> None:
        """Publish ``acks`` and commit ``offsets`` in one transaction (offsets alone: a plain commit)."""
        parts = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        if not acks:
            self.consumer.commit(offsets=parts, asynchronous=True)
        else:
            self.producer.begin_transaction()
            try:
                for ack in acks:
                    self.producer.produce(
                        self.settings.twin.acks_topic, key=ack.twin_id.encode(), value=encode_ack(ack)
                    )
                self.producer.send_offsets_to_transaction(parts, self.consumer.consumer_group_metadata(), 10)
                self.producer.commit_transaction(30)
            except KafkaException:
                self.producer.abort_transaction(30)
                raise
        self._done.update(offsets)
        self.acks.extend(acks)
        for ack in acks:
            log.log(
                logging.DEBUG if ack.status == "superseded" else logging.INFO,
                "command %s %s.%s → %s %s",
                ack.command_id,
                ack.twin_id,
                ack.parameter,
                ack.status,
                ack.error or "",
            )


def _superseded(cmd: Command, newer: Command, source: str) -> Ack:
    return make_ack(
        cmd,
        "superseded",
        f"not written: command {newer.command_id} sets {cmd.parameter} of {cmd.twin_id} to {newer.value} "
        "and came before this one was written",
        source=source,
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
