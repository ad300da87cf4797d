"""The webhook's outbox from the outside: the real alerts flow (`twinflow alerts run`, or the flow
run to the end of its topics), a real HTTP receiver (tests/webhook_receiver.py), a database of its
own. A receiver that hangs and then comes back gets every version once, in order, and the flow goes
on meanwhile; a 410 fails one version with its reason (`twinflow alerts deliveries`), not the next,
and `twinflow alerts redeliver` sends it again; a kill -9 mid-delivery loses nothing and re-sends
only what was in flight. Retry timings are shortened by settings (docs/alerts.md, "Webhook")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax.testing import run_main
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr
from typer.testing import CliRunner

from connectors.kafka.clients import TopicSpec, alert_topic_specs, client_config, ensure_topics
from flows.alerts import build_flow
from operators.alerts.rules import AlertRules, KindRule
from tests.db_helpers import private_db  # noqa: F401
from tests.integration.test_alerts_flow import scores, send
from tests.process_helpers import start_twinflow, stop
from tests.twin_fixtures import settings_env
from tests.webhook_receiver import Receiver
from twinflow.cli.main import app

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SECRET = "outbox-test-secret"
FAULT = (0, 30)  # each twin: a fault from 0 to 30 s, clear until 60 s: opened (v1), resolved (v2)


@pytest.fixture
def outbox_settings(private_db, monkeypatch):  # noqa: F811
    """A database and alert topics of this test's own; fast retries (0.2 s doubling to 0.5 s)."""
    suffix = uuid.uuid4().hex[:8]
    names = {
        f: f"test.{f}.{suffix}"
        for f in ("topic", "actions_topic", "anomalies_topic", "failures_topic", "forecasts_topic", "status_topic",
                  "suppression_topic")
    }  # fmt: skip
    rules = AlertRules(anomaly=KindRule(0.0, 10.0), reorder_window_s=0.2, escalate_after_s=0)
    alerts = private_db.alerts.model_copy(
        update={
            **names,
            "partitions": 2,
            "rules": rules,
            "webhook_secret": SecretStr(SECRET),
            "webhook_timeout_s": 1.0,
            "webhook_backoff_s": 0.2,
            "webhook_backoff_max_s": 0.5,
            "webhook_poll_s": 0.2,
        }
    )
    topics = private_db.topics.model_copy(update={"raw": f"test.raw.{suffix}", "dlq": f"test.dlq.{suffix}"})
    twin = private_db.twin.model_copy(update={"desync_topic": f"test.desync.{suffix}"})
    s = private_db.model_copy(update={"alerts": alerts, "topics": topics, "twin": twin})
    made = [*alert_topic_specs(s), TopicSpec(twin.desync_topic, 1, {}), TopicSpec(topics.dlq, 1, {})]
    ensure_topics(s, made)
    monkeypatch.setenv("TWINFLOW_POSTGRES__DBNAME", s.postgres.dbname)  # the CLI in this process
    yield s
    AdminClient(client_config(s)).delete_topics([t.name for t in made])


def with_url(s, url: str, **more: Any):
    return s.model_copy(update={"alerts": s.alerts.model_copy(update={"webhook_url": url, **more})})


def flow_env(s, tmp_path: Path) -> dict[str, str]:
    """The environment of a `twinflow alerts run` on ``s`` (its secret, which a dump masks, included)."""
    alerts = json.loads(s.alerts.model_dump_json())
    alerts["webhook_secret"] = SECRET
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        **settings_env(s),
        "TWINFLOW_ALERTS": json.dumps(alerts),
        "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp_path / "recovery"),
        "TWINFLOW_FLOW__SNAPSHOT_INTERVAL_S": "1",
    }


def alert_twins(s, twins: list[str], t0: datetime) -> None:
    """Each twin's fault and its end: two versions of one alert per twin."""
    send(s, s.alerts.anomalies_topic, [r for t in twins for r in scores(t, t0, 0, 60, FAULT)])


