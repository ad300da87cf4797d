"""Telling a stalled producer from a Kafka outage: the one watch of the bridges' publisher and the flows' sink.

librdkafka can wedge after a broker restart: the producer holds records, Kafka is back and answers,
and none of them is ever acknowledged until ``message.timeout.ms`` (300 s) runs out. A
:class:`StallWatch` is told when the producer makes progress (a record acknowledged, or nothing
outstanding); once nothing has progressed for a probe interval it asks :class:`KafkaProbe` (a client of
its own, not the suspected producer) whether Kafka answers for the records' topics — each exists and
every partition has a leader — and once it has answered so for ``stall_s`` with still no progress,
the producer is stalled. An outage (Kafka not answering), a topic that does not exist or a partition
without a leader never count: waiting is right then, and ``message.timeout.ms`` fails the records.
What to do with a stalled producer is the caller's: purge it, take its records back from the purge
reports and send them with a new one (:meth:`StallWatch.replaced`); a second stall without progress
in between is left to ``message.timeout.ms``: a new producer did not help.

>>> t = [0.0]
>>> watch = StallWatch(3.0, kafka_answers=lambda topics: True, clock=lambda: t[0])
>>> for t[0] in (0.5, 1.0, 2.0, 3.0, 4.0):
...     print(t[0], watch.stalled_for(waiting=True, topics={"twin.state"}))
0.5 None
1.0 None
2.0 None
3.0 None
4.0 4.0
>>> watch.replaced(); t[0] = 10.0; watch.stalled_for(True, {"twin.state"})  # once per stall
>>> watch.progressed()  # an acknowledgement: watched again
>>> [watch.stalled_for(True, {"twin.state"}) for t[0] in (11.0, 14.5)]
[None, 4.5]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from connectors.config.contract import ConnectorSettings
from connectors.kafka.clients import client_config, quiet_logger

# The delivery errors of a purge: records handed back, not failed (the producer is not to blame).
PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})

# While records are outstanding and none is acknowledged, ask whether Kafka answers this often (s; at
# most a third of `stall_s`).
PROBE_EVERY_S = 10.0


class KafkaProbe:
    """Whether Kafka answers a metadata request with every one of ``topics`` in it and a leader for
    each of their partitions, asked by a client of its own (not the producer under suspicion, whose
    connection may be the thing that is stuck), made at the first question and kept."""

    def __init__(self, settings: ConnectorSettings, timeout: float = 5.0) -> None:
        self._config = client_config(settings, logger=quiet_logger())
        self._timeout = timeout
        self._admin: AdminClient | None = None

    def __call__(self, topics: Collection[str]) -> bool:
        try:
            if self._admin is None:
                self._admin = AdminClient(self._config)
            known = self._admin.list_topics(timeout=self._timeout).topics
        except KafkaException:
            return False
        for name in topics:
            topic = known.get(name)
            if topic is None or topic.error is not None or not topic.partitions:
                return False
            if any(p.leader < 0 or p.error is not None for p in topic.partitions.values()):
                return False
        return True


class StallWatch:
    """When a producer with records outstanding counts as stalled (see the module's docstring)."""

    def __init__(
        self,
        stall_s: float,
        kafka_answers: Callable[[Collection[str]], bool],
        probe_every_s: float = PROBE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_s = stall_s
        self._kafka_answers = kafka_answers
        self._probe_every = min(probe_every_s, stall_s / 3)
        self._clock = clock
        self._progress_at = self._probed_at = clock()
        self._answers_since: float | None = None
        self._replaced = False  # a producer was replaced since the last progress

    def progressed(self) -> None:
        """A record was acknowledged (or failed, not by a purge: the producer still works)."""
        self._progress_at = self._clock()
        self._answers_since = None
        self._replaced = False

    def replaced(self) -> None:
        """The stalled producer was replaced (or purged and kept): not again until it progresses."""
        self._progress_at = self._clock()
        self._answers_since = None
        self._replaced = True

    def stalled_for(self, waiting: bool, topics: Collection[str] = ()) -> float | None:
        """Seconds without progress when the producer is stalled (Kafka has answered for ``topics``
        for ``stall_s`` meanwhile), else None. ``waiting``: records are outstanding (none is progress)."""
        now = self._clock()
        if not waiting:  # the clock starts with the next outstanding record (a replacement still counts)
            self._progress_at, self._answers_since = now, None
            return None
        if self._replaced or now - self._progress_at < self._probe_every:
            return None
        if now - self._probed_at >= self._probe_every:
            self._probed_at = now
            if not self._kafka_answers(topics):
                self._answers_since = None
            elif self._answers_since is None:
                self._answers_since = now
        if self._answers_since is not None and now - self._answers_since >= self.stall_s:
            return now - self._progress_at
        return None
