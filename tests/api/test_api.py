"""`twinflow serve` from the outside, over HTTP, on the real stack (tests/api/conftest.py)."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from openapi_spec_validator import validate as validate_spec

from operators.records.alerts import source_of
from tests.api.conftest import (
    REPO,
    Live,
    active_alert_kinds,
    failing_twin,
    offline_twin,
    predict_failure,
    publish_score,
    two_models_alerts_twin,
)
from tests.api.openapi_check import OpenApi
from tests.twin_kafka import envelope, wait_for

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def is_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["type"].startswith("/api/problems/") and body["title"] and body["detail"]
    return body


def sse(
    c: httpx.Client,
    path: str,
    *,
    count: int,
    last_id: str | None = None,
    timeout: float = 15.0,
    openapi: OpenApi | None = None,
) -> list[dict]:
    """Read ``count`` events (id, event, data, received_at) from an SSE stream; each checked against ``openapi``."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    with c.stream("GET", path, headers=headers, timeout=httpx.Timeout(timeout, read=timeout)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        ev: dict = {}
        for line in r.iter_lines():
            if line == "":
                if "data" in ev:
                    if openapi is not None:
                        openapi.event_conforms(r, ev)
                    ev["received_at"] = time.time()
                    out.append(ev)
                    if len(out) >= count:
                        return out
                ev = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                ev[field] = value
            assert time.monotonic() < deadline, f"only {len(out)} events in {timeout} s"
    return out


def test_no_token_no_access_and_no_anonymous_writes(live: Live):
    with live.client(token=None) as c:
        body = is_problem(c.get("/api/v1/twins"), 401)
        assert "token" in body["detail"]
        r = c.patch(f"/api/v1/twins/{live.twin}/desired", json={"values": {"speed": 1}}, headers={"If-Match": "*"})
        assert is_problem(r, 401) and r.headers["www-authenticate"].startswith("Bearer")
        is_problem(c.post("/api/v1/alerts/al-x/ack"), 401)
    with live.client(token="tf_nope_nope") as c:
        is_problem(c.get("/api/v1/twins"), 401)
    with live.client() as c:
        assert c.get("/api/v1/me").json() == {"subject": "ann"}


def test_fleet_twin_history_and_telemetry(live: Live):
    with live.client() as c:
        fleet = c.get("/api/v1/twins", params={"limit": 500}).json()
        twin = next(t for t in fleet["items"] if t["twin_id"] == live.twin)
        assert twin["status"] in ("synchronized", "desynced") and twin["version"] >= 1
        page = c.get("/api/v1/twins", params={"limit": 1}).json()
        assert len(page["items"]) == 1 and page["next"] == page["items"][0]["twin_id"]
        r = c.get(f"/api/v1/twins/{live.twin}")
        doc = r.json()
        assert r.headers["etag"] == f'"{doc["desired_version"]}"' and "speed" in doc["reported"]
        hist = c.get(f"/api/v1/twins/{live.twin}/history", params={"limit": 5}).json()["items"]
        assert [h["version"] for h in hist] == sorted((h["version"] for h in hist), reverse=True)
        then = c.get(f"/api/v1/twins/{live.twin}/history", params={"at": hist[-1]["event_time"]}).json()
        assert then["version"] <= hist[-1]["version"]
        raw = c.get(f"/api/v1/twins/{live.twin}/telemetry").json()
        assert len(raw["series"]["speed"]["value"]) >= 5
        agg = c.get(f"/api/v1/twins/{live.twin}/telemetry", params={"bucket": "1m", "sensor": "speed"}).json()
        s = agg["series"]["speed"]
        assert sum(s["n"]) == len(raw["series"]["speed"]["value"]) or sum(s["n"]) >= len(s["ts"])
        assert all(lo <= m <= hi for lo, m, hi in zip(s["min"], s["mean"], s["max"], strict=True))
        is_problem(c.get("/api/v1/twins/ghost-twin-404"), 404)


