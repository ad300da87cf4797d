"""Kafka clients configured once from settings (confluent-kafka / librdkafka)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.config.contract import ConnectorSettings
from connectors.kafka.broker_log import broker_logger
from connectors.stopping import wait_unless_stopped

# Producer tuning: defaults that `kafka.extra` may override (docs/performance.md "Kafka broker CPU").
# linger.ms 50 (was 25, before that 5): fewer, larger produce requests; the broker's CPU per reading is
# per request, and it shares the cores with the flows (benchmarks/RESULTS.md "Producer linger 50 ms").
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 50,
    "compression.type": "lz4",
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 500000,
    "message.timeout.ms": 300000,
}
# Delivery guarantees: no loss, no duplicates on retry; nothing in `kafka.extra` overrides them.
PRODUCER_GUARANTEES: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}


def quiet_logger() -> logging.Logger:
    """A client's ``logger`` that keeps librdkafka's own log lines out of the output: a broker that does
    not answer prints one per connection attempt (hundreds in 30 s), burying the one line a one-shot
    command (``twin set-desired``, ``model reset``, ``kafka init``) prints about the outcome itself.
    Every other client logs through :func:`connectors.kafka.broker_log.broker_logger` (one line while
    Kafka is unreachable, one when it is back)."""
    logger = logging.getLogger("twinflow.kafka.librdkafka")
    logger.setLevel(logging.CRITICAL)
    logger.propagate = False
    return logger


def client_config(settings: ConnectorSettings, defaults: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Base librdkafka config: bootstrap servers, then ``defaults``, the user's `kafka.extra`
    properties (which override ``defaults``) and ``extra`` (which overrides both); librdkafka's log
    goes through :func:`~connectors.kafka.broker_log.broker_logger` unless ``extra`` names a ``logger``."""
    conf: dict[str, Any] = {"bootstrap.servers": settings.kafka.bootstrap_servers, **(defaults or {})}
    conf.update(settings.kafka.extra)
    if settings.kafka.sasl_password is not None:
        conf["sasl.password"] = settings.kafka.sasl_password.get_secret_value()
    conf.update(extra)
    conf.setdefault("logger", broker_logger(conf))
    return conf


def without_bootstrap(conf: dict[str, Any]) -> dict[str, Any]:
    """The same config minus bootstrap.servers (Bytewax's Kafka connectors take brokers apart)."""
    return {k: v for k, v in conf.items() if k != "bootstrap.servers"}


def producer_config(settings: ConnectorSettings, **extra: Any) -> dict[str, Any]:
    """Idempotent, acks=all producer settings (:data:`PRODUCER_GUARANTEES`, always) with the tuning of
    :data:`PRODUCER_DEFAULTS` unless `kafka.extra` sets it; ``extra``: the caller's own properties."""
    return client_config(settings, PRODUCER_DEFAULTS, **{**extra, **PRODUCER_GUARANTEES})


def make_producer(settings: ConnectorSettings, **extra: Any) -> Producer:
    return Producer(producer_config(settings, **extra))


