"""What a real plant and a real maintenance team do to the alerts, on the real stack.

A model output from a clock that runs ahead, a webhook receiver that redirects, two people acting on
the same alert at once (CLI and HTTP API), a plant clock behind the people's clocks, two detectors
reporting the same twin, thousands of alerts in the CLI's list. Each case drives the documented
entry point (the alerts flow on Kafka and PostgreSQL, ``twinflow alerts``, ``/api/v1/alerts``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main
from confluent_kafka import Producer
from typer.testing import CliRunner

from connectors.kafka.clients import producer_config
from connectors.postgres.alert_sinks import AlertSink
from flows.alerts import build_flow
from operators.alerts.rules import AlertRules, KindRule
from operators.records.alerts import Alert, AnomalyScore, encode
from tests.db_helpers import private_db  # noqa: F401
from tests.integration.test_alerts_flow import PERIOD, alert_settings, alerts_out, scores, send  # noqa: F401
from tests.kafka_helpers import read_topic
from tests.process_helpers import serving, start_twinflow, stop
from tests.twin_fixtures import settings_env
from twinflow.cli.main import app

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


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


@pytest.fixture
def api_client(alert_settings, tmp_path):  # noqa: F811
    """`twinflow serve` on the test's settings (its own tokens file; bob an operator whom the policy lets act on
    alerts), reached over HTTP as tests/api reach it: (client, bob's token)."""
    from twinflow.api.tokens import TokenStore

    store = TokenStore([])
    token, _ = store.issue("bob")
    store.save(tmp_path / "tokens.json")
    (tmp_path / "subjects.toml").write_text('[subject.bob]\nroles = ["operator"]\n')
    policy = '[[rule]]\nname = "operators"\nsubject = { roles = "operator" }\nalerts = ["*"]\n'
    (tmp_path / "policy.toml").write_text(policy)
    env = {**os.environ, "PYTHONPATH": str(REPO), **settings_env(alert_settings)}
    env["TWINFLOW_API__TOKENS_FILE"] = str(tmp_path / "tokens.json")  # the alerts topics: alert_settings' variables
    env["TWINFLOW_SECURITY__SUBJECTS_FILE"] = str(tmp_path / "subjects.toml")
    env["TWINFLOW_SECURITY__POLICY_FILE"] = str(tmp_path / "policy.toml")
    with serving(env, tmp_path / "serve.log") as base, httpx.Client(base_url=base, timeout=60) as client:
        yield client, token


def _waiting_updates(conninfo: str) -> int:
    with psycopg.connect(conninfo) as db:
        return db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE alerts SET%%'"
        ).fetchone()[0]