def test_every_json_answer_matches_the_openapi_document(live: Live, openapi: OpenApi):
    """Real answers of each JSON operation, successes and problems, against the server's own OpenAPI documents."""
    twin, scored = live.twin, live.alert_twin
    with live.client() as c:
        wait_for("a forecast", lambda: c.get(f"/api/v1/twins/{scored}/forecasts").json(), timeout=30)
        fleet = openapi.conforms(c.get("/api/v1/twins", params={"limit": 500}))
        assert {twin, scored} <= {t["twin_id"] for t in fleet["items"]}
        page = openapi.conforms(c.get("/api/v1/twins", params={"limit": 1}))
        assert page["next"] and openapi.conforms(c.get("/api/v1/twins", params={"limit": 1, "cursor": page["next"]}))
        doc = openapi.conforms(c.get(f"/api/v1/twins/{twin}"))
        assert doc["twin_id"] == twin and doc["reported"]
        history = openapi.conforms(c.get(f"/api/v1/twins/{twin}/history", params={"limit": 20}))
        assert history["items"]
        then = c.get(f"/api/v1/twins/{twin}/history", params={"at": history["items"][-1]["event_time"]})
        assert "items" not in openapi.conforms(then)
        raw = openapi.conforms(c.get(f"/api/v1/twins/{twin}/telemetry"))
        assert raw["bucket"] is None and "value" in raw["series"]["speed"]
        buckets = openapi.conforms(c.get(f"/api/v1/twins/{scored}/telemetry", params={"bucket": "10s"}))
        assert buckets["bucket"] == "10s" and "mean" in buckets["series"]["temp_c"]
        scores = openapi.conforms(c.get(f"/api/v1/twins/{scored}/scores"))
        assert scores["score"] and scores["health"]
        assert "temp_c" in openapi.conforms(c.get(f"/api/v1/twins/{scored}/forecasts"))
        assert openapi.conforms(c.get(f"/api/v1/twins/{twin}/forecasts")) == {}
        alerts = openapi.conforms(c.get("/api/v1/alerts", params={"state": "all", "limit": 1000}))
        for alert in alerts["items"][:3]:
            openapi.conforms(c.get(f"/api/v1/alerts/{alert['alert_id']}"))
        openapi.conforms(c.get("/api/v1/alerts/metrics"))
        openapi.conforms(c.get("/api/v1/me"))
        openapi.conforms(c.get("/api/v1/health"))
        # what-if values: the state document has them from every source (the state cache, the history, as of a time)
        at = datetime.now(UTC)
        what_if = json.loads(envelope(scored, at, 10**6, {"temp_c": 99.0}, source="whatif"))
        live.produce(live.settings.topics.raw, scored, what_if)  # kept aside: no version of its own, then one:
        reading = envelope(scored, at + timedelta(milliseconds=1), 10**6 + 1, {"vibration_mm_s": 1.5})
        live.produce(live.settings.topics.raw, scored, json.loads(reading))

        def stored_what_if() -> dict | None:
            items = c.get(f"/api/v1/twins/{scored}/history", params={"limit": 1}).json()["items"]
            return items[0] if items and (items[0].get("simulated") or {}).get("temp_c") else None

        stored = openapi.conforms(c.get(f"/api/v1/twins/{scored}/history", params={"limit": 1}))["items"][0]
        wait_for("a stored version with the what-if value", stored_what_if, timeout=30)
        stored = stored_what_if()

        def current_what_if() -> bool:  # the state cache follows twin.state: it may be a moment behind the history
            return bool((c.get(f"/api/v1/twins/{scored}").json().get("simulated") or {}).get("temp_c"))

        wait_for("the current state with the what-if value", current_what_if, timeout=30)
        now = openapi.conforms(c.get(f"/api/v1/twins/{scored}"))
        then = openapi.conforms(c.get(f"/api/v1/twins/{scored}/history", params={"at": stored["event_time"]}))
        assert now.keys() == stored.keys() == then.keys()
        assert now["simulated"]["temp_c"]["value"] == stored["simulated"]["temp_c"]["value"] == 99.0
        # the names a desired change takes: what the 3.1 document says (3.0.3 cannot) is what the server takes
        url = f"/api/v1/twins/{twin}/desired"
        for name, ok in (("speed", True), ("speed_sp.rpm-2", True), ("0speed", False), ("", False), ("a b", False)):
            assert openapi.takes_body("PATCH", url, {"values": {name: 1.0}}) is ok, name
        refused = c.patch(url, json={"values": {"0speed": 1.0}}, headers={"If-Match": "*"})
        assert is_problem(refused, 422) and openapi.conforms(refused)
        for problem in (  # and what the document says of the problems
            c.get("/api/v1/twins/ghost-twin-404"),
            c.get("/api/v1/twins/bad%20id/history"),
            c.get(f"/api/v1/twins/{twin}/telemetry", params={"bucket": "1y"}),
            c.get(f"/api/v1/twins/{twin}/telemetry", params={"bucket": "367d"}),
            c.get(f"/api/v1/twins/{twin}/telemetry", params={"bucket": "0d"}),
            c.get("/api/v1/twins", params={"limit": 0}),
            c.get("/api/v1/alerts/no-such-alert"),
            c.post("/api/v1/alerts/no-such-alert/ack"),
        ):
            assert problem.status_code >= 400 and openapi.conforms(problem)["status"] == problem.status_code
    with live.client(token=None) as anonymous:
        openapi.conforms(anonymous.get("/api/v1/twins"))  # 401


def test_conditional_desired_change_reaches_the_device_and_the_event_stream(live: Live, openapi: OpenApi):
    with live.client() as c:
        r = c.get(f"/api/v1/twins/{live.twin}")
        tag = r.headers["etag"]
        change = {"values": {"speed": 160.0}, "reason": "api test"}
        missing = c.patch(f"/api/v1/twins/{live.twin}/desired", json=change)
        body = is_problem(missing, 428)
        assert "If-Match" in body["detail"] and openapi.conforms(missing)
        current = r.json()["desired_version"]
        stale = c.patch(f"/api/v1/twins/{live.twin}/desired", json=change, headers={"If-Match": f'"{current + 1000}"'})
        assert is_problem(stale, 412)["current_version"] == current and stale.headers["etag"] == tag
        openapi.conforms(stale)
        ok = c.patch(f"/api/v1/twins/{live.twin}/desired", json=change, headers={"If-Match": tag})
        assert ok.status_code == 202, ok.text
        answer = openapi.conforms(ok)
        assert answer["tracking_id"] and answer["subject"] == "ann" and answer["status"] == "accepted"
        assert answer["desired_version"] == current + 1  # the gate applied it: the desired document moved
        # the old ETag is stale now, whatever the readings do
        again = c.patch(f"/api/v1/twins/{live.twin}/desired", json=change, headers={"If-Match": tag})
        assert is_problem(again, 412)["current_version"] == current + 1

        def synced():
            d = c.get(f"/api/v1/twins/{live.twin}").json()
            return (
                d["desired"].get("speed", {}).get("value") == 160.0 and abs(d["reported"]["speed"]["value"] - 160) < 2
            )

        wait_for("the device to reach the new speed", synced, timeout=30)


def test_policy_deny_is_403_with_the_reason_and_nothing_reaches_the_device(live: Live):
    from confluent_kafka import Consumer, TopicPartition

    from connectors.kafka.clients import client_config

    topic = live.settings.twin.commands_topic
    consumer = Consumer(client_config(live.settings, **{"group.id": f"t-{time.time()}", "enable.auto.commit": False}))
    _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, high)])
    try:
        with live.client(token=live.other_token) as bob:  # a viewer: the policy lets only operators set speed
            r = bob.patch(
                f"/api/v1/twins/{live.twin}/desired", json={"values": {"speed": 777.0}}, headers={"If-Match": "*"}
            )
            body = is_problem(r, 403)
            assert body["reason"] == "no_matching_rule" and body["tracking_id"], body
        with live.client() as ann:  # an operator, but out of the policy's range
            r = ann.patch(
                f"/api/v1/twins/{live.twin}/desired", json={"values": {"speed": 9999.0}}, headers={"If-Match": "*"}
            )
            assert is_problem(r, 403)["reason"] == "out_of_range"
            assert ann.get(f"/api/v1/twins/{live.twin}").json()["desired"].get("speed", {}).get("value") not in (
                777.0,
                9999.0,
            )
        deadline = time.monotonic() + 5  # nothing of it on twin.commands
        seen = []
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                seen.append(json.loads(msg.value()))
        assert not [c for c in seen if c["twin_id"] == live.twin and c["value"] in (777.0, 9999.0)], seen
    finally:
        consumer.close()


