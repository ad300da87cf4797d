"""A model of your own beside the built-in models: both models' outputs of the same instants are kept.

The built-in models (``twinflow-t2``) and a model of the user's (``vib-lstm``) publish anomaly scores,
failure predictions and forecasts for the same twin and the same instants to the alerts flow's topics,
as JSON from a plain Kafka producer (docs/alerts.md, "A model of your own"). ``twinflow run alerts``
writes them to a private, migrated database. Both models' rows must be there, a second run over the
same records (a replay) must write nothing new, and the documented reads must show the built-in
models' rows by default and the other model's when asked: the HTTP API (``twinflow serve``:
``/twins``, ``/twins/{id}/scores``, ``/twins/{id}/forecasts``, ``/twins/{id}/failures``, ``/failures``,
``?model=``), ``twinflow twin list``
(``--model``), the named query ``fleet_health`` and the view ``twin_health``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from confluent_kafka import Producer

from connectors.kafka.clients import alert_topic_specs, delete_topics, ensure_topics, producer_config, twin_topic_specs
from connectors.postgres.twin_sink import TwinSink
from tests.db_helpers import private_db  # noqa: F401
from tests.process_helpers import serving
from tests.seed import version
from tests.twin_fixtures import alert_settings_for, settings_env, twin_settings_for
from twinflow import queries
from twinflow.api.tokens import TokenStore
from twinflow.settings import Settings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
BUILTIN, OWN = "twinflow-t2", "vib-lstm"
TABLES = {"anomaly_scores": "ts", "failure_predictions": "ts", "forecasts": "sensor, ts, target_ts"}


@pytest.fixture
def system(private_db: Settings, tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:  # noqa: F811
    """Topics and a database of this test's own; the environment that gives them to the CLI."""
    base = twin_settings_for(private_db)
    sfx = base.topics.raw.rsplit(".", 1)[1]
    alerts = alert_settings_for(sfx)
    s = base.model_copy(update={"alerts": alerts})
    ensure_topics(s, alert_topic_specs(s))
    tokens = TokenStore([])
    token, _ = tokens.issue("ann")
    tokens.save(tmp_path / "tokens.toml")
    env = {
        **os.environ,
        **settings_env(s),
        "TWINFLOW_ALERTS": alerts.model_dump_json(),
        "TWINFLOW_API__TOKENS_FILE": str(tmp_path / "tokens.toml"),
        "TWINFLOW_TEST_TOKEN": token,
    }
    try:
        yield s, env
    finally:
        own = [*twin_topic_specs(s), *alert_topic_specs(s)]
        delete_topics(s, [s.topics.raw, s.topics.dlq, *(t.name for t in own)])


def publish(s: Settings, twin: str, t0: datetime) -> None:
    """Both models' outputs for the same instants, as a model of your own sends them (JSON, key = twin id)."""
    a = s.alerts
    records: list[tuple[str, dict]] = []
    for i in range(5):
        ts = (t0 + timedelta(seconds=5 * i)).isoformat()
        for model, score in ((BUILTIN, 0.1), (OWN, 0.9)):
            records.append(
                (a.anomalies_topic, {"twin_id": twin, "ts": ts, "score": score, "threshold": 0.5,
                                     "is_anomaly": score >= 0.5, "contributions": {"vibration": 1.0},
                                     "model": model, "health": 0.95 if model == BUILTIN else None})
            )  # fmt: skip
    ts, target = t0.isoformat(), (t0 + timedelta(minutes=10)).isoformat()
    for model, rul in (("twinflow-t2-rul:pumps", 400_000.0), ("vib-rul", 500_000.0)):
        records.append((a.failures_topic, {"twin_id": twin, "ts": ts, "rul_s": rul, "failure_probability": 0.1,
                                           "model": model}))  # fmt: skip
    for model, predicted in (("", 60.0), (OWN, 70.0)):  # the built-in forecasts name no model
        records.append((a.forecasts_topic, {"twin_id": twin, "sensor": "temp_c", "ts": ts, "target_ts": target,
                                            "predicted": predicted, "lower": predicted - 1, "upper": predicted + 1,
                                            "model": model}))  # fmt: skip
    p = Producer(producer_config(s))
    for topic, value in records:
        p.produce(topic, key=twin.encode(), value=json.dumps(value).encode())
    assert p.flush(10) == 0