@pytest.mark.parametrize("action", ["ack", "resolve"])
def test_two_people_acting_at_once_from_the_cli_and_the_api_are_told_who_won(alert_settings, api_client, action):  # noqa: F811
    """Both read the alert open, both publish; the row takes the first. The second used to be told
    "acknowledged by bob" (changed) while the alert says alice: now "already acknowledged by alice"
    (changed false), or for resolve 409 / exit 1 "resolved meanwhile"."""
    s = alert_settings
    client, token = api_client
    twin = f"pump-race-{uuid.uuid4().hex[:8]}"
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    alert = Alert(f"al-{uuid.uuid4().hex[:12]}", twin, "anomaly", "open", "major", 1, "opened", t, t, summary="race")
    sink = AlertSink(s.postgres.conninfo()).open()
    sink.write([alert])
    sink.close()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TWINFLOW_ALERTS__ACTIONS_TOPIC": s.alerts.actions_topic}
    with psycopg.connect(s.postgres.conninfo()) as lock:  # holds the row: both actors read it, then wait
        lock.execute("SELECT 1 FROM alerts WHERE alert_id = %s FOR UPDATE", (alert.alert_id,))
        cli = subprocess.Popen(
            [sys.executable, "-m", "twinflow.cli.main", "alerts", action, alert.alert_id, "--by", "alice"],
            env={**env, "COLUMNS": "200"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while _waiting_updates(s.postgres.conninfo()) < 1:
            assert time.monotonic() < deadline and cli.poll() is None, cli.communicate()[0]
            time.sleep(0.1)
        with ThreadPoolExecutor(1) as pool:
            api = pool.submit(
                client.post, f"/api/v1/alerts/{alert.alert_id}/{action}", headers={"Authorization": f"Bearer {token}"}
            )
            while _waiting_updates(s.postgres.conninfo()) < 2:
                assert time.monotonic() < deadline and not api.done(), api.result().text
                time.sleep(0.1)
            lock.commit()  # alice's update (first in the queue) goes through, then bob's finds the row changed
            answer = api.result(30)
    said = cli.communicate(timeout=60)[0]
    assert cli.returncode == 0 and "by alice" in said, said
    with psycopg.connect(s.postgres.conninfo()) as db:
        row = db.execute("SELECT state, acked_by, resolved_by FROM alerts WHERE alert_id = %s", (alert.alert_id,))
        state = row.fetchone()
    if action == "ack":
        assert state == ("acknowledged", "alice", None)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["changed"] is False and body["alert"]["acked_by"] == "alice", body
        assert "already acknowledged by alice" in body["message"]
    else:
        assert state == ("resolved", None, "alice")
        assert answer.status_code == 409 and "resolved meanwhile (alice)" in answer.json()["detail"], answer.text


def test_an_ack_is_applied_while_the_twins_data_run_two_hours_behind(alert_settings, tmp_path):  # noqa: F811
    """The live flow (`twinflow alerts run`), the plant's data two hours behind the people's clocks (a
    backlog, a late plant clock) and never pausing. The ack (stamped with the CLI's clock) used to wait
    until the data reached its time: the acknowledged alert kept escalating, and the webhook paged
    people, meanwhile. It is ordered after the data seen so far: acknowledged at once, no escalation."""
    s, a = alert_settings, alert_settings.alerts
    twin = f"pump-late-{uuid.uuid4().hex[:8]}"
    rules = AlertRules(anomaly=KindRule(0.0, 600.0), reorder_window_s=30.0, escalate_after_s=120.0)
    live = a.model_copy(update={"rules": rules})
    env = {**os.environ, "PYTHONPATH": str(REPO), **settings_env(s), "TWINFLOW_ALERTS": live.model_dump_json()}
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    stop_data = threading.Event()

    def stream() -> None:  # the late data go on: 10 s of event time per second, for 20 s
        producer = Producer(producer_config(s))
        for rec in scores(twin, t0, 60, 260, (0, 600)):
            if stop_data.is_set():
                break
            producer.produce(a.anomalies_topic, key=twin.encode(), value=encode(rec))
            producer.poll(0)
            time.sleep(PERIOD / 10)
        producer.flush(30)

    with open(tmp_path / "alerts.log", "wb") as log:
        flow = start_twinflow(["alerts", "run", "--no-recovery"], env, log)
        try:
            send(s, a.anomalies_topic, scores(twin, t0, 0, 60, (0, 600)))  # a fault, opened at once
            [opened] = _wait(lambda: [x for x in alerts_out(s) if x.twin_id == twin], flow, tmp_path)
            ack = subprocess.run(
                [sys.executable, "-m", "twinflow.cli.main", "alerts", "ack", opened.alert_id, "--by", "alice"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert ack.returncode == 0, ack.stdout + ack.stderr
            data = threading.Thread(target=stream)  # (within the reorder window: the twin never goes quiet)
            data.start()
            data.join()
            acked = _wait(
                lambda: [x for x in alerts_out(s) if x.twin_id == twin and x.event == "acknowledged"], flow, tmp_path
            )
            time.sleep(3)  # anything the data would still cause
        finally:
            stop_data.set()
            stop(flow)
    events = [(x.version, x.event, x.escalation_level) for x in alerts_out(s) if x.twin_id == twin]
    assert events == [(1, "opened", 0), (2, "acknowledged", 0)], events
    assert acked[0].acked_by == "alice"


def test_a_shelf_expires_on_the_wall_clock_while_the_data_run_an_hour_behind_or_minutes_ahead(
    alert_settings, tmp_path  # noqa: F811
):
    """The live flow, two twins alerting: one's data an hour behind the people's clocks (a backlog, a
    late plant clock), the other's 3 minutes ahead; each shelved `--for 8s` with the CLI. The shelf's
    expiry was judged on the data's clock: the late twin's shelf lasted an hour longer than asked (until
    the data reached its `until`), the early twin's ended at the next reading. It lasts 8 s of wall time,
    and the `until` people see is the wall time the CLI asked for."""
    s, a = alert_settings, alert_settings.alerts
    uid = uuid.uuid4().hex[:8]
    skews = {f"pump-late-{uid}": timedelta(hours=-1), f"pump-early-{uid}": timedelta(minutes=3)}
    rules = AlertRules(anomaly=KindRule(0.0, 600.0), reorder_window_s=1.0, escalate_after_s=0)
    live = a.model_copy(update={"rules": rules})
    env = {**os.environ, "PYTHONPATH": str(REPO), **settings_env(s), "TWINFLOW_ALERTS": live.model_dump_json()}
    stop_data = threading.Event()

    def stream() -> None:  # each twin's faulty readings, 4 a second, at its clock's skew
        producer = Producer(producer_config(s))
        while not stop_data.is_set():
            for twin, skew in skews.items():
                rec = AnomalyScore(twin, datetime.now(UTC) + skew, 2.0, 1.0, True, {"vibration": 1.0}, "hst")
                producer.produce(a.anomalies_topic, key=twin.encode(), value=encode(rec))
            producer.poll(0)
            time.sleep(0.25)
        producer.flush(30)

    def events(twin: str, event: str) -> list[Alert]:
        return [x for x in alerts_out(s) if x.twin_id == twin and x.event == event]

    data = threading.Thread(target=stream, daemon=True)
    expired: dict[str, float] = {}
    with open(tmp_path / "alerts.log", "wb") as log:
        flow = start_twinflow(["alerts", "run", "--no-recovery"], env, log)
        try:
            data.start()
            opened = {t: _wait(lambda t=t: events(t, "opened"), flow, tmp_path)[0] for t in skews}
            shelved_at = time.monotonic()
            asked = datetime.now(UTC)
            for alert in opened.values():
                shelve = subprocess.run(
                    [sys.executable, "-m", "twinflow.cli.main", "alerts", "shelve", alert.alert_id, "--for", "8s",
                     "--reason", "probe swap", "--by", "alice"],
                    env=env, capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                assert shelve.returncode == 0, shelve.stdout + shelve.stderr
            for twin in skews:
                [v] = _wait(lambda t=twin: events(t, "shelved"), flow, tmp_path)
                off = v.shelved_until - (asked + timedelta(seconds=8)) if v.shelved_until else None
                assert off is not None and abs(off) < timedelta(seconds=15), (twin, v.shelved_until, asked)
                # (the wall time asked for: the CLI takes a few seconds to start)
            deadline = time.monotonic() + 60
            while len(expired) < len(skews) and time.monotonic() < deadline:
                for twin in set(skews) - set(expired):
                    if events(twin, "unshelved"):
                        expired[twin] = time.monotonic() - shelved_at
                assert flow.poll() is None, (tmp_path / "alerts.log").read_text()[-4000:]
                time.sleep(0.25)
        finally:
            stop_data.set()
            stop(flow)
    assert set(expired) == set(skews), f"shelves that did not expire within a minute: {set(skews) - set(expired)}"
    for twin, after in expired.items():
        assert 7 <= after <= 30, f"{twin}: unshelved {after:.1f} s after the shelving (asked: 8 s)"
        [v] = events(twin, "unshelved")
        assert (v.isa_state, v.reopened, v.shelved_until) == ("unack_active", 1, None), v


def _wait(found, proc: subprocess.Popen, tmp_path: Path, timeout: float = 90) -> list:
    """``found()`` once it is not empty, while the flow runs."""
    deadline = time.monotonic() + timeout
    while not (got := found()):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "alerts.log").read_text()
        time.sleep(0.5)
    return got


def test_thousands_of_alerting_twins_the_list_pages_filters_and_sorts_by_severity(private_db, monkeypatch, tmp_path):  # noqa: F811
    """3,000 twins alerting at once (a database of their own). The list used to show the newest 50 and
    say "50 alert(s)", with no way to the critical ones among them or to the next page."""
    s = private_db
    monkeypatch.setenv("TWINFLOW_POSTGRES__DBNAME", s.postgres.dbname)
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    sev = ["critical" if i % 100 == 0 else "major" if i % 3 == 0 else "minor" for i in range(3000)]
    alerts = [
        Alert(f"al-{i:012x}", f"pump-{i:04d}", "failure" if i % 2 else "anomaly", "open", sev[i], 1, "opened",
              t + timedelta(seconds=i), t + timedelta(seconds=i), summary=f"pump-{i:04d}: test")
        for i in range(3000)
    ]  # fmt: skip
    sink = AlertSink(s.postgres.conninfo()).open()
    sink.write(alerts)
    sink.close()
    run = CliRunner().invoke

    first = run(app, ["alerts", "list"])
    assert first.exit_code == 0, first.output
    assert "50 of 3000 alert(s) (1-50); next page: --offset 50" in first.output
    pages = []
    for offset in (0, 1000, 2000):
        page = run(app, ["alerts", "list", "--json", "--limit", "1000", "--offset", str(offset)])
        assert page.exit_code == 0, page.output
        pages += [json.loads(line)["alert_id"] for line in page.output.splitlines() if line.strip()]
    assert len(pages) == len(set(pages)) == 3000 and pages[0] == alerts[-1].alert_id  # newest first, no overlap

    ranked = run(app, ["alerts", "list", "--json", "--sort", "severity", "--limit", "40"])
    rows = [json.loads(line) for line in ranked.output.splitlines() if line.strip()]
    assert [r["severity"] for r in rows] == ["critical"] * 30 + ["major"] * 10
    assert rows[0]["alert_id"] == alerts[2900].alert_id  # the newest critical one first
    only = run(app, ["alerts", "list", "--severity", "critical,major", "--kind", "anomaly", "--limit", "5"])
    n = sum(1 for x in alerts if x.severity != "minor" and x.kind == "anomaly")
    assert f"5 of {n} alert(s) (1-5); next page: --offset 5" in only.output, only.output
    bad = run(app, ["alerts", "list", "--severity", "urgent"])
    assert bad.exit_code == 2 and "--severity 'urgent': use one or more of minor, major, critical" in bad.output
    assert run(app, ["alerts", "list", "--sort", "loudest"]).exit_code == 2

    env = {**os.environ, "PYTHONPATH": str(REPO), "TWINFLOW_API__ANONYMOUS_READ": "true"}  # the database: above
    with serving(env, tmp_path / "serve.log") as base, httpx.Client(base_url=base, timeout=30) as client:
        got = client.get("/api/v1/alerts", params={"severity": ["critical"], "sort": "severity", "offset": 25})
        assert got.status_code == 200, got.text
        assert [x["alert_id"] for x in got.json()["items"]] == [alerts[i].alert_id for i in (400, 300, 200, 100, 0)]
        assert client.get("/api/v1/alerts", params={"severity": "urgent"}).status_code in (400, 422)