def outbox(s, twins: list[str]) -> dict[str, tuple[str, int, str | None]]:
    """``alert_id:version`` → (state, attempts, last error) of the twins' outbox rows."""
    with psycopg.connect(s.postgres.conninfo()) as db:
        rows = db.execute(
            "SELECT alert_id, version, state, attempts, last_error FROM webhook_outbox WHERE twin_id = ANY(%s)",
            (twins,),
        ).fetchall()
    return {f"{a}:{v}": (state, n, error) for a, v, state, n, error in rows}


def resolved(s, twins: list[str]) -> set[str]:
    """The twins whose alert is resolved in the database."""
    with psycopg.connect(s.postgres.conninfo()) as db:
        rows = db.execute("SELECT twin_id FROM alerts WHERE twin_id = ANY(%s) AND state = 'resolved'", (twins,))
        return {r[0] for r in rows}


def wait(found: Callable[[], Any], what: str, proc: subprocess.Popen | None, log: Path | None, timeout: float = 30):
    """``found()`` once it is truthy (the flow alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while not (got := found()):
        alive = proc is None or proc.poll() is None
        assert alive and time.monotonic() < deadline, f"no {what}:\n" + (log.read_text()[-4000:] if log else "")
        time.sleep(0.1)
    return got


def in_order(keys: list[str]) -> bool:
    """Each alert's versions first arrive in increasing order."""
    seen: dict[str, int] = {}
    for key in dict.fromkeys(keys):  # first arrivals
        alert, version = key.rsplit(":", 1)
        if int(version) <= seen.get(alert, 0):
            return False
        seen[alert] = int(version)
    return True


def test_a_hanging_receiver_holds_up_no_alert_and_gets_everything_once_in_order_when_it_is_back(
    outbox_settings, tmp_path
):
    """The flow used to POST inline: a receiver that did not answer held the whole alerts flow (every
    twin's alerts) for attempts × timeout per version, then the version was only logged."""
    uid = uuid.uuid4().hex[:8]
    twin_a, twin_b = f"pump-a-{uid}", f"pump-b-{uid}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    log = tmp_path / "alerts.log"
    with Receiver(hanging=True) as rx, open(log, "wb") as out:
        s = with_url(outbox_settings, rx.url)
        flow = start_twinflow(["alerts", "run", "--no-recovery"], flow_env(s, tmp_path), out)
        try:
            alert_twins(s, [twin_a], t0)
            wait(lambda: resolved(s, [twin_a]), "alert of A", flow, log)
            tried = lambda: outbox(s, [twin_a]).values()  # noqa: E731
            wait(lambda: [n for st, n, _ in tried() if st == "pending" and n >= 1], "A's versions tried", flow, log)
            asked = time.monotonic()
            alert_twins(s, [twin_b], t0)  # while A's versions wait for the receiver
            wait(lambda: resolved(s, [twin_b]), "alert of B", flow, log)
            took = time.monotonic() - asked
            assert took < 5, f"B's alert took {took:.1f} s: held up by A's deliveries"
            assert rx.requests == []

            rx.hanging = False  # the receiver is back
            expected = set(outbox(s, [twin_a, twin_b]))
            assert len(expected) == 4
            wait(lambda: set(rx.keys()) == expected, "every version delivered", flow, log)
            rows = lambda: outbox(s, [twin_a, twin_b]).values()  # noqa: E731
            wait(lambda: all(st == "delivered" for st, _, _ in rows()), "rows delivered", flow, log)
            time.sleep(1)  # nothing more comes
        finally:
            assert stop(flow) == 0, log.read_text()[-4000:]
    assert sorted(rx.keys()) == sorted(expected), "each version exactly once"
    assert in_order(rx.keys()), rx.keys()
    listed = CliRunner().invoke(app, ["alerts", "deliveries", "--twin", twin_a])
    assert listed.exit_code == 0, listed.output
    assert "in the outbox: 0 pending, 4 delivered, 0 failed" in listed.output
    assert listed.output.count("delivered") >= 3 and "attempt(s)" in listed.output


