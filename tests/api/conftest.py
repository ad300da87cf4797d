"""One live system for the API and browser tests: a private database and topics, the twin flow with a
device that follows its commands, the alerts flow, model outputs for the twin, and `twinflow serve`
as a separate process reached over HTTP (tests/api/*)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer

from connectors.kafka.clients import delete_topics, ensure_topics, producer_config
from operators.alerts.rules import AlertRules, KindRule
from tests.api.openapi_check import OpenApi
from tests.integration.test_twin_device_loop import FakeDevice
from tests.process_helpers import stop
from tests.twin_fixtures import alert_settings_for, settings_env, twin_db, twin_settings_for  # noqa: F401
from tests.twin_kafka import envelope, wait_for
from tests.webhook_receiver import Receiver
from twinflow.api.tokens import TokenStore
from twinflow.settings import AlertSettings, Settings

REPO = Path(__file__).resolve().parents[2]
collect_ignore = ["fuzz_hooks.py"]  # schemathesis hooks (make api-fuzz): loaded by schemathesis, not by pytest


@dataclass
class Live:
    settings: Settings
    env: dict[str, str]
    base: str  # http://127.0.0.1:PORT
    token: str  # subject "ann"
    other_token: str  # subject "bob"
    twin: str  # a twin the device follows (speed, digital wins)
    alert_twin: str  # a twin whose anomaly scores are fed by the tests
    artefacts: Path
    receiver: Receiver  # alerts.webhook_url: the alerts flow delivers every alert version here

    def client(self, token: str | None = "ann", **kw) -> httpx.Client:
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {self.token if token == 'ann' else token}"
        return httpx.Client(base_url=self.base, headers=headers, timeout=10, **kw)

    def produce(self, topic: str, key: str, value: dict) -> None:
        p = Producer(producer_config(self.settings))
        p.produce(topic, key=key.encode(), value=json.dumps(value).encode())
        assert p.flush(10) == 0


def offline_twin(live: Live, name: str, others: dict[str, float] | None = None) -> str:
    """A twin whose gateway answers BadNoCommunication for ``speed`` after one good reading (through the twin
    flow); with ``others`` (sensors of the first reading that stay good) it stays online, ``speed`` unreachable."""
    twin = f"{name}-{int(time.time() * 1000)}"
    at = datetime.now(UTC)
    first = {"speed": 100.0, **(others or {})}
    live.produce(live.settings.topics.raw, twin, json.loads(envelope(twin, at, 1, first, source="opcua")))
    gone = {**json.loads(envelope(twin, at + timedelta(seconds=1), 2, {"speed": 0.0}, source="opcua"))}
    gone["readings"], gone["status"] = {"speed": None}, {"speed": "BadNoCommunication"}
    live.produce(live.settings.topics.raw, twin, gone)
    return twin


def predict_failure(live: Live, twin: str, ts: datetime, rul_h: float, p: float, model: str = "") -> None:
    """A failure prediction as the models flow publishes it (``alerts.failures_topic``); the alerts flow
    writes it to ``failure_predictions`` (and opens a failure alert when it is soon or likely)."""
    record = {"twin_id": twin, "ts": ts.isoformat(), "rul_s": rul_h * 3600.0, "failure_probability": p,
              "uncertainty": 0.1, "horizon_s": 72 * 3600.0, "model": model}  # fmt: skip
    live.produce(live.settings.alerts.failures_topic, twin, record)


def publish_score(live: Live, twin: str, ts: datetime, score: float, model: str = "") -> None:
    """An anomaly score (threshold 0.6, health 0.85) as a model publishes it (``alerts.anomalies_topic``): the
    built-in models' (``model`` empty or ``twinflow-…``) or a model of your own's; the alerts flow writes it."""
    record = {"twin_id": twin, "ts": ts.isoformat(), "score": score, "threshold": 0.6, "is_anomaly": score >= 0.6,
              "contributions": {"temp_c": 1.0}, "health": 0.85, "model": model}  # fmt: skip
    live.produce(live.settings.alerts.anomalies_topic, twin, record)


def failing_twin(live: Live, name: str, rul_h: list[float], p: list[float]) -> str:
    """A twin with a state (one reading through the twin flow) and a failure prediction a minute apart for
    each of ``rul_h`` and ``p`` (the built-in RUL model's), the last one now."""
    twin = f"{name}-{int(time.time() * 1000)}"
    now = datetime.now(UTC)
    live.produce(live.settings.topics.raw, twin, json.loads(envelope(twin, now, 1, {"speed": 100.0})))
    for i, (rul, prob) in enumerate(zip(rul_h, p, strict=True)):
        predict_failure(live, twin, now - timedelta(minutes=len(rul_h) - 1 - i), rul, prob, "twinflow-t2-rul:pumps")
    return twin


def two_models_alerts_twin(live: Live, name: str) -> str:
    """A twin (a state) with an active alert of each source: ``anomaly`` raised by the model ``vib-lstm``
    (its scores above the threshold, the built-in models' below) and ``failure`` by the built-in RUL model."""
    twin = failing_twin(live, name, rul_h=[3.0], p=[0.9])
    now = datetime.now(UTC)
    for i in range(3, -1, -1):
        publish_score(live, twin, now - timedelta(seconds=i), 0.2)
        publish_score(live, twin, now - timedelta(seconds=i), 0.95, "vib-lstm")
    return twin


def active_alert_kinds(c: httpx.Client, twin: str, **params: str) -> list[str]:
    """The kinds of the twin's active alerts ``GET /alerts`` lists with ``params``, sorted."""
    items = c.get("/api/v1/alerts", params={"twin": twin, **params}).json()["items"]
    return sorted(a["kind"] for a in items)


class Scores(threading.Thread):
    """Anomaly scores (above the threshold while ``high``; health 0.85) and a forecast for a twin, every 200 ms."""

    def __init__(self, live_settings: Settings, twin: str) -> None:
        super().__init__(daemon=True)
        self.s, self.twin = live_settings, twin
        self.high = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        p = Producer(producer_config(self.s))
        a = self.s.alerts
        n = 0
        while not self.stop.is_set():
            now = datetime.now(UTC)
            score = 0.9 if self.high.is_set() else 0.2
            p.produce(
                a.anomalies_topic,
                key=self.twin.encode(),
                value=json.dumps(
                    {
                        "twin_id": self.twin,
                        "ts": now.isoformat(),
                        "score": score,
                        "threshold": 0.6,
                        "is_anomaly": score >= 0.6,
                        "contributions": {"temp_c": 0.7, "rpm": 0.3},
                        "health": 0.85,  # above the condition alarm's thresholds: no condition alert
                    }
                ).encode(),
            )
            temp = 61.0 + (8.0 if self.high.is_set() else 0.0) + (n % 7) * 0.1
            p.produce(
                self.s.topics.raw,
                key=self.twin.encode(),
                value=envelope(self.twin, now, n, {"temp_c": temp, "rpm": 1450.0 + n % 5}),
            )
            if n % 10 == 0:
                for i in range(1, 13):
                    t = now + timedelta(seconds=10 * i)
                    p.produce(
                        a.forecasts_topic,
                        key=self.twin.encode(),
                        value=json.dumps(
                            {
                                "twin_id": self.twin,
                                "sensor": "temp_c",
                                "ts": now.isoformat(),
                                "target_ts": t.isoformat(),
                                "predicted": 60 + i,
                                "lower": 58 + i * 0.8,
                                "upper": 62 + i * 1.2,
                                "limit": 90.0,
                            }
                        ).encode(),
                    )
            p.poll(0)
            n += 1
            time.sleep(0.2)
        p.flush(10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


WEBHOOK_SECRET = "api-tests-webhook"


def _alert_settings(sfx: str, webhook_url: str) -> AlertSettings:
    return alert_settings_for(
        sfx,
        webhook_url=webhook_url,
        webhook_backoff_s=0.2,
        webhook_backoff_max_s=0.5,
        webhook_poll_s=0.2,
        rules=AlertRules(anomaly=KindRule(0.0, 600.0), reorder_window_s=0.5, escalate_after_s=0),
    )


POLICY = """
[[rule]]
name = "operators set the speed"
subject = { roles = "operator" }
[rule.parameters]
speed = { type = "number", min = 0, max = 3000 }

[[rule]]
name = "operators take every alert action"
subject = { roles = "operator" }
alerts = ["*"]
"""


def _identity(work: Path) -> dict[str, str]:
    """The API as a gateway (its own key, acting for the tokens' subjects), ann an operator (setpoints and every
    alert action), bob a viewer (nothing)."""
    from operators.security.request_auth import new_private_key, private_key_pem, public_key_text
    from twinflow.stack.certs import write_secret

    key = new_private_key()
    write_secret(work / "api.key", private_key_pem(key))
    (work / "subjects.toml").write_text(
        f'[subject.api-gateway]\nroles = ["gateway"]\npublic_keys = ["{public_key_text(key)}"]\nact_for = ["*"]\n'
        '[subject.ann]\nroles = ["operator"]\n[subject.bob]\nroles = ["viewer"]\n'
    )
    (work / "policy.toml").write_text(POLICY)
    return {
        "TWINFLOW_SECURITY__KEY_FILE": str(work / "api.key"),
        "TWINFLOW_SECURITY__SUBJECT": "api-gateway",
        "TWINFLOW_SECURITY__SUBJECTS_FILE": str(work / "subjects.toml"),
        "TWINFLOW_SECURITY__POLICY_FILE": str(work / "policy.toml"),
    }


def _delete_own_topics(s: Settings) -> None:
    """This fixture's topics only (not shared ones such as the simulator's ground truth); missing ones are fine."""

    from connectors.kafka.clients import alert_topic_specs

    tw = s.twin
    names = {s.topics.raw, s.topics.dlq, tw.desired_topic, tw.commands_topic, tw.acks_topic, tw.state_topic}
    names |= {tw.late_topic, tw.outcomes_topic, tw.desync_topic, s.security.desired_rejected_topic}
    names |= {t.name for t in alert_topic_specs(s)}
    delete_topics(s, names)


@pytest.fixture(scope="session")
def live(twin_db: Settings, tmp_path_factory) -> Iterator[Live]:  # noqa: F811
    tag = uuid.uuid4().hex[:6]
    twin, alert_twin = f"api-{tag}-pump", f"api-{tag}-comp"
    speed = {"tolerance": 2.0, "clear_tolerance": 1.0, "hold_time_s": 0.3, "ack_timeout_s": 5.0}
    policy = {"twins": {twin: {"parameters": {"speed": {**speed, "strategy": "digital_wins"}}}}}
    base = twin_settings_for(twin_db, policy, ingest=True)
    sfx = base.topics.raw.rsplit(".", 1)[1]
    receiver = Receiver(fail_status=410).__enter__()
    alerts = _alert_settings(sfx, receiver.url)
    s = base.model_copy(update={"alerts": alerts})
    security = s.security.model_copy(update={"desired_rejected_topic": f"test.rejected.{sfx}"})
    s = s.model_copy(update={"security": security})
    ensure_topics(s)
    work = tmp_path_factory.mktemp("api")
    artefacts = REPO / "test-artefacts"
    artefacts.mkdir(exist_ok=True)
    tokens = TokenStore([])
    token, _ = tokens.issue("ann")
    other, _ = tokens.issue("bob")
    tokens.save(work / "tokens.toml")
    identity = _identity(work)
    port = _free_port()
    env = {
        **os.environ,
        **settings_env(s),
        "TWINFLOW_ALERTS": json.dumps({**json.loads(alerts.model_dump_json()), "webhook_secret": WEBHOOK_SECRET}),
        "TWINFLOW_SECURITY__DESIRED_REJECTED_TOPIC": s.security.desired_rejected_topic,
        "TWINFLOW_API__TOKENS_FILE": str(work / "tokens.toml"),
        **identity,
        "TWINFLOW_API__PORT": str(port),
        "TWINFLOW_API__RATE_PER_S": "20",
        "TWINFLOW_API__RATE_BURST": "60",
        "TWINFLOW_API__SSE_BUFFER_EVENTS": "20",
        "TWINFLOW_API__SSE_CLIENT_BUFFER_BYTES": str(256 * 1024),
    }
    logs = {name: open(work / f"{name}.log", "wb") for name in ("twin", "alerts", "serve")}  # noqa: SIM115
    procs = {
        "twin": subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "twinflow.dataflows:twin()", "-w", "1", "-s", "1"],
            cwd=REPO,
            env=env,
            stdout=logs["twin"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        "alerts": subprocess.Popen(
            [sys.executable, "-m", "twinflow.cli.main", "run", "alerts", "--no-recovery"],
            cwd=REPO,
            env=env,
            stdout=logs["alerts"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        "serve": subprocess.Popen(
            [sys.executable, "-m", "twinflow.cli.main", "serve"],
            cwd=REPO,
            env=env,
            stdout=logs["serve"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
    }
    device = FakeDevice(s, {twin: 100.0})
    scores = Scores(s, alert_twin)
    device.start()
    scores.start()
    lv = Live(s, env, f"http://127.0.0.1:{port}", token, other, twin, alert_twin, artefacts, receiver)
    try:

        def up() -> bool:
            for name, p in procs.items():
                assert p.poll() is None, f"{name} exited: " + (work / f"{name}.log").read_text()[-3000:]
            try:
                return httpx.get(lv.base + "/api/v1/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("twinflow serve", up, timeout=60)
        with lv.client() as c:
            wait_for(f"a state of {twin}", lambda: c.get(f"/api/v1/twins/{twin}").status_code == 200, timeout=60)
        yield lv
    finally:
        device.stop.set()
        scores.stop.set()
        device.join(15)
        scores.join(15)
        for p in procs.values():
            stop(p)
        for f in logs.values():
            f.close()
        receiver.__exit__()
        for name in logs:
            (artefacts / f"api-{name}.log").write_bytes((work / f"{name}.log").read_bytes())
        _delete_own_topics(s)
    assert device.error is None, device.error


@pytest.fixture(scope="session")
def openapi(live: Live) -> OpenApi:
    """The server's own OpenAPI documents (3.0.3 and 3.1), to check real answers against (openapi_check.py)."""
    with live.client(token=None) as c:
        return OpenApi(c.get("/api/openapi.json").json(), c.get("/api/openapi-3.1.json").json())


@pytest.fixture
def scores_high(live: Live) -> Iterator[None]:
    """The fed twin's anomaly scores stay above the threshold while the test runs."""
    feeder = next(t for t in threading.enumerate() if isinstance(t, Scores))
    feeder.high.set()
    yield
    feeder.high.clear()
