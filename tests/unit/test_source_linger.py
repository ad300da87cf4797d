"""A caught-up tailing Kafka partition waits ``flow.poll_interval_ms`` before its next poll."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from connectors.kafka.source import _StoppablePartition, kafka_source, next_tick
from connectors.stopping import STOP
from twinflow.settings import Settings


class Polls:
    """Stands in for Bytewax's Kafka partition: hands out the batches it is given, in turn."""

    reachable = False

    def __init__(self, *batches: list[Any]) -> None:
        self.batches = list(batches)

    def next_batch(self) -> list[Any]:
        return self.batches.pop(0)

    def close(self) -> None:
        pass


def test_a_short_batch_waits_for_the_next_tick_a_full_one_polls_again_at_once() -> None:
    part = _StoppablePartition(Polls([1, 2], [1, 2, 3], []), "0-raw", linger_s=0.05, full=3)  # type: ignore[arg-type]
    before = time.time()
    assert part.next_batch() == [1, 2]
    awake = part.next_awake()
    assert awake is not None and before < awake.timestamp() <= time.time() + 0.05
    assert round(awake.timestamp() * 1000) % 50 == 0  # on the tick every partition of the worker shares
    assert part.next_batch() == [1, 2, 3]
    assert part.next_awake() is None  # a backlog: the next poll at once
    assert part.next_batch() == []
    assert part.next_awake() is not None


def test_without_a_poll_interval_every_poll_follows_at_once() -> None:
    part = _StoppablePartition(Polls([1], []), "0-raw", linger_s=0.0, full=3)  # type: ignore[arg-type]
    for _ in range(2):
        part.next_batch()
        assert part.next_awake() is None


def test_a_stop_request_still_wakes_the_partition_within_50_ms() -> None:
    part = _StoppablePartition(Polls([1]), "0-raw", linger_s=0.5, full=3)  # type: ignore[arg-type]
    part.next_batch()
    STOP.requested.set()
    try:
        awake = part.next_awake()
        assert awake is not None and (awake - datetime.now(UTC)).total_seconds() <= 0.05
    finally:
        STOP.reset()


def test_ticks_are_aligned_multiples_of_the_interval() -> None:
    assert next_tick(10.0, 0.25) == 10.25
    assert next_tick(10.1, 0.25) == 10.25
    assert next_tick(10.2499, 0.25) == 10.25


def test_only_a_tailing_source_lingers() -> None:
    settings = Settings().model_copy(deep=True)
    settings.flow.poll_interval_ms = 40
    assert kafka_source(settings, ["raw"], tail=True).linger_s == 0.04
    assert kafka_source(settings, ["raw"], tail=False).linger_s == 0.0


def test_the_alerts_flow_polls_at_a_hundredth_of_its_reorder_window_or_as_configured(tmp_path, monkeypatch) -> None:
    from flows.alerts import alerts_source
    from twinflow.settings import load_settings

    config = tmp_path / "twinflow.toml"
    monkeypatch.setenv("TWINFLOW_CONFIG", str(config))
    config.write_text("[flow]\npoll_interval_ms = 25\n")
    assert alerts_source(load_settings(), tail=True).linger_s == 0.3  # 1 % of the default 30 s window
    config.write_text("[flow]\npoll_interval_ms = 25\n[alerts.rules]\nreorder_window_s = 1\n")
    assert alerts_source(load_settings(), tail=True).linger_s == 0.025  # never below the flows' interval
    config.write_text("[alerts]\npoll_interval_ms = 120\n")
    assert alerts_source(load_settings(), tail=True).linger_s == 0.12
    assert alerts_source(load_settings(), tail=False).linger_s == 0.0
