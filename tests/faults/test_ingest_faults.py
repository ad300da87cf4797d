"""Fault injection on the ingest path, on a private stack: a flow worker killed with -9 and
restarted (Bytewax recovery), Kafka restarted, PostgreSQL restarted (the sink retries with
backoff), Mosquitto restarted (the bridge reconnects and resubscribes). For each: readings
acknowledged vs rows in the database — zero lost, zero duplicated — and the time to recover
(reported as a test property, never asserted)."""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import SENSORS, KafkaFeeder, MqttFeeder, Run

pytestmark = pytest.mark.integration

TWINS, TOTAL, RATE = 5, 4000, 500.0  # 8 s of feed, 8000 rows


@pytest.fixture
def run(fault_stack, tmp_path, request):
    r = Run.create(fault_stack, tmp_path, request.node.name.split("_")[1][:6])
    yield r
    r.close()


def finish(run: Run, feeder, fault_over: float, record_property) -> None:
    feeder.join(300)
    assert not feeder.errors, feeder.errors
    assert feeder.acked == TOTAL
    done = run.wait_rows(feeder.expected_rows)
    time.sleep(1.0)  # anything beyond the expected rows would be a duplicate
    rows, distinct = run.rows()
    assert rows == distinct == TOTAL * len(SENSORS), run.logs()
    record_property("caught_up_after_fault_s", round(done - fault_over, 1))
    print(f"\n{run.prefix}: {rows} rows, caught up {done - fault_over:.1f} s after the fault ended")


def test_flow_killed_and_restarted_with_recovery(run, record_property):
    run.start_flow(recovery=True)
    feeder = KafkaFeeder(run, TWINS, TOTAL, RATE)
    run.wait_started()
    feeder.start()
    run.wait_rows(TOTAL // 3 * len(SENSORS))  # killed while it writes, not while it starts
    assert run.alive("flow") and feeder.is_alive(), run.logs()
    run.kill("flow")
    time.sleep(1)
    run.start_flow(recovery=True)
    finish(run, feeder, time.monotonic(), record_property)


def test_kafka_restarted(run, fault_stack, record_property):
    run.start_flow(recovery=False)
    feeder = KafkaFeeder(run, TWINS, TOTAL, RATE)
    feeder.start()
    time.sleep(2)
    healthy_after = fault_stack.restart("kafka", downtime=2)
    record_property("kafka_restart_s", round(healthy_after, 1))
    over = time.monotonic()
    finish(run, feeder, over, record_property)
    assert run.alive("flow"), run.logs()


def test_postgres_restarted_sink_retries(run, fault_stack, record_property):
    run.start_flow(recovery=False)
    feeder = KafkaFeeder(run, TWINS, TOTAL, RATE)
    feeder.start()
    time.sleep(2)
    fault_stack.restart("postgres", downtime=3)
    over = time.monotonic()
    finish(run, feeder, over, record_property)
    assert run.alive("flow"), "the flow crashed instead of retrying\n" + run.logs()
    assert "retrying" in run.logs()


def test_mosquitto_restarted_bridge_reconnects(run, fault_stack, record_property):
    run.start_flow(recovery=False)
    run.start_bridge()
    feeder = MqttFeeder(run, TWINS, TOTAL, RATE, run.settings.mqtt)
    feeder.start()
    time.sleep(2)
    fault_stack.restart("mosquitto", downtime=2)
    over = time.monotonic()
    finish(run, feeder, over, record_property)
    assert run.alive("bridge") and run.alive("flow"), run.logs()


def test_kafka_unreachable_while_the_bridge_buffers(run, fault_stack, record_property):
    run.start_flow(recovery=False)
    run.start_bridge()
    feeder = MqttFeeder(run, TWINS, TOTAL, RATE, run.settings.mqtt)
    feeder.start()
    time.sleep(1)
    fault_stack.restart("kafka", downtime=10)  # the bridge keeps taking MQTT messages meanwhile
    over = time.monotonic()
    finish(run, feeder, over, record_property)
    assert run.alive("bridge") and run.alive("flow"), run.logs()