def produce_acknowledged(producer: Producer, topic: str, key: str, value: bytes, timeout: float) -> str | None:
    """Produce one record keyed by ``key`` and wait up to ``timeout`` seconds for Kafka's
    acknowledgement: ``None`` when acknowledged, else why not (the delivery errors, or ``timeout``)."""
    errors: list[str] = []
    producer.produce(topic, key=key.encode(), value=value, on_delivery=lambda e, _m: e and errors.append(str(e)))
    if producer.flush(timeout) or errors:
        return "; ".join(errors) or "timeout"
    return None


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: ConnectorSettings) -> list[TopicSpec]:
    """Every topic twinflow uses, with partitions and retention."""
    t = settings.topics
    week = str(7 * 24 * 3600 * 1000)
    specs = [
        TopicSpec(t.raw, t.raw_partitions, {"retention.ms": week}),
        TopicSpec(t.dlq, 1, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
        TopicSpec(t.model_control, 1, {"retention.ms": week}),
        TopicSpec(t.events, 1, {"retention.ms": str(365 * 24 * 3600 * 1000)}),  # the failure labels
        TopicSpec(settings.security.desired_rejected_topic, 1, {"retention.ms": str(90 * 24 * 3600 * 1000)}),
        *twin_topic_specs(settings),
        *alert_topic_specs(settings),
    ]
    return specs


def twin_topic_specs(settings: ConnectorSettings) -> list[TopicSpec]:
    """Topics of twin reconciliation (docs/reconciliation.md); twin.state is compacted by twin_id."""
    tw = settings.twin
    day, month = str(24 * 3600 * 1000), str(30 * 24 * 3600 * 1000)
    return [
        TopicSpec(tw.desired_topic, tw.partitions, {"retention.ms": month}),
        TopicSpec(tw.commands_topic, tw.partitions, {"retention.ms": day}),
        TopicSpec(tw.outcomes_topic, tw.partitions, {"retention.ms": month}),
        TopicSpec(tw.acks_topic, tw.partitions, {"retention.ms": day}),
        TopicSpec(tw.state_topic, tw.partitions, {"cleanup.policy": "compact"}),
        TopicSpec(tw.desync_topic, 1, {"retention.ms": month}),
        TopicSpec(tw.late_topic, 1, {"retention.ms": month}),
        TopicSpec(settings.topics.ground_truth, 1, {"retention.ms": month}),
    ]


def ensure_topics(
    settings: ConnectorSettings, specs: list[TopicSpec] | None = None, timeout: float = 30, **client: Any
) -> list[str]:
    """Create missing topics (idempotent); returns the names created. ``client``: properties of the
    admin client (e.g. ``logger=quiet_logger()``). Waits up to ``timeout`` s for a broker to answer
    (then the client's error), and not at all once a stop is requested (:class:`~connectors.stopping.Stopped`)."""
    admin = AdminClient(client_config(settings, **client))
    specs = specs if specs is not None else topic_specs(settings)
    existing = set(metadata(admin, timeout).topics)
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=1, config=s.config)
        for s in specs
        if s.name not in existing
    ]
    if not new:
        return []
    created = []
    for name, fut in admin.create_topics(new, request_timeout=timeout).items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    await_topics(admin, {t.topic: t.num_partitions for t in new}, timeout)
    return created


def metadata(admin: AdminClient, timeout: float) -> Any:
    """The cluster's metadata, asked for in slices of a second so that a stop ends the wait
    (:class:`~connectors.stopping.Stopped`); after ``timeout`` s without an answer, the client's error."""
    failures: list[KafkaException] = []

    def attempt(seconds: float) -> Any:
        try:
            return admin.list_topics(timeout=max(seconds, 0.1))
        except KafkaException as exc:
            failures[:] = [exc]
            admin.poll(0)  # an admin client hands its log lines (the broker that does not answer) over here
            return None

    meta = wait_unless_stopped(attempt, timeout, "waiting for Kafka")
    if meta is None:
        raise failures[0]
    return meta


def delete_topics(settings: ConnectorSettings, names: Iterable[str], timeout: float = 60) -> list[str]:
    """Delete topics and wait until the broker has (a topic already gone is no error); returns the
    names deleted. The wait matters: an ``AdminClient`` dropped right after ``delete_topics`` may
    never send the request, and the topics stay on the broker."""
    names = sorted(set(names))
    if not names:
        return []
    admin = AdminClient(client_config(settings))  # kept alive until every deletion is confirmed
    deleted = []
    for name, fut in admin.delete_topics(names, operation_timeout=timeout).items():
        try:
            fut.result(timeout)
            deleted.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise
    return deleted


def await_topics(admin: AdminClient, partitions: dict[str, int], timeout: float) -> None:
    """Wait until the broker's metadata lists each topic with its ``partitions``, each with a leader.

    A created topic's future resolves when the controller has it; a broker may answer metadata
    requests without it for a moment after, and a client starting then (a flow listing its
    partitions) fails with "Unknown topic or partition". Raises ``TimeoutError`` after ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(timeout=timeout).topics
        missing = [
            name
            for name, count in partitions.items()
            if name not in meta
            or meta[name].error is not None
            or len(meta[name].partitions) < count
            or any(p.leader < 0 for p in meta[name].partitions.values())
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kafka topics not ready after {timeout:.0f} s: {', '.join(sorted(missing))}")
        time.sleep(0.05)


def alert_topic_specs(settings: ConnectorSettings) -> list[TopicSpec]:
    """Topics of the alerts flow: ``twin.alerts`` (its output) and its inputs (model outputs, status,
    actions, parent alarms); ``twin.desync``, its other input, is the twin flow's."""
    a = settings.alerts
    month = {"retention.ms": str(30 * 24 * 3600 * 1000)}
    inputs = [a.actions_topic, a.anomalies_topic, a.failures_topic, a.forecasts_topic, a.status_topic]
    inputs.append(a.suppression_topic)
    return [TopicSpec(a.topic, 1, dict(month)), *(TopicSpec(name, a.partitions, dict(month)) for name in inputs)]
