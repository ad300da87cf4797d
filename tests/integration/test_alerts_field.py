"""What a real plant and a real maintenance team do to the alerts, on the real stack.

A model output from a clock that runs ahead, a webhook receiver that redirects, two people acting on
the same alert at once (CLI and HTTP API), a plant clock behind the people's clocks, two detectors
reporting the same twin, thousands of alerts in the CLI's list. Each case drives the documented
entry point (the alerts flow on Kafka and PostgreSQL, ``twinflow alerts``, ``/api/v1/alerts``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from flows.alerts import build_flow
from operators.records.alerts import AnomalyScore
from tests.integration.test_alerts_flow import alert_settings, alerts_out, scores, send  # noqa: F401
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration


def test_a_model_output_from_a_clock_far_ahead_is_dead_lettered_and_does_not_silence_the_twin(
    alert_settings,  # noqa: F811
    tmp_path,
):
    """One record a day in the future used to become the twin's clock: every later (true) record was
    too old to count, so the twin's next fault raised nothing. It is dead-lettered (``ts_future``)."""
    s, a = alert_settings, alert_settings.alerts
    twin = f"pump-skew-{uuid.uuid4().hex[:8]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=400)
    rdir = tmp_path / "recovery"
    rdir.mkdir()
    init_db_dir(rdir, 1)

    def run() -> None:
        run_main(
            build_flow(s, tail=False), epoch_interval=timedelta(seconds=1), recovery_config=RecoveryConfig(str(rdir))
        )

    ahead = AnomalyScore(twin, datetime.now(UTC) + timedelta(days=1), 0.1, 1.0, False, {}, "hst")
    send(s, a.anomalies_topic, [ahead, *scores(twin, t0, 0, 100, (0, 0))])
    run()
    send(s, a.anomalies_topic, scores(twin, t0, 100, 400, (120, 400)))  # then a real fault
    run()
    opened = [x for x in alerts_out(s) if x.twin_id == twin and x.event == "opened"]
    assert [(x.kind, x.opened_at > t0 + timedelta(seconds=120)) for x in opened] == [("anomaly", True)]
    dead = [r for r in read_topic(s, s.topics.dlq) if r.key == twin.encode()]
    assert [r.headers["dlq.reason"] for r in dead] == [b"ts_future"]
