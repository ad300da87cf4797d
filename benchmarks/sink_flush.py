"""What a Kafka flush per batch cost the flows: the Kafka sink's wait per batch, flushed per batch
(as before) or only at the epoch's end (as now).

    python -m benchmarks.sink_flush --batch 200 --batches 200

The flows' Kafka sink (:class:`connectors.kafka.sink.MessageSink` in an
:class:`connectors.overlap.OverlappedSink` partition, ``background=False``) writes ``--batches``
batches of ``--batch`` score-sized messages to a topic of its own, 10 ms apart, twice each way
(alternating, so both see the same load): ``write_batch`` then ``snapshot()`` (the flush) after
every batch, and ``write_batch`` alone with one ``snapshot()`` at the end. Printed: the time the
flow's thread spends per batch (median, p95, p99), the final flush, and the load average (the
machine may be shared). Nothing is recorded; the topic is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

from benchmarks.processes import cleaning_up, interruptible
from connectors.kafka.clients import TopicSpec, delete_topics, ensure_topics
from connectors.kafka.sink import MessageSink, OutMessage
from connectors.overlap import OverlappedSink
from twinflow.settings import load_settings

VALUE = b'{"twin_id":"pump-001","ts":"2026-12-03T16:00:00+00:00","score":0.1234,"threshold":3.0,"is_anomaly":false}'


def measure(part, topic: str, size: int, batches: int, flush_each: bool) -> tuple[list[float], float]:
    """ms per batch in the flow's thread, and the final flush's ms."""
    waits = []
    for _ in range(batches):
        batch = [OutMessage(f"pump-{i % 200:03d}".encode(), VALUE, topic) for i in range(size)]
        start = time.perf_counter()
        part.write_batch([batch])
        if flush_each:
            part.snapshot()
        waits.append((time.perf_counter() - start) * 1000)
        time.sleep(0.01)
    start = time.perf_counter()
    part.snapshot()
    return sorted(waits), (time.perf_counter() - start) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=200, help="messages per batch")
    ap.add_argument("--batches", type=int, default=200)
    args = ap.parse_args()
    settings = load_settings()
    topic = f"bench.sink_flush.{uuid.uuid4().hex[:6]}"
    part = None
    try:  # the topic goes again, also after Ctrl-C or SIGTERM
        ensure_topics(settings, [TopicSpec(topic, 4, {"retention.ms": "600000"})])
        part = OverlappedSink(MessageSink.of(settings), background=False).build_part("bench", "00", None)
        part.write_batch([[OutMessage(b"warm-up", VALUE, topic)]])  # producer id and metadata first
        part.snapshot()
        print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        for label, flush_each in [("flush per batch", True), ("flush at epoch end", False)] * 2:
            waits, final = measure(part, topic, args.batch, args.batches, flush_each)
            p95, p99 = waits[int(0.95 * len(waits))], waits[int(0.99 * len(waits))]
            print(
                f"{label:18s} batch {args.batch}: per batch median {statistics.median(waits):.2f} ms, "
                f"p95 {p95:.2f} ms, p99 {p99:.2f} ms; final flush {final:.1f} ms"
            )
        print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        with cleaning_up():
            if part is not None:
                part.close()
            delete_topics(settings, [topic])


if __name__ == "__main__":
    with interruptible("its topic is deleted"):
        main()