def test_sse_delivers_state_changes_within_a_second_and_resumes(live: Live, openapi: OpenApi):
    def change(speed: float, delay: float) -> None:
        time.sleep(delay)
        with live.client() as c2:  # If-Match "*": any version (the twin is moving)
            r = c2.patch(
                f"/api/v1/twins/{live.twin}/desired", json={"values": {"speed": speed}}, headers={"If-Match": "*"}
            )
            assert r.status_code == 202, r.text

    with live.client() as c:
        worker = threading.Thread(target=change, args=(130.0, 0.5), daemon=True)
        worker.start()
        first = sse(c, f"/api/v1/twins/{live.twin}/events?types=state", count=2, openapi=openapi)
        worker.join()
        assert all(e["event"] == "state" for e in first)
        for e in first:  # the id carries the Kafka timestamp of the record: delivery time since it was written
            ts_ms = int(e["id"].split("-")[0])
            assert e["received_at"] * 1000 - ts_ms < 1000, e
        # while nobody listens the twin changes again; a reconnect with Last-Event-ID gets what it missed
        change(110.0, 0)
        time.sleep(1.0)
        resumed = sse(c, f"/api/v1/twins/{live.twin}/events?types=state", count=2, last_id=first[-1]["id"])
        versions = [json.loads(e["data"])["version"] for e in first + resumed]
        assert versions == list(range(versions[0], versions[0] + len(versions))), versions


def test_sse_resume_reads_kafka_when_the_buffer_no_longer_has_the_event(live: Live, openapi: OpenApi):
    with live.client() as c:
        path = f"/api/v1/twins/{live.alert_twin}/events?types=score"
        first = sse(c, path, count=3, openapi=openapi)
        offsets = [int(e["id"].split("-")[3]) for e in first]
        assert offsets == list(range(offsets[0], offsets[0] + 3))
        time.sleep(3)  # more than the server's buffer of 20 events (TWINFLOW_API__SSE_BUFFER_EVENTS) passes by
        resumed = sse(c, path, count=10, last_id=first[-1]["id"])
        got = [int(e["id"].split("-")[3]) for e in resumed]
        assert got == list(range(offsets[-1] + 1, offsets[-1] + 11)), got


def test_a_client_too_slow_is_told_to_resume_and_loses_nothing(live: Live):
    """A client that stops reading while ~13 MB of events pass gets what was already on its way (the
    kernel's socket buffers hold a few MiB: net.ipv4.tcp_wmem max 4 MiB), then an `overflow` event ending its
    stream (the server's outbox per client is 256 KiB here, TWINFLOW_API__SSE_CLIENT_BUFFER_BYTES);
    a reconnect with Last-Event-ID delivers every version it missed."""
    from confluent_kafka import Producer

    from connectors.kafka.clients import producer_config

    flood, rounds, per_round = f"{live.twin}-flood", 12, 1000  # a round: ~1.1 MB, one chunk for the stream
    n = rounds * per_round
    path = f"/api/v1/twins/{flood}/events?types=state"
    with (
        live.client() as slow,
        live.client() as c,
        slow.stream("GET", path, timeout=60) as r,
    ):
        assert r.status_code == 200
        p = Producer(producer_config(live.settings))
        for start in range(1, n + 1, per_round):  # each round passed on before the next: the client reads nothing
            for v in range(start, start + per_round):
                doc = {"twin_id": flood, "version": v, "status": "synchronized", "pad": "x" * 1000}
                p.produce(live.settings.twin.state_topic, key=flood.encode(), value=json.dumps(doc).encode())
                p.poll(0)
            assert p.flush(30) == 0
            last = start + per_round - 1
            wait_for(
                f"version {last} passed on", lambda v=last: c.get(f"/api/v1/twins/{flood}").json().get("version") == v
            )
        got, ev = [], {}
        deadline = time.monotonic() + 60
        for line in r.iter_lines():  # what the kernel and the server still held, then the stream's end
            assert time.monotonic() < deadline, f"the stream did not end: {len(got)} events"  # (keep-alives come)
            if line == "":
                got.append(ev)
                ev = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                ev[field] = value
    end = got[-1]
    assert end["event"] == "overflow" and "id" not in end, end
    assert "Last-Event-ID" in json.loads(end["data"])["resume"]
    states = [e for e in got if e.get("event") == "state"]
    seen = [json.loads(e["data"])["version"] for e in states]
    assert seen == list(range(1, len(seen) + 1)) and len(seen) < n, seen[-3:]
    with live.client() as c:
        rest = sse(c, path, count=n - len(seen), last_id=states[-1]["id"], timeout=60)
    assert seen + [json.loads(e["data"])["version"] for e in rest] == list(range(1, n + 1))


