"""Producer settings: `kafka.extra` tunes the producers' defaults but never their delivery guarantees."""

from __future__ import annotations

from confluent_kafka import Producer

from connectors.kafka.broker_log import broker_logger
from connectors.kafka.clients import PRODUCER_DEFAULTS, PRODUCER_GUARANTEES, client_config, producer_config
from twinflow.settings import Settings


def test_without_extra_the_producer_gets_its_defaults_and_guarantees() -> None:
    conf = producer_config(Settings(kafka={"bootstrap_servers": "k1:9092"}))
    logger = conf.pop("logger")  # librdkafka's log, summarised while the broker is unreachable
    assert logger is broker_logger({"bootstrap.servers": "k1:9092"})
    assert conf == {"bootstrap.servers": "k1:9092", **PRODUCER_DEFAULTS, **PRODUCER_GUARANTEES}


def test_kafka_extra_overrides_a_tuning_default_but_not_the_guarantees() -> None:
    extra = {"compression.type": "zstd", "linger.ms": "50", "acks": "1", "enable.idempotence": "false"}
    conf = producer_config(Settings(kafka={"extra": extra}))
    assert conf["compression.type"] == "zstd" and conf["linger.ms"] == "50"
    assert conf["acks"] == "all" and conf["enable.idempotence"] is True


def test_the_callers_own_properties_override_defaults_and_kafka_extra_but_not_the_guarantees() -> None:
    s = Settings(kafka={"extra": {"linger.ms": "50", "security.protocol": "PLAINTEXT"}})
    conf = producer_config(s, **{"linger.ms": 0, "acks": 1})
    assert conf["linger.ms"] == 0 and conf["acks"] == "all" and conf["security.protocol"] == "PLAINTEXT"


def test_consumers_get_kafka_extra_but_no_producer_defaults() -> None:
    conf = client_config(Settings(kafka={"extra": {"security.protocol": "PLAINTEXT"}}), **{"group.id": "g"})
    assert conf["security.protocol"] == "PLAINTEXT" and conf["group.id"] == "g"
    assert not set(conf) & set(PRODUCER_DEFAULTS)


def test_librdkafka_accepts_the_producer_config() -> None:
    Producer(producer_config(Settings(kafka={"bootstrap_servers": "127.0.0.1:1"}))).flush(0)