def test_a_410_fails_that_version_with_its_reason_not_the_next_and_it_can_be_sent_again(outbox_settings):
    """A refused notification used to be in the flow's log only. Run to the end of the topics twice:
    the second run replays every version and queues none again."""
    twin = f"pump-gone-{uuid.uuid4().hex[:8]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    alert_twins(outbox_settings, [twin], t0)
    with Receiver(fail_first=1, fail_status=410) as rx:
        s = with_url(outbox_settings, rx.url, webhook_concurrency=1)
        run_main(build_flow(s, tail=False))  # its end delivers what is due
        rows = outbox(s, [twin])
        [(first, (state1, n1, why)), (second, (state2, _, _))] = sorted(rows.items())
        assert first.endswith(":1") and second.endswith(":2")
        assert (state1, n1, state2) == ("failed", 1, "delivered") and "HTTP 410" in (why or ""), rows
        assert rx.attempts == 2 and rx.keys() == [second]

        failed = CliRunner().invoke(app, ["alerts", "deliveries", "--state", "failed"])
        assert failed.exit_code == 0, failed.output
        assert first.split(":")[0] in failed.output and "HTTP 410" in failed.output, failed.output
        assert "1 failed" in failed.output and "redeliver --failed" in failed.output

        again = CliRunner().invoke(app, ["alerts", "redeliver", first.split(":")[0], "--by", "carol"])
        assert again.exit_code == 0 and "1 version(s) queued again" in again.output, again.output
        run_main(build_flow(s, tail=False))  # a replay of every version, and the redelivery
        assert rx.keys() == [second, first], "the refused one again, nothing else"
        assert {k: v[0] for k, v in outbox(s, [twin]).items()} == {first: "delivered", second: "delivered"}

        pages = [CliRunner().invoke(app, ["alerts", "deliveries", "--twin", twin, "--limit", "1", "--offset", str(n)])
                 for n in (0, 1)]  # fmt: skip
        assert "1 shown (1-1 of 2; next page: --offset 1)" in pages[0].output, pages[0].output
        assert "1 shown (2-2 of 2)" in pages[1].output, pages[1].output
        assert "queued again by carol" in pages[0].output + pages[1].output

    nothing = CliRunner().invoke(app, ["alerts", "redeliver", "al-nope"])  # (no alert: nothing to authorize on)
    assert nothing.exit_code == 1 and "no alert 'al-nope'" in nothing.output, nothing.output
    usage = CliRunner().invoke(app, ["alerts", "redeliver"])
    assert usage.exit_code == 2 and "ALERT_ID" in usage.output


def test_a_kill_9_mid_delivery_loses_nothing_and_resends_only_what_was_in_flight(outbox_settings, tmp_path):
    uid = uuid.uuid4().hex[:8]
    twins = [f"pump-{i}-{uid}" for i in range(8)]
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    log = tmp_path / "alerts.log"
    with Receiver(delay_s=0.3) as rx:  # recorded on arrival, answered 0.3 s later
        s = with_url(outbox_settings, rx.url, webhook_concurrency=2)
        env = flow_env(s, tmp_path)
        alert_twins(s, twins, t0)
        with open(log, "wb") as out:
            flow = start_twinflow(["alerts", "run"], env, out)
            wait(lambda: len(rx.requests) >= 4, "first deliveries", flow, log)
            os.killpg(flow.pid, signal.SIGKILL)
            flow.wait()
        delivered = {k for k, (st, _, _) in outbox(s, twins).items() if st == "delivered"}
        assert 0 < len(delivered) < 16, "killed mid-delivery"
        with open(log, "ab") as out:
            flow = start_twinflow(["alerts", "run"], env, out)
            try:
                wait(lambda: len(outbox(s, twins)) == 16 and set(rx.keys()) == set(outbox(s, twins)), "all", flow, log)
                wait(lambda: all(st == "delivered" for st, _, _ in outbox(s, twins).values()), "rows", flow, log)
                time.sleep(1)
            finally:
                assert stop(flow) == 0, log.read_text()[-4000:]
    got = Counter(rx.keys())
    assert set(got) == set(outbox(s, twins)) and len(got) == 16, "nothing lost"
    again = {k for k, n in got.items() if n > 1}
    assert not again & delivered, f"delivered before the kill and sent again: {again & delivered}"
    assert len(again) <= 2 and all(got[k] == 2 for k in again), got  # at most the 2 in flight
    assert in_order(rx.keys()), rx.keys()