def run_alerts(env: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", "run", "alerts", "--no-recovery", "--no-tail"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]


def stored(s: Settings, twin: str) -> dict[str, list[tuple]]:
    with psycopg.connect(s.postgres.conninfo()) as db:
        return {
            table: db.execute(
                f"SELECT model, {key}, written_at FROM {table} WHERE twin_id = %s ORDER BY model, {key}"
                if table == "anomaly_scores"
                else f"SELECT model, {key} FROM {table} WHERE twin_id = %s ORDER BY model, {key}",
                (twin,),
            ).fetchall()
            for table, key in TABLES.items()
        }


def test_a_model_of_your_own_keeps_its_rows_beside_the_builtin_ones(system, tmp_path: Path) -> None:
    s, env = system
    twin = f"pump-own-{uuid.uuid4().hex[:8]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    publish(s, twin, t0)
    run_alerts(env)
    with psycopg.connect(s.postgres.conninfo()) as db:  # before 0140 the later model's record replaced the other's
        count = "SELECT model, count(*) FROM anomaly_scores WHERE twin_id = %s GROUP BY model ORDER BY model"
        assert db.execute(count, (twin,)).fetchall() == [(BUILTIN, 5), (OWN, 5)]

    rows = stored(s, twin)
    per_model = {t: sorted({r[0] for r in rs}) for t, rs in rows.items()}
    assert per_model == {
        "anomaly_scores": [BUILTIN, OWN],
        "failure_predictions": ["twinflow-t2-rul:pumps", "vib-rul"],
        "forecasts": ["", OWN],
    }
    assert [len(rs) for rs in rows.values()] == [10, 2, 2]
    run_alerts(env)  # a replay of the same records writes nothing new
    assert stored(s, twin) == rows

    # the named query and the view: the built-in models' latest row, once per twin
    with psycopg.connect(s.postgres.conninfo()) as db:
        (health,) = queries.run(db, "fleet_health", twins=[twin], stale_after="5 minutes")
        assert (health["anomaly_score"], health["health"], health["rul_hours"]) == (0.1, 0.95, 400_000 / 3600)
        assert db.execute("SELECT score FROM twin_health WHERE twin_id = %s", (twin,)).fetchall() == [(0.1,)]

    # the fleet needs a twin state (the twin flow's): one version
    writer = TwinSink(s.postgres.conninfo()).open()
    writer.write([version(twin, t0, 1, "synchronized", 1.0, None, 0)])
    writer.close()

    # the CLI's fleet list: the built-in score by default, the other model's with --model
    def listed(*extra: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "twinflow.cli.main", "twin", "list", "--json", *extra],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        return next(json.loads(line) for line in out.stdout.splitlines() if twin in line)

    assert (listed()["score"], listed("--model", OWN)["score"]) == (0.1, 0.9)

    # the HTTP API
    headers = {"Authorization": f"Bearer {env['TWINFLOW_TEST_TOKEN']}"}
    with (
        serving({**env, "PYTHONPATH": str(REPO)}, tmp_path / "serve.log") as base,
        httpx.Client(base_url=f"{base}/api/v1", headers=headers, timeout=10) as c,
    ):
        since = {"from": (t0 - timedelta(minutes=1)).isoformat()}
        scores = c.get(f"/twins/{twin}/scores", params=since).json()
        own = c.get(f"/twins/{twin}/scores", params={**since, "model": OWN}).json()
        assert (scores["score"], scores["model"]) == ([0.1] * 5, [BUILTIN] * 5)
        assert (own["score"], own["model"]) == ([0.9] * 5, [OWN] * 5)
        assert scores["ts"] == own["ts"]
        forecast = c.get(f"/twins/{twin}/forecasts").json()["temp_c"]
        own_forecast = c.get(f"/twins/{twin}/forecasts", params={"model": OWN}).json()["temp_c"]
        assert (forecast["predicted"], forecast["model"]) == ([60.0], "")
        assert (own_forecast["predicted"], own_forecast["model"]) == ([70.0], OWN)
        failures = c.get(f"/twins/{twin}/failures").json()
        own_failures = c.get(f"/twins/{twin}/failures", params={"model": "vib-rul"}).json()
        assert (failures["rul_s"], failures["model"]) == ([400_000.0], ["twinflow-t2-rul:pumps"])
        assert (own_failures["rul_s"], own_failures["model"]) == ([500_000.0], ["vib-rul"])
        soon = {"twin": twin, "within_h": 200}  # 400,000 s: 111 h; 500,000 s: 139 h
        [builtin] = c.get("/failures", params=soon).json()["items"]
        [own_rul] = c.get("/failures", params={**soon, "model": "vib-rul"}).json()["items"]
        assert (builtin["model"], own_rul["model"]) == ("twinflow-t2-rul:pumps", "vib-rul")
        fleet = {t["twin_id"]: t for t in c.get("/twins", params={"limit": 500}).json()["items"]}
        own_fleet = {t["twin_id"]: t for t in c.get("/twins", params={"model": OWN}).json()["items"]}
        assert (fleet[twin]["anomaly"]["score"], own_fleet[twin]["anomaly"]["score"]) == (0.1, 0.9)