def test_alarm_lifecycle_ack_shelve_and_expiry_reopens(live: Live, scores_high, openapi: OpenApi):
    with live.client() as c:

        def open_alert():
            items = c.get("/api/v1/alerts", params={"twin": live.alert_twin}).json()["items"]
            return items[0] if items else None

        alert = wait_for("an alert of the scored twin", open_alert, timeout=30)
        aid = alert["alert_id"]
        assert (alert["state"], alert["isa_state"], alert["kind"]) == ("open", "unack_active", "anomaly")
        r = c.post(f"/api/v1/alerts/{aid}/ack")
        assert r.status_code == 200 and openapi.conforms(r)["alert"]["isa_state"] == "ack_active"
        again = c.post(f"/api/v1/alerts/{aid}/ack")  # nothing to do: changed false
        assert openapi.conforms(again)["changed"] is False
        not_out = c.post(f"/api/v1/alerts/{aid}/in_service")  # it is in service: 409
        assert is_problem(not_out, 409) and openapi.conforms(not_out)
        body = is_problem(c.post(f"/api/v1/alerts/{aid}/shelve", json={"duration_s": 3}), 422)
        assert "reason" in body["detail"]
        until = datetime.now(UTC) + timedelta(seconds=3)
        r = c.post(f"/api/v1/alerts/{aid}/shelve", json={"until": until.isoformat(), "reason": "sensor swap"})
        assert openapi.conforms(r)["alert"]["isa_state"] == "shelved", r.text
        r = c.get("/api/v1/alerts", params={"state": "shelved", "twin": live.alert_twin})
        shelved = openapi.conforms(r)["items"]
        assert [a["alert_id"] for a in shelved] == [aid] and shelved[0]["shelve_reason"] == "sensor swap"

        def reopened():
            a = c.get(f"/api/v1/alerts/{aid}").json()
            return a if a["reopened"] >= 1 else None

        a = wait_for("the shelving to expire", reopened, timeout=20)
        assert (a["state"], a["isa_state"], a["acked_by"], a["shelved_until"]) == ("open", "unack_active", None, None)
        openapi.conforms(c.get(f"/api/v1/alerts/{aid}"))
        m = openapi.conforms(c.get("/api/v1/alerts/metrics", params={"hours": 1}))
        assert m["annunciated"] >= 2 and m["per_operator_hour"] > 0  # opened + re-annunciated


def test_alert_actions_are_authorized_per_subject_and_every_decision_audited(live: Live, openapi: OpenApi):
    """Any token's subject could acknowledge, shelve or take out of service any alert. Now the policy file's alert
    rules decide (ann an operator: every action; bob a viewer: none): bob is refused with a 403 naming the reason
    and the alert is unchanged; ann's action is taken; both decisions are in the audit chain, which stays intact."""
    import subprocess
    import sys

    import psycopg

    twin = f"{live.alert_twin}-auth"
    publish_score(live, twin, datetime.now(UTC), 0.95)
    with live.client() as ann, live.client(token=live.other_token) as bob:

        def opened():
            items = ann.get("/api/v1/alerts", params={"twin": twin}).json()["items"]
            return items[0]["alert_id"] if items else None

        aid = wait_for("an alert of the twin", opened, timeout=30)
        until = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
        refused = [
            bob.post(f"/api/v1/alerts/{aid}/ack"),
            bob.post(f"/api/v1/alerts/{aid}/shelve", json={"until": until, "reason": "noisy"}),
            bob.post(f"/api/v1/alerts/{aid}/out_of_service", json={"reason": "sensor swap"}),
            bob.post(f"/api/v1/alerts/{aid}/redeliver"),
            bob.post("/api/v1/alerts/deliveries/redeliver"),
        ]
        for r in refused:
            body = is_problem(r, 403)
            assert body["reason"] == "no_matching_rule" and "'bob'" in body["detail"], body
            openapi.conforms(r)
        a = ann.get(f"/api/v1/alerts/{aid}").json()
        assert (a["state"], a["acked_by"], a["shelved_until"], a["out_of_service"]) == ("open", None, None, False)
        r = ann.post(f"/api/v1/alerts/{aid}/ack", json={"reason": "on it"})
        assert r.status_code == 200 and openapi.conforms(r)["alert"]["acked_by"] == "ann", r.text
        with live.client(token=None) as anonymous:  # no token stays 401
            is_problem(anonymous.post(f"/api/v1/alerts/{aid}/ack"), 401)
    with psycopg.connect(live.settings.postgres.conninfo()) as db:
        audit = db.execute(
            "SELECT actor, twin_id, new->>'action', decision, reason FROM desired_audit"
            " WHERE new->>'alert_id' = %s ORDER BY id",
            (aid,),
        ).fetchall()
        everything = db.execute(
            "SELECT actor, twin_id, decision, reason FROM desired_audit WHERE new->>'action' = 'alert.redeliver'"
            " AND new->>'alert_id' IS NULL AND actor = 'bob'"
        ).fetchall()
    assert audit == [
        ("bob", twin, "alert.ack", "deny", "no_matching_rule"),
        ("bob", twin, "alert.shelve", "deny", "no_matching_rule"),
        ("bob", twin, "alert.out_of_service", "deny", "no_matching_rule"),
        ("bob", twin, "alert.redeliver", "deny", "no_matching_rule"),
        ("ann", twin, "alert.ack", "allow", "allowed"),
    ]
    assert ("bob", "*", "deny", "no_matching_rule") in everything
    verify = subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", "audit", "verify"],
        cwd=REPO, env=live.env, capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 0 and "audit chain intact" in verify.stdout, verify.stdout + verify.stderr


