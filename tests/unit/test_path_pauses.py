"""A flow process's input path (operators/ml/path_pauses.py) and what tells it from Kafka
(connectors/kafka/source.py): heartbeats of every partition, librdkafka's broker statistics."""

from __future__ import annotations

from connectors.kafka.source import leader_reachable
from operators.ml.path_pauses import PathPauses, silence_suspended


def test_the_path_pauses_while_any_of_its_partitions_goes_without_a_heartbeat() -> None:
    path = PathPauses(started=0.0)
    path.joined("0-a")
    path.joined("1-a")
    path.heartbeat("0-a", 1.0)
    assert path.longest_pause(0.0, 2.0) == 2.0  # 1-a has not polled yet: paused since the start
    path.heartbeat("1-a", 2.0)
    for t in range(3, 20):
        path.heartbeat("1-a", float(t))  # 0-a's broker is away
    assert path.longest_pause(18.0, 19.0) == 18.0
    path.heartbeat("0-a", 19.5)
    assert path.longest_pause(19.5, 19.6) == 18.5  # the pause just ended, seen in a window it lasted into
    assert path.pauses[-1] == (19.5, 18.5)  # remembered: (ended at, seconds)


def test_a_closed_partition_no_longer_holds_the_path() -> None:
    path = PathPauses(started=0.0)
    path.heartbeat("0-a", 0.5)
    path.heartbeat("1-a", 0.5)
    path.left("1-a")
    path.heartbeat("0-a", 5.0)
    path.heartbeat("0-a", 5.5)
    assert path.longest_pause(5.0, 5.5) == 4.5  # 0-a's own pause
    assert path.longest_pause(5.6, 6.0) == 0.5


def test_a_process_that_polls_no_partition_cannot_see_its_path() -> None:
    path = PathPauses(started=0.0)
    assert silence_suspended(path, silent_for=10.0, period_s=1.0, now=100.0)
    assert not silence_suspended(None, silent_for=10.0, period_s=1.0, now=100.0)  # no path: never paused


def test_short_gaps_between_polls_are_no_pause_for_a_twin() -> None:
    path = PathPauses(started=0.0)
    for i in range(200):
        path.heartbeat("0-a", i * 0.9)
    assert not path.pauses
    assert not silence_suspended(path, silent_for=10.0, period_s=1.0, now=199 * 0.9 + 0.5)


def _stats(state: str, rxidle_us: int, leader: int = 1) -> dict:
    """librdkafka's statistics (STATISTICS.md), the fields the source reads."""
    return {
        "brokers": {
            "127.0.0.1:9092/1": {"nodeid": 1, "state": state, "rxidle": rxidle_us},
            "GroupCoordinator": {"nodeid": -1, "state": "UP", "rxidle": 1000},
        },
        "topics": {"telemetry.raw": {"partitions": {"0": {"leader": leader}, "-1": {"leader": -1}}}},
    }


def test_a_partition_is_reachable_while_its_leader_is_up_and_answering() -> None:
    assert leader_reachable(_stats("UP", 400_000), "telemetry.raw", 0)
    assert not leader_reachable(_stats("UP", 30_000_000), "telemetry.raw", 0)  # hung: no answer for 30 s
    assert not leader_reachable(_stats("CONNECT", 400_000), "telemetry.raw", 0)  # connection refused
    assert not leader_reachable(_stats("UP", -1), "telemetry.raw", 0)  # never answered
    assert not leader_reachable(_stats("UP", 400_000, leader=-1), "telemetry.raw", 0)  # no leader known
    assert not leader_reachable(_stats("UP", 400_000), "telemetry.raw", 1)  # not in the statistics (yet)
    assert not leader_reachable({"brokers": {}, "topics": {}}, "telemetry.raw", 0)  # the broker is gone
