"""A twin that stops reporting is flagged ``silent`` even when it is the only twin of its flow
process; Kafka unreachable is not the twin's silence (docs/ml.md, "Sensor faults").

`twinflow run pipeline` (recovery on, as deployed) on a private stack with ONE twin fed through
Kafka: the models' silence timers tell the path's pauses by the Kafka source's own health (its
partitions polled a reachable broker), not by other twins' data, which a lone twin does not have.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from operators.records.alerts import AnomalyScore, decode
from tests.faults.harness import KafkaFeeder, Run
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration

# One reading a second of event time; the silence timer (ml.sensor_health.silence_min_s) is 10 s.
SILENCE_S = 10.0
SLACK_S = 30.0  # a bound on waiting, not a timing assertion: the timer fires ~10 s after the last reading


@pytest.fixture
def run(fault_stack, tmp_path, request):
    r = Run.create(fault_stack, tmp_path, request.node.name.split("_")[2][:6], flow="pipeline")
    yield r
    r.close()


def silent_records(run: Run) -> list[AnomalyScore]:
    """The run's sensor-fault records that name a silent sensor, from ``twin.anomaly_scores``."""
    records = [decode(AnomalyScore, rec.value) for rec in read_topic(run.settings, run.settings.alerts.anomalies_topic)]
    return [r for r in records if r.kind == "sensor_fault" and "silent" in r.sensor_faults.values()]


def wait_silent(run: Run, after: datetime) -> list[AnomalyScore]:
    """Wait for a silent record later (event time) than ``after``: the twin's last reading."""
    deadline = time.monotonic() + SILENCE_S + SLACK_S
    while time.monotonic() < deadline:
        found = silent_records(run)
        if any(r.ts > after for r in found):
            return found
        time.sleep(1.0)
    raise AssertionError(f"no silent sensor fault {SILENCE_S + SLACK_S:.0f} s after the twin stopped\n{run.logs()}")


def fed(run: Run, total: int, rate: float) -> KafkaFeeder:
    run.start_flow(recovery=True)
    run.wait_started()
    feeder = KafkaFeeder(run, 1, total, rate)
    feeder.start()
    return feeder


def last_reading(feeder: KafkaFeeder) -> datetime:
    """The event time of the lone twin's last reading."""
    return feeder.t0 + timedelta(seconds=(feeder.total - 1) * feeder.signal.period_s)


def test_the_only_twin_of_the_process_that_stops_is_flagged_silent(run):
    feeder = fed(run, total=200, rate=40.0)
    feeder.join(120)
    assert not feeder.errors and feeder.acked == feeder.total, feeder.errors
    end = last_reading(feeder)
    found = wait_silent(run, end)
    assert {r.twin_id for r in found} == set(feeder.twins)
    assert all(r.ts > end for r in found), "silent while it was reporting"
    assert run.alive(), run.logs()


def test_kafka_unreachable_longer_than_the_silence_time_is_not_the_twins_silence(run, fault_stack):
    feeder = fed(run, total=900, rate=30.0)  # 30 s of readings
    deadline = time.monotonic() + 60
    while feeder.acked < 150:  # the twin has been scored for a while ...
        assert time.monotonic() < deadline, run.logs()
        time.sleep(0.2)
    kafka = fault_stack.service("kafka")
    kafka.down()  # ... when Kafka goes away; the twin goes on, its producer buffers its readings
    time.sleep(SILENCE_S + 6)
    kafka.up()
    feeder.join(300)
    assert not feeder.errors and feeder.acked == feeder.total, feeder.errors
    end = last_reading(feeder)
    found = wait_silent(run, end)  # its real silence at the end is flagged ...
    assert [r for r in found if r.ts <= end] == [], "Kafka's outage was taken for the twin's silence"  # ... no other
    assert run.alive(), run.logs()
