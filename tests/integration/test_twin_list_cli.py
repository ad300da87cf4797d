"""``twinflow twin list``: the fleet from the database, as an operator lists it from the shell."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from connectors.postgres.alert_sinks import AlertSink, ModelOutputSink
from connectors.postgres.twin_sink import TwinSink
from operators.records.alerts import Alert, AnomalyScore
from tests.seed import version
from twinflow.cli.main import app

pytestmark = pytest.mark.integration


def test_twin_list_shows_each_twin_its_status_alerts_score_and_policy_type(stack_settings, unique, monkeypatch):
    conninfo = stack_settings.postgres.conninfo()
    prefix = f"tl-{unique}"
    pump, fan, quiet = f"{prefix}-a-pump", f"{prefix}-b-fan", f"{prefix}-c-pump"
    now = datetime.now(UTC).replace(microsecond=0)
    writer = TwinSink(conninfo).open()
    writer.write([version(t, now - timedelta(minutes=5 - v), v, status, 1.0, None, 0) for t, v, status in
                  ((pump, 1, "synchronized"), (pump, 2, "desynced"), (fan, 1, "synchronized"),
                   (quiet, 1, "synchronized"))])  # fmt: skip
    writer.close()
    scores = ModelOutputSink(conninfo).open()
    scores.write([AnomalyScore(pump, now, 0.9, 0.5, True, {"x": 1.0}, "twinflow-t2")])
    scores.close()
    alerts = AlertSink(conninfo).open()
    alerts.write([Alert(f"al-{unique}", pump, "anomaly", "open", "critical", 1, "opened", now, now, summary="t")])
    alerts.close()
    monkeypatch.setenv("TWINFLOW_TWIN__POLICY", json.dumps({"types": {"pump": {"match": [f"{prefix}-*-pump"]}}}))
    run = CliRunner().invoke

    listed = run(app, ["twin", "list", "--after", prefix, "--limit", "3", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["twin_id"]: r for r in map(json.loads, listed.output.splitlines())}
    assert list(rows) == [pump, fan, quiet]
    assert (rows[pump]["status"], rows[pump]["version"], rows[pump]["open_alerts"]) == ("desynced", 2, 1)
    assert (rows[pump]["worst_severity"], rows[pump]["score"], rows[pump]["attributes"]) == (
        "critical", 0.9, {"type": "pump"}
    )  # fmt: skip
    assert rows[fan]["attributes"] == {} and rows[fan]["score"] is None
    pumps = run(app, ["twin", "list", "--after", prefix, "--limit", "2", "--type", "pump", "--json"])
    assert [json.loads(line)["twin_id"] for line in pumps.output.splitlines()] == [pump, quiet]
    desynced = run(app, ["twin", "list", "--after", prefix, "--limit", "1", "--status", "desynced", "--json"])
    assert [json.loads(line)["twin_id"] for line in desynced.output.splitlines()] == [pump]
    table = run(app, ["twin", "list", "--after", prefix, "--limit", "3"])
    assert table.exit_code == 0 and "1 (critical)" in table.output and "0.90 ⚠" in table.output, table.output
    assert f"3 twin(s); next page: --after {quiet}" in table.output
    bad = run(app, ["twin", "list", "--status", "broken"])
    assert bad.exit_code == 2 and "use one of synchronized" in bad.output
