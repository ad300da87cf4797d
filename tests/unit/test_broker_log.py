"""What the long-running processes' librdkafka filter (connectors/kafka/broker_log.py) lets through."""

import logging

from connectors.kafka.broker_log import BrokerWatch


def record(text: str) -> logging.LogRecord:
    return logging.LogRecord("rdkafka", logging.INFO, __file__, 0, text, (), None)


def test_an_idle_connection_closed_by_the_broker_is_not_an_outage():
    watch = BrokerWatch({"bootstrap.servers": "127.0.0.1:9092"})
    line = record("GETMETADATA [rdkafka#producer-1] [thrd:127.0.0.1:9092/1]: 127.0.0.1:9092/1: "
                  "Disconnected (after 600004ms in state UP)")  # fmt: skip
    assert watch.filter(line)
    assert watch.down_since is None
    assert "Disconnected" in line.getMessage() and "unreachable" not in line.getMessage()


def test_a_repeated_error_is_said_once_a_minute():
    watch = BrokerWatch({"bootstrap.servers": "127.0.0.1:9092"})
    texts = [f"SASL authentication error: Authentication failed (after {ms}ms in state AUTH_REQ)" for ms in (3, 7, 9)]
    assert [watch.filter(record(t)) for t in texts] == [True, False, False]