def test_webhook_deliveries_are_listed_and_a_refused_one_is_queued_again_by_its_subject(live: Live, openapi: OpenApi):
    """The outbox had no endpoint (`twinflow alerts deliveries | redeliver` only). A twin's alert
    refused by the receiver (410) fails; the API lists it with the reason, per alert and across the outbox
    (paged), and a token's subject queues it again (an action of its own: recorded and logged)."""
    twin = f"{live.alert_twin}-hook"
    live.receiver.refuse.add(twin)
    live.produce(
        live.settings.alerts.anomalies_topic,
        twin,
        {"twin_id": twin, "ts": datetime.now(UTC).isoformat(), "score": 0.95, "threshold": 0.6, "is_anomaly": True,
         "contributions": {"temp_c": 1.0}},
    )  # fmt: skip
    with live.client() as c:

        def failed():
            items = c.get("/api/v1/alerts/deliveries", params={"twin": twin, "state": "failed"}).json()["items"]
            return items or None

        [row] = wait_for("the refused version failed", failed, timeout=30)
        aid = row["alert_id"]
        assert (row["version"], row["state"], row["http_status"], row["attempts"]) == (1, "failed", 410, 1), row
        assert "HTTP 410" in row["last_error"] and row["redelivered_by"] is None
        page = openapi.conforms(c.get("/api/v1/alerts/deliveries", params={"twin": twin, "state": "failed"}))
        assert page["total"] == 1 and page["counts"]["failed"] >= 1 and set(page["counts"]) == {
            "pending", "delivered", "failed"}  # fmt: skip
        one = openapi.conforms(c.get(f"/api/v1/alerts/{aid}/deliveries"))
        assert [(r["alert_id"], r["version"], r["state"]) for r in one["items"]] == [(aid, 1, "failed")]
        everything = openapi.conforms(c.get("/api/v1/alerts/deliveries", params={"limit": 1}))
        assert len(everything["items"]) == 1 and everything["total"] >= 1
        if everything["total"] > 1:  # the next page, from offset
            second = openapi.conforms(c.get("/api/v1/alerts/deliveries", params={"limit": 1, "offset": 1}))
            assert second["items"] and second["items"][0] != everything["items"][0]

        with live.client(token=None) as anonymous:
            is_problem(anonymous.get("/api/v1/alerts/deliveries"), 401)
            is_problem(anonymous.post(f"/api/v1/alerts/{aid}/redeliver"), 401)
        is_problem(c.get("/api/v1/alerts/al-nope/deliveries"), 404)
        is_problem(c.post("/api/v1/alerts/al-nope/redeliver"), 404)
        is_problem(c.get("/api/v1/alerts/deliveries", params={"state": "lost"}), 422)
        # A method the path does not have (schemathesis ST204: this was taken for an action, 422).
        is_problem(c.post(f"/api/v1/alerts/{aid}/deliveries"), 405)
        is_problem(c.post(f"/api/v1/alerts/{aid}/nonsense"), 404)
        none = c.post(f"/api/v1/alerts/{aid}/redeliver", json={"version": 2})
        assert "no failed delivery" in is_problem(none, 409)["detail"] and openapi.conforms(none)

        live.receiver.refuse.discard(twin)  # the receiver is fixed
        r = c.post(f"/api/v1/alerts/{aid}/redeliver", json={})
        assert r.status_code == 200 and openapi.conforms(r)["queued"] == [1], r.text
        assert "queued again by ann" in r.json()["message"]

        def delivered():
            items = c.get(f"/api/v1/alerts/{aid}/deliveries").json()["items"]
            return items if items and items[0]["state"] == "delivered" else None

        [row] = wait_for("the version delivered", delivered, timeout=30)
        assert row["redelivered_by"] == "ann" and row["redelivered_at"] is not None and row["http_status"] == 204
        again = c.post(f"/api/v1/alerts/{aid}/redeliver")
        is_problem(again, 409)
    assert any(r.headers["Idempotency-Key"] == f"{aid}:1" for r in live.receiver.requests)


def test_every_failed_delivery_is_queued_again_in_one_request(live: Live, openapi: OpenApi):
    """The CLI had `twinflow alerts redeliver --failed`; the API only one alert at a time. Two twins' alerts
    refused by the receiver (it was down) fail; once it is fixed, one request queues both, each delivered."""
    twins = [f"{live.alert_twin}-all{i}" for i in range(2)]
    live.receiver.refuse.update(twins)
    for twin in twins:
        live.produce(
            live.settings.alerts.anomalies_topic,
            twin,
            {"twin_id": twin, "ts": datetime.now(UTC).isoformat(), "score": 0.95, "threshold": 0.6,
             "is_anomaly": True, "contributions": {"temp_c": 1.0}},
        )  # fmt: skip
    with live.client() as c:

        def rows(state: str):
            params = [{"twin": t, "state": state} for t in twins]
            found = [c.get("/api/v1/alerts/deliveries", params=p).json()["items"] for p in params]
            return found if all(found) else None

        failed = wait_for("both refused versions failed", lambda: rows("failed"), timeout=30)
        aids = {r[0]["alert_id"] for r in failed}
        with live.client(token=None) as anonymous:
            is_problem(anonymous.post("/api/v1/alerts/deliveries/redeliver"), 401)
        live.receiver.refuse.difference_update(twins)
        r = c.post("/api/v1/alerts/deliveries/redeliver")
        assert r.status_code == 200, r.text
        queued = {(q["alert_id"], q["version"]) for q in openapi.conforms(r)["queued"]}
        assert {(a, 1) for a in aids} <= queued and "queued again by ann" in r.json()["message"]
        delivered = wait_for("both delivered", lambda: rows("delivered"), timeout=30)
        assert all(d[0]["redelivered_by"] == "ann" for d in delivered)
        left = c.get("/api/v1/alerts/deliveries", params={"state": "failed"}).json()["total"]
        if not left:  # nothing failed (anywhere in the outbox): nothing to queue
            assert "no failed delivery" in is_problem(c.post("/api/v1/alerts/deliveries/redeliver"), 409)["detail"]


def test_the_documents_take_no_shelving_the_server_always_refuses(live: Live, openapi: OpenApi):
    """Found by schemathesis (make api-fuzz): one body for every action made a shelving without an expiry or
    without a reason valid by the documents, and the server always refused it (422). The documents now ask for
    what the server does: a reason that is not only spaces, and `until` or `duration_s`."""
    url = "/api/v1/alerts/nosuch/shelve"
    refused = [
        {},
        {"reason": "sensor swap"},
        {"duration_s": 60},
        {"duration_s": 60, "reason": " \t"},
        {"duration_s": 60, "reason": "\x1c"},  # Python's and the documents' pattern's whitespace alike
        {"until": None, "reason": "sensor swap"},
    ]
    with live.client() as c:
        for body in refused:
            assert not openapi.takes_body("POST", url, body), body
            assert is_problem(c.post(url, json=body), 422)["type"].endswith("invalid-request"), body
        blank = is_problem(c.post(url, json={"duration_s": 60, "reason": " "}), 422)
        assert "needs a reason" in blank["detail"], blank  # for the person at the web view's prompt
        for body in ({"duration_s": 60, "reason": "sensor swap"}, {"until": "2031-01-01T00:00:00Z", "reason": "x"}):
            assert openapi.takes_body("POST", url, body), body
            assert is_problem(c.post(url, json=body), 404)["type"].endswith("no-such-alert"), body