def test_a_503_with_retry_after_is_tried_again_when_the_receiver_asked_and_deliveries_say_when(
    outbox_settings, tmp_path
):
    """Retry-After used to be ignored: the next attempt came after the backoff (0.2 s here)."""
    twin = f"pump-busy-{uuid.uuid4().hex[:8]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    log = tmp_path / "alerts.log"
    with Receiver(fail_first=1, fail_status=503, retry_after="3") as rx, open(log, "wb") as out:
        s = with_url(outbox_settings, rx.url, webhook_concurrency=1)
        flow = start_twinflow(["alerts", "run", "--no-recovery"], flow_env(s, tmp_path), out)
        try:
            alert_twins(s, [twin], t0)
            wait(lambda: rx.attempts >= 1, "a first attempt", flow, log)

            def deliveries() -> str | None:
                out = CliRunner().invoke(app, ["alerts", "deliveries", "--twin", twin]).output
                return out if "Retry-After: 3" in out else None

            listed = wait(deliveries, "the pending version in deliveries", flow, log)
            assert "HTTP 503" in listed and "next attempt" in listed, listed
            pending = CliRunner().invoke(app, ["alerts", "deliveries", "--twin", twin, "--state", "pending", "--json"])
            [row] = [r for r in map(json.loads, pending.output.splitlines()) if r["attempts"]]
            waits = datetime.fromisoformat(row["next_attempt_at"]) - datetime.fromisoformat(row["last_attempt_at"])
            assert 2.9 <= waits.total_seconds() <= 3.5, row
            wait(lambda: len(rx.requests) == 2, "both versions delivered", flow, log)
        finally:
            assert stop(flow) == 0, log.read_text()[-4000:]
    gap = rx.attempted_at[1] - rx.attempted_at[0]
    assert 2.8 <= gap <= 6, f"second attempt {gap:.1f} s after the first, the receiver asked for 3 s"
    assert "the receiver asked for 3 s" in log.read_text()


def test_retry_after_is_bounded_by_the_retention_also_as_an_http_date(outbox_settings):
    """A receiver asking for a day (as an HTTP-date) gets its next attempt at the end of the retention."""
    from email.utils import format_datetime

    twin = f"pump-later-{uuid.uuid4().hex[:8]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    alert_twins(outbox_settings, [twin], t0)
    tomorrow = format_datetime(datetime.now(UTC) + timedelta(days=1), usegmt=True)
    with Receiver(fail_first=100, fail_status=429, retry_after=tomorrow) as rx:
        s = with_url(outbox_settings, rx.url, webhook_concurrency=1, webhook_retention_s=60.0)
        run_main(build_flow(s, tail=False))  # its end tries what is due once; the receiver says "tomorrow"
    assert rx.attempts == 1
    with psycopg.connect(s.postgres.conninfo()) as db:
        [(state, created, last, after, error)] = db.execute(
            "SELECT state, created_at, last_attempt_at, next_attempt_at, last_error FROM webhook_outbox"
            " WHERE twin_id = %s AND version = 1", (twin,)).fetchall()  # fmt: skip
    assert state == "pending" and "HTTP 429" in error and "Retry-After" in error
    assert abs((after - created).total_seconds() - 60) < 2, (created, last, after)
