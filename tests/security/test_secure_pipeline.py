"""The pipeline through the secure stack: device → MQTT over TLS → bridge → Kafka SASL_SSL →
flow → PostgreSQL over TLS, with least-privilege accounts, and no secret in any output or log."""

from __future__ import annotations

import ssl
import time
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest

from connectors.mqtt.security import configure_client
from tests.kafka_helpers import read_topic
from tests.process_helpers import start_twinflow, stop, wait_for_log
from twinflow.stack.certs import new_password, write_secret
from twinflow.stack.secure.mosquitto import SecureMosquitto
from twinflow.stack.secure.postgres import SecurePostgres

pytestmark = pytest.mark.integration


def device_settings(stack, twin: str):
    """Register an MQTT device account named after its twin; returns its MqttSettings."""
    password = new_password()
    SecureMosquitto(stack.base).add_user(twin, password)
    pw_file = stack.root / f"{twin}.password"
    write_secret(pw_file, password)
    return stack.material.mqtt_settings(stack.base.mqtt, twin, password_file=pw_file)


def publish(ms, client_id: str, topic: str, payloads: list[bytes]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    configure_client(client, ms)
    client.connect(ms.host, ms.port)
    client.loop_start()
    try:
        for p in payloads:
            client.publish(topic, p, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_readings_flow_through_every_secured_hop(secure_stack, tmp_path):
    stack = secure_stack
    twin = "pump-sec-1"
    device = device_settings(stack, twin)
    time.sleep(0.5)  # mosquitto reloads its password file on SIGHUP
    log_path = tmp_path / "procs.log"
    log = open(log_path, "wb")  # noqa: SIM115
    env = stack.app_env()
    bridge = start_twinflow(["bridge", "mqtt"], env, log)
    flow = start_twinflow(["run", "--no-recovery"], env, log)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    try:
        wait_for_log(log_path, b"subscribed", bridge, timeout=60)
        payloads = [
            orjson.dumps({"ts": (t0 + timedelta(seconds=i)).isoformat(), "seq": i, "readings": {"rpm": i, "t": 1.5}})
            for i in range(1, 21)
        ]
        # on its own topic, claiming to be another twin: the key (from the topic) gives it away
        impostor = orjson.dumps({"twin_id": "pump-other", "seq": 1, "ts": t0.isoformat(), "readings": {"rpm": 1}})
        publish(device, "dev-1", f"twinflow/{twin}/telemetry", [*payloads, impostor])
        with psycopg.connect(stack.admin.postgres.conninfo(), autocommit=True) as db:
            assert db.execute("SHOW ssl").fetchone() == ("on",)
            assert db.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                n = db.execute("SELECT count(*) FROM telemetry WHERE twin_id = %s", (twin,)).fetchone()[0]
                if n >= 40:
                    break
                assert flow.poll() is None, log_path.read_text()
                time.sleep(0.5)
            rows = db.execute(
                "SELECT seq, sensor, value FROM telemetry WHERE twin_id = %s ORDER BY seq, sensor", (twin,)
            ).fetchall()
        deadline = time.monotonic() + 60
        # Only this test's twin: other tests of the module share the secure stack and its DLQ.
        while (
            not (dead := [d for d in read_topic(stack.admin, stack.admin.topics.dlq) if d.key == twin.encode()])
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
        # the flow's connection came in over TLS as the least-privilege role (only a superuser sees that)
        with psycopg.connect(SecurePostgres(stack.base)._superuser_conninfo(), autocommit=True) as su:
            users = su.execute(
                "SELECT DISTINCT a.usename, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
                " WHERE a.usename = 'twinflow_ingest'"
            ).fetchall()
    finally:
        assert stop(bridge) == 0, log_path.read_text()
        stop(flow)
        log.close()
    assert rows == [(i, s, v) for i in range(1, 21) for s, v in (("rpm", float(i)), ("t", 1.5))]
    assert users == [("twinflow_ingest", True)]
    assert [(d.key, d.headers["dlq.reason"], orjson.loads(d.value)["twin_id"]) for d in dead] == [
        (twin.encode(), b"key_mismatch", "pump-other")
    ]
    # No secret in what the commands printed, nor in any service log or configuration but the secret files.
    outputs = log_path.read_text(errors="replace") + stack.up_output
    texts = [outputs] + [
        p.read_text(errors="replace")
        for p in stack.root.rglob("*")
        if p.is_file()
        and p.suffix in {".log", ".toml", ".conf", ""}
        and "passwords" not in p.parts
        and p.name not in {"passwd", "server.properties"}
        and not p.name.endswith(".password")
        and p.stat().st_size < 5_000_000
        and "data" not in p.parts
    ]
    for secret in stack.secrets():
        assert all(secret not in text for text in texts), "a password appears in a log, output or config"


def test_secret_files_are_private(secure_stack):
    m = secure_stack.material
    private = [*m.passwords.iterdir(), m.file("ca.key"), m.file("server.key"), m.file("client.key")]
    private += [secure_stack.root / "kafka" / "server.properties", secure_stack.root / "mosquitto" / "passwd"]
    for path in private:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    assert m.dir.stat().st_mode & 0o077 == 0


def test_api_speaks_tls_only_in_the_secure_profile(secure_stack, tmp_path):
    import socket

    import httpx

    from twinflow.api.tokens import TokenStore

    store = TokenStore([])
    token, _ = store.issue("ann")
    store.save(tmp_path / "tokens.toml")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = tmp_path / "serve.log"
    log = open(log_path, "wb")  # noqa: SIM115
    env = secure_stack.app_env(TWINFLOW_API__PORT=str(port), TWINFLOW_API__TOKENS_FILE=str(tmp_path / "tokens.toml"))
    serve = start_twinflow(["serve"], env, log)
    try:
        wait_for_log(log_path, b"serving on https://", serve, timeout=60)
        ca = ssl.create_default_context(cafile=secure_stack.material.file("ca.pem"))
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(
                    f"https://127.0.0.1:{port}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, verify=ca
                )
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.5)
        assert r.status_code == 200 and r.json() == {"subject": "ann"}
        with pytest.raises(httpx.HTTPError):  # plain HTTP gets no answer
            httpx.get(f"http://127.0.0.1:{port}/api/v1/me", timeout=5)
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA refuses the server
            httpx.get(f"https://127.0.0.1:{port}/api/v1/me", timeout=5)
    finally:
        stop(serve)
        log.close()