def test_hostile_requests_get_problem_documents(live: Live):
    with live.client() as c:
        url = f"/api/v1/twins/{live.twin}/desired"
        big = {"values": {"speed": 1.0}, "reason": "x" * 100_000}
        is_problem(c.patch(url, json=big, headers={"If-Match": "*"}), 413)
        bad = c.patch(
            url, content=b'{"values": {"speed": ', headers={"If-Match": "*", "Content-Type": "application/json"}
        )
        assert is_problem(bad, 400)["type"].endswith("malformed-json")
        unknown = c.patch(url, json={"values": {"speed": 1}, "admin": True}, headers={"If-Match": "*"})
        assert is_problem(unknown, 422)["errors"]
        is_problem(c.patch(url, json={"values": {"speed": "fast"}}, headers={"If-Match": "*"}), 422)
        # taken as sent: a number in a string is no number (it was set as 12.0), true is no 1.0 (it was, and
        # passed a numeric range), so the policy judges the boolean the client sent
        is_problem(c.patch(url, json={"values": {"speed": "12"}}, headers={"If-Match": "*"}), 422)
        boolean = c.patch(url, json={"values": {"speed": True}}, headers={"If-Match": "*"})
        assert is_problem(boolean, 403)["reason"] == "bad_type", boolean.text
        is_problem(c.patch(url, json={"values": {"speed": 1}}, headers={"If-Match": "nonsense"}), 400)
        for path in ("/api/v1/twins/..%2F..%2Fetc%2Fpasswd", "/api/v1/twins/%00evil", "/api/v1/twins/a%20b/history"):
            r = c.get(path)
            assert r.status_code in (400, 404) and r.headers["content-type"].startswith(PROBLEM), (path, r.text)
        for path in ("/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/api/v2/twins"):
            r = c.get(path)
            assert r.status_code == 404 and "root:" not in r.text, (path, r.text[:200])
        is_problem(c.get("/api/v1/alerts", params={"state": "'; DROP TABLE alerts;--"}), 400)
        is_problem(c.delete(f"/api/v1/twins/{live.twin}"), 405)
        # values a client may send that the database or Python cannot take: 4xx problems, never a 500
        is_problem(c.get("/api/v1/alerts", params={"twin": "a\x00b"}), 400)
        is_problem(c.get("/api/v1/twins", params={"cursor": "a\x00b"}), 400)
        for bad in (c.get("/api/v1/alerts/al-%00x"), c.post("/api/v1/alerts/al-%00x/ack", json={})):
            assert bad.status_code in (400, 404) and bad.headers["content-type"].startswith(PROBLEM), bad.text
        is_problem(c.get(f"/api/v1/twins/{live.twin}/telemetry", params={"bucket": "999999999999d"}), 400)
        for huge in (8e13, 1e300):
            is_problem(c.post("/api/v1/alerts/nosuch/shelve", json={"duration_s": huge, "reason": "x"}), 422)
        chunks = (b"x" * 1024 for _ in range(100))  # 100 KiB streamed without a Content-Length
        streamed = c.patch(url, content=chunks, headers={"If-Match": "*", "Content-Type": "application/json"})
        assert is_problem(streamed, 413)["type"].endswith("too-large")
    # rate limit (20/s, burst 60 per client here): a burst beyond the bucket is refused with Retry-After
    with live.client(token=live.other_token) as c:
        t0 = time.monotonic()
        codes = [c.get("/api/v1/me").status_code for _ in range(300)]
        allowed = 60 + 20 * (time.monotonic() - t0) + 1
        assert codes[:50] == [200] * 50 and 429 in codes and codes.count(200) <= allowed, codes
        r = next(r for r in (c.get("/api/v1/me") for _ in range(100)) if r.status_code == 429)
        assert int(r.headers["retry-after"]) >= 1 and is_problem(r, 429)
    with live.client() as c:  # another client is not affected
        assert c.get("/api/v1/me").status_code == 200


def test_openapi_and_docs_are_served_offline(live: Live):
    with live.client(token=None) as c:
        spec = c.get("/api/openapi.json").json()
        assert "/api/v1/twins/{twin_id}/desired" in spec["paths"] and "/api/v1/events" in spec["paths"]
        models = spec["paths"]["/api/v1/twins/{twin_id}/models"]["get"]["responses"]["200"]["content"]
        assert models["application/json"]["schema"] == {"$ref": "#/components/schemas/TwinModels"}
        # an OpenAPI 3.0 document (what it says it is): none of 3.1's schema forms
        text = json.dumps(spec)
        assert spec["openapi"] == "3.0.3" and "summary" not in spec["info"]
        assert '{"type": "null"}' not in text and '"patternProperties"' not in text and '"const"' not in text
        assert not re.search(r'"exclusive(Minimum|Maximum)": -?[0-9]', text)
        assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
        assert spec["security"] == [{"bearer": []}] and spec["paths"]["/api/v1/health"]["get"]["security"] == []
        me = spec["paths"]["/api/v1/me"]["get"]["responses"]
        assert me["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Me"}
        assert list(me["401"]["content"]) == list(me["422"]["content"]) == ["application/problem+json"]
        validate_spec(spec)  # valid OpenAPI 3.0.3 (openapi-spec-validator); the rest: tests/unit/test_api_openapi.py
        spec_31 = c.get("/api/openapi-3.1.json").json()  # the same in 3.1: what 3.0.3 cannot say (names in values)
        assert spec_31["openapi"].startswith("3.1") and spec_31["paths"].keys() == spec["paths"].keys()
        validate_spec(spec_31)
        assert "text/event-stream" in spec["paths"]["/api/v1/events"]["get"]["responses"]["200"]["content"]
        page = c.get("/api/docs").text
        assert "/api/docs/assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
        assert c.get("/api/docs/assets/swagger-ui-bundle.js").status_code == 200
        assert c.get("/static/vendor/plotly.min.js").status_code == 200


