"""The shared bridge publisher: buffering, spill file, back-pressure, requeue on failed delivery."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Message

from connectors.kafka.publisher import Publisher
from connectors.kafka.spill import SpillQueue
from twinflow.settings import Settings


class FakeProducer:
    """Delivers on poll() while ``up``; fails deliveries with a timeout while ``failing``."""

    def __init__(self) -> None:
        self.up = True
        self.failing = False
        self.pending: list = []
        self.delivered: list[bytes] = []
        self.lock = threading.Lock()

    def produce(self, topic, value, key, headers, on_delivery):
        with self.lock:
            self.pending.append((Message(topic=topic, key=key, value=value, headers=headers), on_delivery))

    def poll(self, timeout=0):
        if not self.up:
            time.sleep(min(timeout, 0.01))
            return 0
        with self.lock:
            batch, self.pending = self.pending, []
        for msg, cb in batch:
            if self.failing:
                cb(KafkaError(KafkaError._MSG_TIMED_OUT), msg)
            else:
                self.delivered.append(msg.value())
                cb(None, msg)
        return len(batch)

    def flush(self, timeout=0):
        self.poll()
        return len(self.pending)

    def purge(self, in_queue=True, in_flight=True):
        with self.lock:
            batch, self.pending = self.pending, []
        for msg, cb in batch:
            cb(KafkaError(KafkaError._PURGE_QUEUE), msg)


def settings(tmp: Path, **buffer) -> Settings:
    return Settings(bridge={"buffer": {"spill_dir": str(tmp), **buffer}})


def test_outage_buffers_spills_and_delivers_everything_in_order(tmp_path: Path) -> None:
    prod = FakeProducer()
    pub = Publisher(settings(tmp_path, memory_records=10, max_in_flight=5), "t", producer=prod).start()
    prod.up = False
    for i in range(100):
        pub.put("raw", b"k", str(i).encode())
    stats = pub.stats()
    assert stats["buffered"] >= 90 and stats["spilled"] > 0 and stats["in_flight"] <= 5
    prod.failing, prod.up = True, True  # deliveries time out: records go back to the buffer
    time.sleep(0.2)
    assert pub.stats()["retried"] > 0
    prod.failing = False
    assert pub.wait_idle(10)
    pub.close(1)
    assert sorted(prod.delivered, key=int) == [str(i).encode() for i in range(100)]
    assert len(set(prod.delivered)) == 100
    assert pub.counters.dropped == 0


def test_full_buffer_blocks_then_resumes(tmp_path: Path) -> None:
    prod = FakeProducer()
    prod.up = False
    pub = Publisher(
        settings(tmp_path, memory_records=2, max_in_flight=1, spill_max_bytes=1024), "t", producer=prod
    ).start()
    done = threading.Event()

    def writer() -> None:
        for i in range(200):
            pub.put("raw", None, b"x" * 20 + str(i).encode())
        done.set()

    threading.Thread(target=writer, daemon=True).start()
    time.sleep(0.5)
    assert not done.is_set() and pub.counters.blocked > 0  # back-pressure, nothing dropped
    prod.up = True
    assert done.wait(10)
    assert pub.wait_idle(10)
    pub.close(1)
    assert len(prod.delivered) == 200 and pub.counters.dropped == 0


def test_drop_oldest_counts_drops(tmp_path: Path) -> None:
    prod = FakeProducer()
    prod.up = False
    pub = Publisher(
        settings(tmp_path, memory_records=2, max_in_flight=1, spill_max_bytes=1024, when_full="drop_oldest"),
        "t",
        producer=prod,
    ).start()
    for i in range(200):
        pub.put("raw", None, b"x" * 20 + str(i).encode())
    assert pub.counters.dropped > 0
    prod.up = True
    assert pub.wait_idle(10)
    pub.close(1)
    assert len(prod.delivered) + pub.counters.dropped == 200


def test_undelivered_records_survive_a_restart_in_the_spill_file(tmp_path: Path) -> None:
    prod = FakeProducer()
    prod.up = False
    pub = Publisher(settings(tmp_path, memory_records=5, max_in_flight=3), "t", producer=prod).start()
    for i in range(20):
        pub.put("raw", b"k", str(i).encode())
    pub.close(0.2)
    q = SpillQueue(tmp_path / "t.spill", memory_records=5, max_file_bytes=10**6)
    assert len(q) == 20
    assert sorted(int(q.get()[2]) for _ in range(20)) == list(range(20))


def test_a_spill_file_serves_one_bridge_only(tmp_path: Path) -> None:
    import pytest

    first = SpillQueue(tmp_path / "x.spill", memory_records=1, max_file_bytes=10**6)
    with pytest.raises(RuntimeError, match="in use by another bridge"):
        SpillQueue(tmp_path / "x.spill", memory_records=1, max_file_bytes=10**6)
    first.close()
    SpillQueue(tmp_path / "x.spill", memory_records=1, max_file_bytes=10**6).close()


def test_the_spill_folder_comes_from_the_configuration(tmp_path: Path) -> None:
    """Unset, it is <stack dir>/buffer (twinflow's settings fill it in); the publisher itself never
    guesses a folder: without one configured it refuses to start."""
    s = Settings(stack={"dir": tmp_path / "stack"})
    assert s.bridge.buffer.spill_dir == tmp_path / "stack" / "buffer"
    explicit = Settings(stack={"dir": tmp_path / "stack"}, bridge={"buffer": {"spill_dir": tmp_path / "spill"}})
    p = Publisher(explicit, "opcua-plant", producer=FakeProducer())
    assert p.queue.path.parent == tmp_path / "spill"
    unset = Settings(stack={"dir": tmp_path / "stack"})
    unset.bridge.buffer.spill_dir = None
    with pytest.raises(ValueError, match=r"bridge\.buffer\.spill_dir"):
        Publisher(unset, "opcua-plant", producer=FakeProducer())


class StalledProducer(FakeProducer):
    """Takes records and never acknowledges them (a wedged librdkafka) until purged."""

    def poll(self, timeout=0):
        time.sleep(min(timeout, 0.01))
        return 0


def test_a_stalled_producer_is_replaced_once_kafka_answers_and_nothing_is_lost(tmp_path: Path) -> None:
    stalled, fresh = StalledProducer(), FakeProducer()
    made: list[FakeProducer] = []
    answers = threading.Event()

    def new_producer():
        made.append(fresh)
        return fresh

    pub = Publisher(
        settings(tmp_path, memory_records=10, max_in_flight=5, stall_s=0.3), "t",
        producer=stalled, new_producer=new_producer,
        kafka_answers=lambda topics: answers.is_set() and topics == {"raw"},
    ).start()  # fmt: skip
    for i in range(20):
        pub.put("raw", b"k", str(i).encode())
    # Kafka does not answer: an outage, not a stall; the producer is kept and nothing is delivered.
    assert not pub.wait_idle(1.0)
    assert made == [] and pub.stats()["in_flight"] == 5 and pub.stats()["restarts"] == 0
    answers.set()
    assert pub.wait_idle(5), pub.stats()
    pub.close(1)
    assert made == [fresh] and pub.counters.restarts == 1
    assert sorted(int(v) for v in fresh.delivered) == list(range(20))
    assert stalled.delivered == [] and pub.counters.delivered == 20
