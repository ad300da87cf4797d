"""librdkafka's log of a long-running process: one line while Kafka is unreachable, one when it is back.

A broker that does not answer makes librdkafka log every connection attempt of every client (about
20 lines a second at first). The clients of flows, bridges and ``twinflow serve`` log through
:func:`broker_logger` instead: the first connection failure becomes one line that names the address
and the setting that holds it, a reminder follows every :data:`REMIND_S` seconds while it lasts,
and one line says when a broker answers again (a probe asks for the cluster's metadata every
:data:`PROBE_S` seconds meanwhile). Every other line (authentication, unknown topic, …) is kept,
each distinct one at most once per :data:`REMIND_S` seconds.
"""

from __future__ import annotations

import logging
import re
import threading
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

REMIND_S = 60.0
PROBE_S = 2.0
SETTING = "kafka.bootstrap_servers (TWINFLOW_KAFKA__BOOTSTRAP_SERVERS)"
# librdkafka's lines about a connection that could not be made: the broker is not reachable. A connection
# that closes ("Disconnected (after 600000ms in state UP)") is not one: brokers close idle connections
# (connections.max.idle.ms), and a broker that went away is followed by failed connection attempts.
UNREACHABLE = re.compile(
    r"Connect to \S+ failed|Connection refused|Failed to resolve|Connection setup timed out|brokers? (?:are|is) down"
    r"|No route to host|Network is unreachable",
    re.IGNORECASE,
)
_REASON = re.compile(r"failed: ([^(]+?)\s*(?:\(|$)")


class BrokerWatch(logging.Filter):
    """The filter of :func:`broker_logger` (one per process and address; thread-safe)."""

    def __init__(self, config: dict[str, object]) -> None:
        super().__init__()
        self.config = config
        self.servers = str(config.get("bootstrap.servers"))
        self.down_since: float | None = None
        self._said: dict[str, float] = {}  # message → when last logged
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        now = time.monotonic()
        with self._lock:
            if not UNREACHABLE.search(text):  # a real error: kept, repeats thinned out
                key = re.sub(r"\d+ms", "", text)
                if now - self._said.get(key, -REMIND_S) < REMIND_S:
                    return False
                self._said[key] = now
                return True
            if self.down_since is None:
                self.down_since = self._said["down"] = now
                reason = _REASON.search(text)
                why = f" ({reason.group(1)})" if reason else ""
                _say(record, f"Kafka is unreachable at {self.servers}{why}, set by {SETTING}; retrying, and "
                             "saying so once a minute until it answers")  # fmt: skip
                threading.Thread(target=self._probe, name="kafka-broker-probe", daemon=True).start()
                return True
            if now - self._said["down"] >= REMIND_S:
                self._said["down"] = now
                since = now - self.down_since
                _say(record, f"Kafka still unreachable at {self.servers} ({since:.0f} s), set by {SETTING}")
                return True
            return False

    def _probe(self) -> None:
        """Ask for the cluster's metadata until a broker answers; then say so."""
        admin = AdminClient({**self.config, "logger": _silent()})
        while True:
            try:
                admin.list_topics(timeout=PROBE_S)
                break
            except KafkaException:
                time.sleep(PROBE_S / 4)
        with self._lock:
            down = time.monotonic() - (self.down_since or time.monotonic())
            self.down_since = None
        logging.getLogger(LOGGER).warning("Kafka is reachable again at %s (after %.0f s)", self.servers, down)


def _say(record: logging.LogRecord, msg: str) -> None:
    record.msg, record.args = msg, ()
    record.levelno, record.levelname = logging.WARNING, "WARNING"


LOGGER = "twinflow.kafka"


def _silent() -> logging.Logger:
    logger = logging.getLogger(f"{LOGGER}.probe")
    logger.setLevel(logging.CRITICAL)
    logger.propagate = False
    return logger


_WATCHED: dict[str, logging.Logger] = {}
_WATCHED_LOCK = threading.Lock()


def broker_logger(config: dict[str, object]) -> logging.Logger:
    """The ``logger`` of Kafka clients with this ``config`` (their probe uses it too): one per process
    and address, so all the clients of a process together say once that Kafka is unreachable."""
    servers = str(config.get("bootstrap.servers"))
    with _WATCHED_LOCK:
        if servers not in _WATCHED:
            logger = logging.getLogger(f"{LOGGER}.{servers}")
            logger.addFilter(BrokerWatch({k: v for k, v in config.items() if k != "logger"}))
            _WATCHED[servers] = logger
        return _WATCHED[servers]