def test_an_offline_device_is_in_the_state_document(live: Live, openapi: OpenApi):
    twin = offline_twin(live, "gateway-lost")
    with live.client() as c:

        def offline() -> dict | None:
            r = c.get(f"/api/v1/twins/{twin}")
            return r.json() if r.status_code == 200 and r.json()["status"] == "offline" else None

        wait_for("the offline state", offline, timeout=30)
        doc = openapi.conforms(c.get(f"/api/v1/twins/{twin}"))
        assert doc["connectivity"]["state"] == "offline"
        assert doc["connectivity"]["reason"] == f"opcua BadNoCommunication on {twin}.speed"
        assert list(doc["connectivity"]["unreachable"]) == ["speed"]  # its one sensor: the device
        assert doc["reported"]["speed"]["value"] == 100.0  # the last value, and the twin says the device is gone
        (newest,) = openapi.conforms(c.get(f"/api/v1/twins/{twin}/history", params={"limit": 1}))["items"]
        assert newest["connectivity"] == doc["connectivity"] and newest["status"] == "offline"
        offline_fleet = openapi.conforms(c.get("/api/v1/twins", params={"status": "offline", "limit": 500}))
        assert twin in {t["twin_id"] for t in offline_fleet["items"]}


def test_failure_predictions_of_a_twin_and_the_twins_predicted_to_fail(live: Live, openapi: OpenApi):
    """Failure predictions as the models flow publishes them, written by the alerts flow: a twin's RUL history
    (`/twins/{id}/failures`) and the twins whose latest prediction fails soon (`/failures`, soonest first): the
    built-in models' by default, a model of your own's with `model`."""
    soon = failing_twin(live, "api-rul-soon", rul_h=[10.0, 8.0, 6.0], p=[0.3, 0.4, 0.5])
    later = failing_twin(live, "api-rul-later", rul_h=[20.0], p=[0.2])
    calm = failing_twin(live, "api-rul-calm", rul_h=[500.0], p=[0.01])
    made = datetime.now(UTC).replace(microsecond=0)
    predict_failure(live, calm, made, 2.0, 0.9, "vib-rul")  # a model of your own: calm fails in 2 h
    twins = [soon, later, calm]
    with live.client() as c:

        def written():
            rows = c.get(f"/api/v1/twins/{soon}/failures").json()
            own = c.get(f"/api/v1/twins/{calm}/failures", params={"model": "vib-rul"}).json()
            return rows if len(rows["ts"]) == 3 and own["ts"] and c.get(f"/api/v1/twins/{later}/failures").json()[
                "ts"] else None  # fmt: skip

        history = wait_for("the predictions written", written, timeout=30)
        openapi.conforms(c.get(f"/api/v1/twins/{soon}/failures"))
        assert history["rul_s"] == [10 * 3600.0, 8 * 3600.0, 6 * 3600.0]  # oldest first
        assert history["failure_probability"] == [0.3, 0.4, 0.5] and history["horizon_s"] == [72 * 3600.0] * 3
        assert history["model"] == ["twinflow-t2-rul:pumps"] * 3 and history["uncertainty"] == [0.1] * 3
        last = c.get(f"/api/v1/twins/{soon}/failures", params={"limit": 1}).json()
        assert last["rul_s"] == [6 * 3600.0] and last["ts"] == history["ts"][-1:]  # the newest `limit`
        early = {"to": history["ts"][1]}
        assert c.get(f"/api/v1/twins/{soon}/failures", params=early).json()["rul_s"] == [10 * 3600.0]
        assert c.get(f"/api/v1/twins/{calm}/failures").json()["rul_s"] == [500 * 3600.0]  # built-in by default
        own = openapi.conforms(c.get(f"/api/v1/twins/{calm}/failures", params={"model": "vib-rul"}))
        assert (own["rul_s"], own["model"]) == ([2 * 3600.0], ["vib-rul"])

        # the fleet: within 24 h (default), or as likely as a failure alert opens (probability_open 0.5)
        fleet = openapi.conforms(c.get("/api/v1/failures", params={"twin": twins}))
        assert [f["twin_id"] for f in fleet["items"]] == [soon, later]  # soonest first; calm: 500 h, p 0.01
        assert (fleet["within_h"], fleet["min_probability"]) == (24.0, 0.5)
        first = fleet["items"][0]
        assert first["rul_hours"] == 6.0 and first["failure_probability"] == 0.5
        assert first["model"] == "twinflow-t2-rul:pumps" and first["predicted_at"] == history["ts"][-1]
        at = datetime.fromisoformat(first["predicted_at"]) + timedelta(hours=6)
        assert datetime.fromisoformat(first["predicted_failure_at"]) == at

        def ids(**params) -> list[str]:
            r = c.get("/api/v1/failures", params={"twin": twins, **params})
            return [f["twin_id"] for f in openapi.conforms(r)["items"]]

        assert ids(within_h=12) == [soon]
        assert ids(within_h=1) == [soon]  # not within the hour, but p 0.5
        assert ids(within_h=1, min_probability=0.6) == []
        assert ids(within_h=1, min_probability=0.15) == [soon, later]
        assert ids(within_h=1000) == [soon, later, calm] and ids(within_h=1000, limit=1) == [soon]
        mine = openapi.conforms(c.get("/api/v1/failures", params={"twin": twins, "model": "vib-rul"}))["items"]
        assert [(f["twin_id"], f["rul_hours"], f["model"]) for f in mine] == [(calm, 2.0, "vib-rul")]
        everyone = c.get("/api/v1/failures", params={"within_h": 1000}).json()["items"]
        assert {soon, later, calm} <= {f["twin_id"] for f in everyone}

        # mistakes are problem documents
        bad = c.get("/api/v1/failures", params={"twin": [soon, "no twin"]})
        assert "not a twin id" in is_problem(bad, 400)["detail"]
        is_problem(c.get("/api/v1/failures", params={"within_h": 0}), 422)
        is_problem(c.get("/api/v1/failures", params={"min_probability": 1.5}), 422)
        is_problem(c.get(f"/api/v1/twins/{soon}/failures", params={"from": "2026-11-25T08:00:00"}), 400)
        is_problem(c.get("/api/v1/twins/bad twin/failures"), 400)
        is_problem(c.get("/api/v1/failures", params={"model": "a\x00b"}), 400)  # the documents' pattern says so
    with live.client(token=None) as anonymous:
        is_problem(anonymous.get("/api/v1/failures"), 401)
        is_problem(anonymous.get(f"/api/v1/twins/{soon}/failures"), 401)


