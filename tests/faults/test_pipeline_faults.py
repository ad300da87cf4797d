"""Fault injection on the fused flow, on a private stack: `twinflow run pipeline` and `twinflow run
alerts` (Bytewax recovery on, as deployed) while one twin's values step far out of range for a
stretch (an anomaly episode: an alert opened and resolved). Faults: the pipeline killed with -9 and
restarted, the alerts flow killed with -9 and restarted, Kafka restarted, PostgreSQL restarted,
Mosquitto restarted (readings through MQTT and the bridge). For each, every output is compared with
what a fault-free run writes (:mod:`tests.faults.outputs`): telemetry rows, twin versions, anomaly
scores, forecasts, alert versions and episodes — nothing lost, duplicated or changed. The time to
catch up is reported as a test property, never asserted."""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import SENSORS, Feeder, KafkaFeeder, MqttFeeder, Run, Signal, expected
from tests.faults.outputs import compare, table

pytestmark = pytest.mark.integration

TWINS, TOTAL, RATE = 5, 4000, 500.0  # 800 readings per twin, 8 s of feed
# Scoring starts after 200 readings; twin 0's values are out of range for readings 300-399: its
# anomaly alert opens at reading 360 (60 s of event time above the threshold) and resolves at ~470
# (ALERT_ENV's 60 s cool-down), ~650 if a broker restart redelivers in-fault readings late.
SIGNAL = Signal(fault_at=300, fault_len=100)
ENV = {"TWINFLOW_ML__ANOMALY__WARMUP": "200"}
# A killed pipeline and Kafka stay down this long, longer than the models' silence timer
# (ml.sensor_health.silence_min_s, 10 s): the flow's own downtime and a broker it cannot read must not
# read as silent sensors.
DOWN_S = 12.0


@pytest.fixture
def run(fault_stack, tmp_path, request):
    r = Run.create(fault_stack, tmp_path, request.node.name.split("_")[1][:6], flow="pipeline", **ENV)
    yield r
    r.close()


def started(run: Run, mqtt: bool = False) -> Feeder:
    """Flows (and the bridge) up, readings flowing, twin 0's alert open: every part is busy mid-episode."""
    run.start_flow(recovery=True)
    if mqtt:
        run.start_bridge()
        feeder: Feeder = MqttFeeder(run, TWINS, TOTAL, RATE, run.settings.mqtt, SIGNAL)
    else:
        feeder = KafkaFeeder(run, TWINS, TOTAL, RATE, SIGNAL)
    run.wait_started()
    feeder.start()
    run.wait_counts({"alerts": 1})
    assert feeder.is_alive(), "the feed ended before the fault: the test would prove less"
    return feeder


def finish(run: Run, feeder: Feeder, fault_over: float, record_property) -> None:
    feeder.join(300)
    assert not feeder.errors, feeder.errors
    assert feeder.acked == TOTAL
    want = expected(run, [feeder])
    assert len(want.episodes) >= 1 and len(want.alerts) >= 2, "the readings must open and resolve an alert"
    try:
        done, waited = run.wait_outputs(want), ""
    except AssertionError as exc:  # compare anyway: the table says what is missing
        done, waited = time.monotonic(), str(exc).splitlines()[0] + "\n"
    tallies = compare(want, run.observe())
    assert not waited and all(t.clean for t in tallies), waited + table(tallies) + "\n" + run.logs()
    assert run.alive(), run.logs()
    assert b"twin version(s) not written" not in run.log_path.read_bytes(), run.logs()  # a replay, never a fork
    record_property("caught_up_after_fault_s", round(done - fault_over, 1))
    print(f"\n{run.prefix}: caught up {done - fault_over:.1f} s after the fault ended\n{table(tallies)}")


def test_pipeline_killed_and_restarted_with_recovery(run, record_property):
    feeder = started(run)
    run.restart("flow", down_s=DOWN_S)
    finish(run, feeder, time.monotonic(), record_property)


def test_alerts_flow_killed_and_restarted_with_recovery(run, record_property):
    feeder = started(run)
    run.restart("alerts")
    finish(run, feeder, time.monotonic(), record_property)


def test_kafka_unreachable_while_the_pipeline_is_idle(run, fault_stack, record_property):
    feeder = started(run)
    feeder.hold()  # the flows catch up and wait for input, their outputs delivered ...
    run.wait_counts({"rows": feeder.sent * len(SENSORS)})
    kafka = fault_stack.service("kafka")
    kafka.down()  # ... when Kafka goes away; the devices go on, their producer buffers
    feeder.go_on()
    time.sleep(DOWN_S)
    kafka.up()
    finish(run, feeder, time.monotonic(), record_property)


def test_postgres_restarted(run, fault_stack, record_property):
    feeder = started(run)
    fault_stack.restart("postgres", downtime=3)
    finish(run, feeder, time.monotonic(), record_property)
    assert "retrying" in run.logs()


def test_mosquitto_restarted(run, fault_stack, record_property):
    feeder = started(run, mqtt=True)
    fault_stack.restart("mosquitto", downtime=2)
    finish(run, feeder, time.monotonic(), record_property)
