"""Every component of the secure stack refuses unauthenticated, wrongly authenticated and
untrusted clients, and authenticated ones outside their rights (least privilege)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

from connectors.kafka.clients import client_config
from connectors.mqtt.security import configure_client
from connectors.postgres.audit import AuditEntry, append
from twinflow.stack import certs
from twinflow.stack.secure.mosquitto import SecureMosquitto, mqtt_connack

pytestmark = pytest.mark.integration


def accepted_by(connects, cases: dict) -> list[str]:
    """The names of the cases whose client got in (checked in parallel: refusals may take seconds)."""
    with ThreadPoolExecutor(len(cases)) as pool:
        return [name for name, ok in zip(cases, pool.map(connects, cases.values()), strict=True) if ok]


@pytest.fixture(scope="module")
def rogue(tmp_path_factory) -> Path:
    """A CA nobody trusts, with a server-capable and a client certificate of its own."""
    d = tmp_path_factory.mktemp("rogue")
    ca_key, ca_cert = certs.make_ca("rogue CA")
    certs.write_ca(d, ca_key, ca_cert)
    certs.write_pair(d, "client", *certs.issue(ca_key, ca_cert, "rogue-client", server=False))
    return d


# ------------------------------------------------------------------------------------------- Kafka
def kafka_ok(conf: dict) -> bool:
    try:
        return len(AdminClient({**conf, "log_level": 0}).list_topics(timeout=6).brokers) > 0
    except KafkaException:
        return False


def test_kafka_refuses_bad_clients(secure_stack, rogue):
    good = client_config(secure_stack.app)
    assert kafka_ok(good)
    no_sasl = {k: v for k, v in good.items() if not k.startswith("sasl.")} | {"security.protocol": "SSL"}
    cases = {
        "plaintext": {"bootstrap.servers": good["bootstrap.servers"]},
        "TLS without credentials": no_sasl,
        "wrong password": good | {"sasl.password": "not-the-password"},
        "unknown user": good | {"sasl.username": "mallory"},
        "no client certificate": {
            k: v for k, v in good.items() if k not in {"ssl.certificate.location", "ssl.key.location"}
        },
        "untrusted client certificate": good
        | {
            "ssl.certificate.location": str(rogue / "client.pem"),
            "ssl.key.location": str(rogue / "client.key"),
        },
        "untrusted server (other CA)": good | {"ssl.ca.location": str(rogue / "ca.pem")},
    }
    assert accepted_by(kafka_ok, cases) == []


def test_kafka_app_user_is_limited_by_acls(secure_stack):
    conf = client_config(secure_stack.app)
    errors: list = []
    p = Producer({**conf, "message.timeout.ms": 8000, "log_level": 0})
    p.produce("secret.topic", b"x", on_delivery=lambda err, _m: errors.append(err))
    p.produce(secure_stack.app.topics.raw, b"not json", key=b"k", on_delivery=lambda err, _m: errors.append(err))
    p.flush(15)
    assert len(errors) == 2
    assert errors[0] is not None and "AUTHORIZATION" in errors[0].name()
    assert errors[1] is None  # its own topic is fine
    admin = AdminClient(conf)
    fut = admin.create_topics([NewTopic("telemetry.evil", 1, 1)])["telemetry.evil"]
    with pytest.raises(KafkaException, match="AUTHORIZATION"):
        fut.result(15)


# ------------------------------------------------------------------------------------------- MQTT
def test_mqtt_refuses_bad_clients(secure_stack, rogue):
    ms = secure_stack.material.mqtt_settings(secure_stack.base.mqtt, "twinflow-bridge")
    assert mqtt_connack(ms, "ok") == 0
    cases = {
        "anonymous": ms.model_copy(update={"username": None, "password": None}),
        "wrong password": ms.model_copy(update={"password": SecretStr("nope")}),
        "unknown user": ms.model_copy(update={"username": "mallory"}),
        "no TLS": ms.model_copy(update={"tls": False, "ca_file": None, "cert_file": None, "key_file": None}),
        "no client certificate": ms.model_copy(update={"cert_file": None, "key_file": None}),
        "untrusted client certificate": ms.model_copy(
            update={"cert_file": rogue / "client.pem", "key_file": rogue / "client.key"}
        ),
        "untrusted server (other CA)": ms.model_copy(update={"ca_file": rogue / "ca.pem"}),
    }
    assert accepted_by(lambda ms_: mqtt_connack(ms_, f"bad-{id(ms_)}") == 0, cases) == []


def _client(ms, client_id: str, received: list[str]) -> mqtt.Client:
    subscribed = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    configure_client(c, ms)
    c.on_message = lambda _c, _u, msg: received.append(msg.topic)
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect(ms.host, ms.port)
    c.loop_start()
    c.subscribe("twinflow/#", qos=1)
    assert subscribed.wait(10)
    return c


def test_mqtt_acls_confine_devices_to_their_own_topic(secure_stack):
    stack = secure_stack
    bridge_ms = stack.material.mqtt_settings(stack.base.mqtt, "twinflow-bridge")
    devices = {}
    for name in ("pump-acl-1", "pump-acl-2"):
        pw = certs.new_password()
        SecureMosquitto(stack.base).add_user(name, pw)
        devices[name] = bridge_ms.model_copy(update={"username": name, "password": SecretStr(pw)})
    time.sleep(0.5)  # SIGHUP reload
    seen_by_bridge: list[str] = []
    seen_by_device: list[str] = []
    bridge = _client(bridge_ms, "acl-bridge", seen_by_bridge)
    dev1 = _client(devices["pump-acl-1"], "acl-dev-1", seen_by_device)  # may not read anything
    dev2 = _client(devices["pump-acl-2"], "acl-dev-2", [])
    for client, topic in (
        (dev1, "twinflow/pump-other/telemetry"),  # not its twin: dropped
        (dev1, "plant/secret"),  # outside twinflow: dropped
        (dev1, "twinflow/pump-acl-1/telemetry"),  # its own: delivered
        (dev2, "twinflow/pump-acl-2/telemetry"),  # its own: delivered (not to device 1)
        (dev2, "twinflow/pump-acl-1/telemetry"),  # impersonating device 1: dropped
    ):
        client.publish(topic, b"{}", qos=1).wait_for_publish(10)
    time.sleep(1.0)
    for c in (bridge, dev1, dev2):
        c.disconnect()
        c.loop_stop()
    assert sorted(seen_by_bridge) == ["twinflow/pump-acl-1/telemetry", "twinflow/pump-acl-2/telemetry"]
    assert seen_by_device == []


# ------------------------------------------------------------------------------------------- PostgreSQL
def pg_refused(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=5) as conn:
            conn.execute("select 1")
        return False
    except psycopg.OperationalError:
        return True


def test_postgres_refuses_bad_clients(secure_stack, rogue):
    pg = secure_stack.app.postgres
    assert not pg_refused(pg.conninfo())
    cases = {
        "without TLS": pg.conninfo(sslmode="disable"),
        "wrong password": pg.conninfo(password="nope"),
        "unknown user": pg.conninfo(user="mallory"),
        "superuser with the default password": pg.conninfo(user="postgres", password="postgres"),
        "no client certificate": pg.conninfo(sslcert="/nonexistent.pem", sslkey="/nonexistent.key"),
        "untrusted client certificate": pg.conninfo(
            sslcert=str(rogue / "client.pem"), sslkey=str(rogue / "client.key")
        ),
        "untrusted server (other CA)": pg.conninfo(sslrootcert=str(rogue / "ca.pem")),
    }
    assert accepted_by(lambda dsn: not pg_refused(dsn), cases) == []


def test_postgres_roles_have_least_privilege(secure_stack):
    stack = secure_stack
    m = stack.material
    with psycopg.connect(stack.app.postgres.conninfo(), autocommit=True) as ingest:
        for stmt in (
            "SELECT value FROM telemetry",
            "DELETE FROM telemetry",
            "UPDATE telemetry SET value = 0",
            "SELECT * FROM desired_audit",
            "CREATE TABLE evil (x int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                ingest.execute(stmt)
    writer_pg = stack.app.postgres.model_copy(
        update={
            "user": "twinflow_audit_writer",
            "password": SecretStr(m.password("postgres", "twinflow_audit_writer")),
        }
    )
    with psycopg.connect(writer_pg.conninfo(), autocommit=True) as writer:
        row = append(writer, AuditEntry("ann", "pump-1", {"rpm": 1}, "allow", "allowed"))
        for stmt in (
            "UPDATE desired_audit SET reason = 'x'",
            "DELETE FROM desired_audit",
            "SELECT * FROM telemetry",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                writer.execute(stmt)
    assert row.id >= 1
