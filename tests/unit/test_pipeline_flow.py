"""The pipeline flow's wiring: one Kafka input, the three flows' steps each in a scope of its own."""

from __future__ import annotations

from flows.pipeline import build_flow, input_topics
from twinflow.settings import Settings


def _steps(step, out: dict[str, object]) -> dict[str, object]:
    for sub in getattr(step, "substeps", []):
        out[sub.step_id] = sub
        _steps(sub, out)
    return out


def test_one_input_reads_every_topic_of_the_three_flows_once() -> None:
    s = Settings()
    steps = _steps(build_flow(s, tail=False), {})
    inputs = [step for step in steps.values() if type(step).__name__ == "input"]
    assert [i.step_id for i in inputs] == ["twinflow-pipeline.kafka_in"]
    topics = inputs[0].source._topics
    assert topics.count(s.topics.raw) == 1
    assert set(topics) == {t for part in input_topics(s).values() for t in part}
    assert {s.twin.desired_topic, s.twin.acks_topic, s.alerts.status_topic, s.topics.model_control} <= set(topics)


def test_the_parts_keep_their_flows_step_ids_in_their_own_scope() -> None:
    ids = set(_steps(build_flow(Settings(), tail=False), {}))
    assert {"twinflow-pipeline.ingest.postgres", "twinflow-pipeline.ingest.dlq"} <= ids
    assert "twinflow-pipeline.reconcile.twin_state" in ids
    assert "twinflow-pipeline.models.models.stateful_flat_map.stateful.stateful_batch" in ids
    assert "twinflow-pipeline.models.fleet_model.stateful_flat_map.stateful.stateful_batch" in ids


def test_rows_are_written_by_the_ingest_part_only_even_with_twin_ingest_on() -> None:
    s = Settings()
    s = s.model_copy(update={"twin": s.twin.model_copy(update={"ingest": True})})
    ids = set(_steps(build_flow(s, tail=False), {}))
    assert "twinflow-pipeline.ingest.postgres" in ids
    assert not any(i.startswith("twinflow-pipeline.reconcile.twin_telemetry_postgres") for i in ids)