def test_the_alerts_one_model_raised(live: Live, openapi: OpenApi):
    """`GET /alerts` had no model filter: the twin page's model picker showed every model's alerts. `?model=`
    keeps the alerts that model raised (named in `evidence.sources`; `twinflow`: the built-in models')."""
    twin = two_models_alerts_twin(live, "api-model-alerts")
    with live.client() as c:
        wait_for("both alerts", lambda: active_alert_kinds(c, twin) == ["anomaly", "failure"], timeout=30)
        mine = openapi.conforms(c.get("/api/v1/alerts", params={"twin": twin, "model": "vib-lstm"}))["items"]
        assert [(a["kind"], a["evidence"]["sources"]) for a in mine] == [("anomaly", ["vib-lstm"])]
        assert active_alert_kinds(c, twin, model="twinflow") == ["failure"]  # raised by the built-in models only
        assert active_alert_kinds(c, twin, model="twinflow-t2-rul:pumps") == ["failure"]  # a built-in model's name
        assert active_alert_kinds(c, twin, model="other-model") == []
        assert active_alert_kinds(c, twin, model="vib-lstm", kind="failure") == []  # with the other filters
        is_problem(c.get("/api/v1/alerts", params={"model": "a\x00b"}), 400)
        is_problem(c.get("/api/v1/alerts", params={"model": "m" * 129}), 422)
    with live.client(token=None) as anonymous:
        is_problem(anonymous.get("/api/v1/alerts", params={"model": "vib-lstm"}), 401)


def test_the_models_with_outputs_for_a_twin(live: Live, openapi: OpenApi):
    """`/twins/{id}/models`: the built-in models (records naming none, or `twinflow-…`) and a model of your own
    with outputs for a twin, each with its newest output of each kind; `?model=` on the reads takes its `model`."""
    twin = f"api-models-{int(time.time() * 1000)}"
    now = datetime.now(UTC).replace(microsecond=0)
    publish_score(live, twin, now - timedelta(hours=2), 0.1, "old-lstm")  # outside a 1-hour window
    publish_score(live, twin, now - timedelta(seconds=2), 0.2)  # built-in, named none
    publish_score(live, twin, now - timedelta(seconds=1), 0.3, "twinflow-t2")
    publish_score(live, twin, now, 0.8, "vib-lstm")
    predict_failure(live, twin, now, 5.0, 0.7, "vib-lstm")
    with live.client() as c:

        def listed():
            items = c.get(f"/api/v1/twins/{twin}/models").json()["items"]
            return items if len(items) == 3 and items[-1]["failures"] else None

        wait_for("the outputs written", listed, timeout=30)
        answer = openapi.conforms(c.get(f"/api/v1/twins/{twin}/models"))
        at = lambda v: v and datetime.fromisoformat(v)  # noqa: E731
        got = [(m["model"], m["names"], at(m["scores"]), at(m["failures"]), m["forecasts"], at(m["last_output"]))
               for m in answer["items"]]  # fmt: skip
        assert got == [
            ("twinflow", ["", "twinflow-t2"], now - timedelta(seconds=1), None, None, now - timedelta(seconds=1)),
            ("old-lstm", ["old-lstm"], now - timedelta(hours=2), None, None, now - timedelta(hours=2)),
            ("vib-lstm", ["vib-lstm"], now, now, None, now),
        ]  # the built-in models first, then by name
        assert answer["twin_id"] == twin and datetime.now(UTC) - datetime.fromisoformat(answer["since"]) >= timedelta(
            hours=24)  # fmt: skip
        recent = openapi.conforms(c.get(f"/api/v1/twins/{twin}/models", params={"within_h": 1}))
        assert [m["model"] for m in recent["items"]] == ["twinflow", "vib-lstm"]
        for m in answer["items"]:  # each one's `model` reads its outputs
            scores = c.get(f"/api/v1/twins/{twin}/scores", params={"model": m["model"], "from": (now - timedelta(
                hours=3)).isoformat()}).json()  # fmt: skip
            assert {source_of(n) for n in scores["model"]} == {m["model"]} and scores["ts"][-1] == m["scores"]
        fed = openapi.conforms(c.get(f"/api/v1/twins/{live.alert_twin}/models"))["items"]
        assert [(m["model"], m["names"], bool(m["scores"]), bool(m["forecasts"])) for m in fed] == [
            ("twinflow", [""], True, True)]  # fmt: skip
        assert openapi.conforms(c.get("/api/v1/twins/api-models-none/models"))["items"] == []
        is_problem(c.get(f"/api/v1/twins/{twin}/models", params={"within_h": 0}), 422)
        is_problem(c.get(f"/api/v1/twins/{twin}/models", params={"within_h": 24 * 7 + 1}), 422)
        is_problem(c.get("/api/v1/twins/bad twin/models"), 400)
    with live.client(token=None) as anonymous:
        is_problem(anonymous.get(f"/api/v1/twins/{twin}/models"), 401)
