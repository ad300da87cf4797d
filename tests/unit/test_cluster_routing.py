"""Keeping items on the worker that made them: the Kafka partitions a worker lists and the background
sinks' partitions a worker's rows go to (connectors.cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from bytewax.connectors.kafka import KafkaSource

from connectors.cluster import Worker, set_this_worker, this_worker
from connectors.kafka.source import StoppableKafkaSource
from connectors.overlap import OverlappedSink
from connectors.postgres.telemetry_sink import TelemetrySink

TOPICS = ["telemetry.raw", "twin.desired", "twin.acks", "twin.status", "twin.model_control", "twin.events"]
PARTS = [f"{i}-{t}" for t in TOPICS for i in range(1 if t in ("twin.model_control", "twin.events") else 4)]


@dataclass(frozen=True)
class Row:
    twin_id: str
    n: int


@pytest.fixture(autouse=True)
def no_worker() -> Iterator[None]:
    set_this_worker(None)
    yield
    set_this_worker(None)


def _listed(monkeypatch: pytest.MonkeyPatch, worker: Worker | None) -> list[str]:
    monkeypatch.setattr(KafkaSource, "list_parts", lambda self: list(PARTS))  # Kafka's metadata
    set_this_worker(worker)
    return StoppableKafkaSource(["localhost:9092"], TOPICS).list_parts()


@pytest.mark.parametrize("count", [2, 3, 4, 7])
def test_the_workers_of_a_cluster_list_every_partition_once(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    listed = [_listed(monkeypatch, Worker(k, count)) for k in range(count)]
    assert sorted(p for parts in listed for p in parts) == sorted(PARTS)


def test_two_workers_read_half_of_the_telemetry_partitions_each(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = [[p for p in _listed(monkeypatch, Worker(k, 2)) if p.endswith("telemetry.raw")] for k in range(2)]
    assert raw == [["0-telemetry.raw", "2-telemetry.raw"], ["1-telemetry.raw", "3-telemetry.raw"]]


def test_an_unknown_worker_or_a_single_one_lists_every_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _listed(monkeypatch, None) == PARTS
    assert _listed(monkeypatch, Worker(0, 1)) == PARTS


def test_a_worker_outside_its_cluster_is_refused() -> None:
    with pytest.raises(ValueError):
        set_this_worker(Worker(2, 2))
    assert this_worker() is None


def _parts(sink: OverlappedSink, rows: list[Row]) -> dict[str, set[str]]:
    """partition → twins routed there."""
    out: dict[str, set[str]] = {}
    for part, records in sink.route(rows):
        out.setdefault(part, set()).update(r.twin_id for r in records)
    return out


ROWS = [Row(f"twin-{i % 40}", i) for i in range(400)]
ROWS_SINK = TelemetrySink("host=unused")  # routes by twin_id; never opened here


def test_a_worker_routes_its_rows_to_its_own_partitions_a_twin_to_one() -> None:
    set_this_worker(Worker(1, 2))
    assert set(_parts(OverlappedSink(ROWS_SINK, 2), ROWS)) == {"01"}
    four = _parts(OverlappedSink(ROWS_SINK, 4), ROWS)
    assert set(four) == {"01", "03"}
    assert not four["01"] & four["03"]


def test_rows_keep_their_order_within_a_twin_on_a_worker() -> None:
    set_this_worker(Worker(0, 3))
    routed = OverlappedSink(ROWS_SINK, 6).route(ROWS)
    for _, records in routed:
        for twin in {r.twin_id for r in records}:
            ns = [r.n for r in records if r.twin_id == twin]
            assert ns == sorted(ns)


def test_without_a_known_worker_rows_spread_over_every_partition() -> None:
    assert set(_parts(OverlappedSink(ROWS_SINK, 2), ROWS)) == {"00", "01"}


def test_a_worker_without_a_partition_of_its_own_uses_them_all() -> None:
    set_this_worker(Worker(2, 3))
    assert set(_parts(OverlappedSink(ROWS_SINK, 2), ROWS)) == {"00", "01"}
